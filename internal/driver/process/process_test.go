package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/caldir"
	"github.com/soulfra/calnet/internal/calfs"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

const childEnv = "CALNET_PROCESS_DRIVER_TEST_CHILD"

// report is what the sandboxed test child observes from inside.
type report struct {
	UID          int    `json:"uid"`
	Hostname     string `json:"hostname"`
	PID          int    `json:"pid"`
	WriteRoot    string `json:"write_root"`
	WriteUsr     string `json:"write_usr"`
	WriteData    string `json:"write_data"`
	Mount        string `json:"mount"`
	Unshare      string `json:"unshare"`
	HostTCP      string `json:"host_tcp"`
	SecretLength int    `json:"secret_length"`
	Listen       string `json:"listen,omitempty"`
	// WriteBig is the first error writing 32 MiB into /data (8 MiB quota).
	WriteBig string `json:"write_big"`
	// Subvolume is the result of asking btrfs for a subvolume in /data.
	Subvolume string `json:"subvolume"`
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func TestMain(m *testing.M) {
	if os.Getenv(cpEnv) != "" {
		controlPlaneMain()
	}
	if os.Getenv(childEnv) == "" {
		code := m.Run()
		if staticDir != "" {
			os.RemoveAll(staticDir)
		}
		os.Exit(code)
	}
	cfg, err := sandbox.ReadConfig()
	if err != nil {
		fmt.Fprint(os.Stderr, err)
		os.Exit(3)
	}
	if err := sandbox.Enter(cfg); err != nil {
		fmt.Fprint(os.Stderr, err)
		os.Exit(4)
	}
	var r report
	r.UID = os.Getuid()
	r.Hostname, _ = os.Hostname()
	r.PID = os.Getpid()
	r.SecretLength = len(cfg.Secret)
	r.WriteRoot = errString(os.WriteFile("/escape", []byte("x"), 0o644))
	r.WriteUsr = errString(os.WriteFile("/usr/escape", []byte("x"), 0o644))
	r.WriteData = errString(os.WriteFile("/data/ok", []byte("x"), 0o644))
	r.Mount = errString(unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	r.Unshare = errString(unix.Unshare(unix.CLONE_NEWNS))
	c, err := net.DialTimeout("tcp", os.Getenv("CALNET_TEST_HOST_ADDR"), time.Second)
	if c != nil {
		c.Close()
	}
	r.HostTCP = errString(err)
	// The control plane's socket, listened on as the Cal's uid.
	if ln, err := cfg.Listener("api.sock"); err == nil {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("cal")) // the test's read says whether it arrived
				c.Close()
			}
		}()
	} else {
		r.Listen = err.Error()
	}
	r.Subvolume = errString(makeSubvolume("/data", "escape"))
	r.WriteBig = errString(writeMiB("/data/big", 32))
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		os.Exit(5) // the test reads the report: without it, it fails
	}
	time.Sleep(time.Hour) // until stopped
}

// writeMiB writes n MiB into path and syncs it.
func writeMiB(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for range n {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return f.Sync()
}

// makeSubvolume asks btrfs for a subvolume (BTRFS_IOC_SUBVOL_CREATE),
// which would have no share of the Cal's disk quota.
func makeSubvolume(parent, name string) error {
	fd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var args struct {
		fd   int64
		name [4088]byte
	}
	copy(args.name[:], name)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), 0x5000940e, uintptr(unsafe.Pointer(&args))); e != 0 {
		return e
	}
	return nil
}

func TestIsolatedCal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the process driver's isolation needs root")
	}
	d := New("/calnet-test", t.TempDir())
	for _, f := range sandbox.AllFeatures {
		if !contains(d.Available(), f) {
			t.Skipf("host lacks %s", f)
		}
	}
	// A host listener the Cal must not reach.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	const id = "testcal0123456789"
	data := t.TempDir()
	for _, d := range []string{filepath.Dir(data), data} {
		must(t, os.Chmod(d, 0o711)) // the Cal's uid traverses it to its directory
	}
	pool, err := calfs.Open(context.Background(), filepath.Join(data, "cals.img"), filepath.Join(data, "cals"), calfs.MinSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, pool.Close()) }()
	layout := caldir.New(data)
	if err := layout.Prepare(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Create(id); err != nil {
		t.Fatal(err)
	}
	dir, host := layout.Sandbox(id).MountSource(), layout.Host(id)
	socks, err := host.Bind("api.sock")
	if err != nil {
		t.Fatal(err)
	}
	out := logFile(t)
	self := staticSelf(t)
	inst, err := d.Start(context.Background(), driver.Spec{
		CalID: id, Dir: dir, RootMount: host.RootMount(), Sockets: socks, Binary: self, Args: []string{"-test.run=^$"},
		Env: []string{childEnv + "=1", "CALNET_TEST_HOST_ADDR=" + ln.Addr().String()},
		UID: 200123, GID: 200123, Features: sandbox.AllFeatures,
		Limits: driver.Limits{CPUMillis: 500, MemoryBytes: 64 << 20, PIDs: 64, DiskBytes: 8 << 20},
		Secret: "s3cret", Log: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, inst.Stop(context.Background(), time.Second)) }()
	r := readReport(t, out)
	if r.UID != 200123 || r.PID != 1 || r.Hostname != "cal-testcal0" || r.SecretLength != 6 {
		t.Errorf("inside view %+v", r)
	}
	for _, f := range socks {
		f.Close()
	}
	// The socket the Cal listens on answers as the Cal's uid, and a
	// dialer expecting another uid refuses it.
	c, err := host.Socket("api.sock", 200123).Dial(context.Background())
	if err != nil || r.Listen != "" {
		t.Fatalf("dial the Cal's socket: %v (inside: %s)", err, r.Listen)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "cal" {
		t.Errorf("the Cal's socket answered %q", got)
	}
	if _, err := host.Socket("api.sock", 200124).Dial(context.Background()); !errors.Is(err, caldir.ErrPeer) {
		t.Errorf("dial expecting another uid: %v, want ErrPeer", err)
	}
	if r.WriteData != "ok" {
		t.Errorf("private dir not writable: %s", r.WriteData)
	}
	for name, res := range map[string]string{"write /": r.WriteRoot, "write /usr": r.WriteUsr, "mount": r.Mount, "unshare": r.Unshare, "host tcp": r.HostTCP} {
		if res == "ok" {
			t.Errorf("%s succeeded inside the sandbox", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ok")); err != nil {
		t.Errorf("the write to /data did not land in the private dir: %v", err)
	}
	// The disk quota: the kernel stops the write at 8 MiB, and no
	// subvolume (with a quota group of its own) can be made to escape it.
	if !strings.Contains(r.WriteBig, "disk quota exceeded") {
		t.Errorf("writing 32 MiB into an 8 MiB quota: %s, want EDQUOT", r.WriteBig)
	}
	if st, err := os.Stat(filepath.Join(dir, "big")); err != nil || st.Size() > 8<<20 {
		t.Errorf("the Cal stored %v bytes under an 8 MiB quota (%v)", st.Size(), err)
	}
	if r.Subvolume != "operation not permitted" {
		t.Errorf("making a subvolume in /data: %s, want EPERM", r.Subvolume)
	}
	if u, err := inst.Usage(); err != nil || u.DiskBytes == 0 || u.DiskBytes > 8<<20 {
		t.Errorf("disk usage %d (%v), want what /data holds, at most 8 MiB", u.DiskBytes, err)
	}
	iso, err := inst.Isolation()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range sandbox.AllFeatures {
		if !iso[f] {
			t.Errorf("isolation feature %s not in force (measured from outside)", f)
		}
	}
	// The memory limit is the quota's.
	lim, err := os.ReadFile("/sys/fs/cgroup/memory/calnet-test/testcal0123456789/memory.limit_in_bytes")
	if err == nil && strings.TrimSpace(string(lim)) != "67108864" {
		t.Errorf("memory limit %s", lim)
	}
	must(t, inst.Stop(context.Background(), time.Second))
	if _, err := os.Stat("/sys/fs/cgroup/memory/calnet-test/testcal0123456789"); err == nil {
		t.Error("cgroup not removed after stop")
	}
}

// staticSelf is this test binary, rebuilt without cgo if it has it: the
// sandbox refuses a cgo binary, whose threads' capabilities Go cannot
// change one by one (calnet itself is built with CGO_ENABLED=0). The
// rebuilt copy is shared by the tests of one run.
func staticSelf(t *testing.T) string {
	t.Helper()
	staticMu.Lock()
	defer staticMu.Unlock()
	self, _ := os.Executable()
	bi, ok := debug.ReadBuildInfo()
	if !ok || !slices.ContainsFunc(bi.Settings, func(s debug.BuildSetting) bool { return s.Key == "CGO_ENABLED" && s.Value == "1" }) {
		return self
	}
	if staticDir != "" {
		return filepath.Join(staticDir, "process.test")
	}
	dir, err := os.MkdirTemp("", "process-test-")
	if err != nil {
		t.Fatal(err)
	}
	static := filepath.Join(dir, "process.test")
	build := exec.Command("go", "test", "-c", "-o", static, "github.com/soulfra/calnet/internal/driver/process")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("build a static copy of the test: %v\n%s", err, out)
	}
	staticDir = dir
	return static
}

var (
	staticMu  sync.Mutex
	staticDir string // holds the static copy once built
)

func TestUnavailableFeatureRefused(t *testing.T) {
	d := New("/calnet-test", t.TempDir())
	d.mode = 0 // no cgroups at all
	_, err := d.Start(context.Background(), driver.Spec{CalID: "x", Dir: t.TempDir(), Binary: "/bin/true", Features: []sandbox.Feature{sandbox.CgroupMemory}})
	if err == nil || !strings.Contains(err.Error(), "cgroup-memory") {
		t.Fatalf("error = %v", err)
	}
}

func contains(fs []sandbox.Feature, f sandbox.Feature) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// logFile is a Cal's log file: the driver hands it to the child as is.
func logFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "cal-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// readReport waits for the sandboxed child's report in its log.
func readReport(t *testing.T, log *os.File) report {
	t.Helper()
	var r report
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(log.Name())
		line, _, ok := strings.Cut(string(b), "\n")
		if ok && json.Unmarshal([]byte(line), &r) == nil {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report from the sandboxed child; output: %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killWait kills a process the test started (a stand-in control plane, a
// workload) and waits for it: its exit status is the kill's, or Wait was
// called already.
func killWait(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
