// Package sandbox is the inside half of a Cal's isolation. The process
// driver starts `calnet cal` as root in fresh PID, mount, IPC, UTS and
// network namespaces and holds it until it sits in its cgroups; Enter then
// builds a minimal read-only root with the Cal's private directory as the
// only writable place, drops to the Cal's own unprivileged uid, sets
// no_new_privs and loads a seccomp filter, before the runtime does anything
// else.
package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/soulfra/calnet/internal/strictjson"
	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/caldir"
)

// Feature names one isolation mechanism.
type Feature string

// The isolation features, in the order they are applied.
const (
	PIDNamespace   Feature = "pid-namespace"
	MountNamespace Feature = "mount-namespace"
	IPCNamespace   Feature = "ipc-namespace"
	UTSNamespace   Feature = "uts-namespace"
	NetNamespace   Feature = "net-namespace"
	ReadOnlyRoot   Feature = "read-only-root"
	OwnUID         Feature = "own-uid"
	NoNewPrivs     Feature = "no-new-privs"
	Seccomp        Feature = "seccomp"
	CgroupMemory   Feature = "cgroup-memory"
	CgroupCPU      Feature = "cgroup-cpu"
	CgroupPIDs     Feature = "cgroup-pids"
	// DiskQuota keeps the Cal's directory (/data) on the Cal filesystem
	// with the kernel enforcing the disk quota of its blessing (package
	// calfs); the seccomp filter keeps the Cal from making subvolumes,
	// which would escape it.
	DiskQuota Feature = "disk-quota"
)

// AllFeatures is full isolation.
var AllFeatures = []Feature{PIDNamespace, MountNamespace, IPCNamespace, UTSNamespace, NetNamespace, ReadOnlyRoot, OwnUID, NoNewPrivs, Seccomp, CgroupMemory, CgroupCPU, CgroupPIDs, DiskQuota}

// ParseFeature checks a feature name.
func ParseFeature(s string) (Feature, error) {
	if slices.Contains(AllFeatures, Feature(s)) {
		return Feature(s), nil
	}
	return "", fmt.Errorf("unknown isolation feature %q", s)
}

// Config is what the driver hands the sandboxed process on its config pipe.
type Config struct {
	CalID string `json:"cal_id"`
	// Dir is the host path of the Cal's private writable directory; inside
	// the sandbox it is /data.
	Dir string `json:"dir"`
	// RunDir is a host directory with the control plane's socket; inside
	// it is /run/calnet, read-only.
	RunDir string `json:"run_dir"`
	// ProgramsDir is a host directory of workload programs, mounted
	// read-only at /opt/calnet.
	ProgramsDir string `json:"programs_dir,omitempty"`
	// RootMount is an empty host directory the Cal cannot write (see
	// caldir.Host.RootMount), on which the new root is built in the Cal's
	// mount namespace before it pivots into it: everything before the
	// pivot runs as root, and must not follow a path the Cal could have
	// replaced. Required with read-only-root.
	RootMount string `json:"root_mount,omitempty"`
	// Sockets are the descriptors, by name, of the unix sockets the
	// control plane bound for the Cal (caldir.Host.Bind); Listener
	// listens on one.
	Sockets  map[string]int `json:"sockets,omitempty"`
	UID      int            `json:"uid"`
	GID      int            `json:"gid"`
	Features []Feature      `json:"features"`
	// Secret is handed to the runtime in memory (the key-encryption
	// identity that opens the Cal's sealed key); it is never written inside.
	Secret string `json:"secret"`
}

// Has reports whether f is enabled.
func (c *Config) Has(f Feature) bool { return slices.Contains(c.Features, f) }

// Paths inside the sandbox.
const (
	DataDir = "/data"
	RunDir  = "/run/calnet"
)

// ConfigFD is the file descriptor of the config pipe in the sandboxed
// process (the first of exec.Cmd.ExtraFiles).
const ConfigFD = 3

// ReadConfig blocks until the driver has placed the process in its cgroups
// and written its config, then returns it.
func ReadConfig() (*Config, error) {
	f := os.NewFile(ConfigFD, "config")
	if f == nil {
		return nil, errors.New("sandbox: no config pipe (calnet cal is started by a driver)")
	}
	defer f.Close()
	const maxConfig = 1 << 20
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("sandbox: read config: %w", err)
	}
	var c Config
	if err := strictjson.Unmarshal(b, maxConfig, &c); err != nil {
		return nil, fmt.Errorf("sandbox: config: %w", err)
	}
	// The process starts in "/": a relative path would name another place.
	for field, p := range map[string]string{"dir": c.Dir, "run_dir": c.RunDir, "programs_dir": c.ProgramsDir, "root_mount": c.RootMount} {
		if p != "" && !filepath.IsAbs(p) {
			return nil, fmt.Errorf("sandbox: config: %s %q must be an absolute path", field, p)
		}
	}
	for name, fd := range c.Sockets {
		if fd <= ConfigFD {
			return nil, fmt.Errorf("sandbox: config: socket %s: descriptor %d is not one the driver passed", name, fd)
		}
	}
	// Workloads the Cal starts inherit none of its descriptors: neither
	// the sockets above nor anything else the process was started with.
	if err := InheritNothing(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Listener listens on the socket the driver passed under name. Call it
// after Enter, so that connections carry the Cal's uid (SO_PEERCRED is
// taken at listen). Each socket can be taken once.
func (c *Config) Listener(name string) (*net.UnixListener, error) {
	fd, ok := c.Sockets[name]
	if !ok {
		return nil, fmt.Errorf("sandbox: no socket %q was passed to this cal", name)
	}
	delete(c.Sockets, name)
	return caldir.Listen(os.NewFile(uintptr(fd), name))
}

// hostBinds are the host paths bound read-only into the new root when they
// exist: enough for the Go runtime, TLS roots and workloads' interpreters.
var hostBinds = []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"}

// Enter applies the in-process isolation steps of c. It must run before
// the runtime starts goroutines that do I/O. After it returns, paths are
// the sandbox's (DataDir, RunDir).
func Enter(c *Config) error {
	// With its config the Cal is on its own: it outlives its control plane
	// (a crash, restart or upgrade), and the next one adopts it. A driver
	// that set a parent-death signal to hold the child does not get to
	// take a configured Cal down with it. (Changing uid below would clear
	// the signal too, but not without own-uid.)
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: clear parent-death signal: %w", err)
	}
	if c.Has(UTSNamespace) {
		name := c.CalID
		if len(name) > 8 {
			name = "cal-" + name[:8]
		}
		if err := unix.Sethostname([]byte(name)); err != nil {
			return fmt.Errorf("sandbox: hostname: %w", err)
		}
	}
	if c.Has(ReadOnlyRoot) {
		if !c.Has(MountNamespace) {
			return errors.New("sandbox: read-only-root needs mount-namespace")
		}
		if err := pivot(c); err != nil {
			return fmt.Errorf("sandbox: root: %w", err)
		}
	}
	if c.Has(NetNamespace) {
		// Only loopback exists; bring it up for the Cal's own use.
		_ = loopbackUp()
	}
	if c.Has(OwnUID) {
		if err := dropCapabilities(); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		if err := unix.Setgroups([]int{}); err != nil {
			return fmt.Errorf("sandbox: setgroups: %w", err)
		}
		if err := unix.Setresgid(c.GID, c.GID, c.GID); err != nil {
			return fmt.Errorf("sandbox: setgid: %w", err)
		}
		if err := unix.Setresuid(c.UID, c.UID, c.UID); err != nil {
			return fmt.Errorf("sandbox: setuid: %w", err)
		}
		if err := clearInheritable(); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	if c.Has(NoNewPrivs) || c.Has(Seccomp) {
		if err := seccomp.SetNoNewPrivs(); err != nil {
			return fmt.Errorf("sandbox: no_new_privs: %w", err)
		}
	}
	if c.Has(Seccomp) {
		if err := loadFilter(); err != nil {
			return fmt.Errorf("sandbox: seccomp: %w", err)
		}
	}
	return nil
}

func bindRO(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("read-only %s: %w", dst, err)
	}
	return nil
}

// pivot builds the new root on a tmpfs and pivots into it.
func pivot(c *Config) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := c.RootMount
	if root == "" {
		return errors.New("no root mount point outside the Cal's directory (root_mount)")
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		return fmt.Errorf("tmpfs root: %w", err)
	}
	for _, p := range hostBinds {
		st, err := os.Lstat(p)
		if err != nil {
			continue
		}
		dst := filepath.Join(root, p)
		if st.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err == nil {
				if err := os.Symlink(target, dst); err != nil {
					return fmt.Errorf("link %s: %w", p, err)
				}
			}
			continue
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := bindRO(p, dst); err != nil {
			return err
		}
	}
	for _, d := range []string{"data", "proc", "dev", "tmp", "run/calnet", "opt/calnet", ".old"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount(c.Dir, filepath.Join(root, "data"), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind data: %w", err)
	}
	if c.RunDir != "" {
		if err := bindRO(c.RunDir, filepath.Join(root, "run/calnet")); err != nil {
			return err
		}
	}
	if c.ProgramsDir != "" {
		if err := bindRO(c.ProgramsDir, filepath.Join(root, "opt/calnet")); err != nil {
			return err
		}
	}
	if err := unix.Mount("tmpfs", filepath.Join(root, "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=16m,mode=1777"); err != nil {
		return fmt.Errorf("tmp: %w", err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(root, "dev"), "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,mode=0755"); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	for _, d := range []string{"null", "zero", "random", "urandom"} {
		dst := filepath.Join(root, "dev", d)
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount("/dev/"+d, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("dev/%s: %w", d, err)
		}
	}
	if c.Has(PIDNamespace) {
		if err := unix.Mount("proc", filepath.Join(root, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("proc: %w", err)
		}
	}
	if err := unix.PivotRoot(root, filepath.Join(root, ".old")); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	os.Remove("/.old")
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("read-only root: %w", err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the Cal's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
