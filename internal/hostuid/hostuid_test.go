package hostuid

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testHost is a Host on a temp directory with a small uid space, an empty
// process list and an empty scan directory.
func testHost(t *testing.T) *Host {
	t.Helper()
	h := New(filepath.Join(t.TempDir(), "var"))
	h.ProcDir = t.TempDir()
	h.ScanDirs = []string{t.TempDir()}
	h.Blocks = 64
	return h
}

// dataDir makes a data directory that exists.
func dataDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// fakeProc adds a process with uid to h's process list.
func fakeProc(t *testing.T, h *Host, pid, uid int) {
	t.Helper()
	d := filepath.Join(h.ProcDir, strconv.Itoa(pid))
	must(t, os.MkdirAll(d, 0o755))
	status := fmt.Sprintf("Name:\tcal\nUid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid)
	if err := os.WriteFile(filepath.Join(d, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestClaimsNeverOverlap(t *testing.T) {
	h := testHost(t)
	ctx := context.Background()
	const n = 16
	got := make([][]int, n)
	dirs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		dirs[i] = dataDir(t)
		wg.Go(func() {
			b, err := h.Claim(ctx, dirs[i], fmt.Sprint("net", i), nil)
			if err != nil {
				t.Error(err)
			}
			got[i] = b
		})
	}
	wg.Wait()
	seen := map[int]int{}
	for i, bs := range got {
		if len(bs) != 1 {
			t.Fatalf("network %d got blocks %v, want one", i, bs)
		}
		if j, dup := seen[bs[0]]; dup {
			t.Fatalf("networks %d and %d share block %d", i, j, bs[0])
		}
		seen[bs[0]] = i
	}
	// Claiming again returns the same block.
	again, err := h.Claim(ctx, dirs[3], "net3", nil)
	if err != nil || !slices.Equal(again, got[3]) {
		t.Fatalf("second claim of the same data dir: %v, %v; want %v", again, err, got[3])
	}
}

// TestClaimsAcrossProcesses claims from several processes at once: the
// flock, not a mutex, keeps them apart.
func TestClaimsAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("HOSTUID_CHILD_DIR"); dir != "" {
		h := New(dir)
		h.ProcDir, h.ScanDirs, h.Blocks = os.Getenv("HOSTUID_CHILD_PROC"), nil, 64
		b, err := h.Claim(context.Background(), os.Getenv("HOSTUID_CHILD_DATA"), "child", nil)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(b[0])
		os.Exit(0)
	}
	h := testHost(t)
	const n = 8
	outs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		data := dataDir(t)
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestClaimsAcrossProcesses$")
			cmd.Env = append(os.Environ(), "HOSTUID_CHILD_DIR="+h.Dir, "HOSTUID_CHILD_PROC="+h.ProcDir, "HOSTUID_CHILD_DATA="+data)
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("child %d: %v: %s", i, err, out)
			}
			outs[i] = string(out)
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, o := range outs {
		if seen[o] {
			t.Fatalf("two processes claimed block %s", o)
		}
		seen[o] = true
	}
	claims, err := h.Claims(context.Background())
	if err != nil || len(claims) != n {
		t.Fatalf("the file lists %d claims (%v), want %d", len(claims), err, n)
	}
}

func TestClaimKeepsWantedBlocksWhenFree(t *testing.T) {
	h := testHost(t)
	ctx := context.Background()
	a, b := dataDir(t), dataDir(t)
	got, err := h.Claim(ctx, a, "a", []int{0})
	if err != nil || !slices.Equal(got, []int{0}) {
		t.Fatalf("claim of a free wanted block: %v, %v", got, err)
	}
	// b's Cals were given block 0 by an older calnet too: it must move.
	got, err = h.Claim(ctx, b, "b", []int{0})
	if err != nil || slices.Equal(got, []int{0}) {
		t.Fatalf("claim of a taken wanted block: %v, %v; want another block", got, err)
	}
}

func TestReleasedWhenDataDirIsGone(t *testing.T) {
	h := testHost(t)
	ctx := context.Background()
	a := dataDir(t)
	first, _ := h.Claim(ctx, a, "a", nil)
	if err := os.RemoveAll(a); err != nil {
		t.Fatal(err)
	}
	got, err := h.Claim(ctx, dataDir(t), "b", nil)
	if err != nil || !slices.Equal(got, first) {
		t.Fatalf("after a's data dir is removed, a new network got %v (%v), want a's %v", got, err, first)
	}
	c := dataDir(t)
	if _, err := h.Claim(ctx, c, "c", nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx, c, "c"); err != nil {
		t.Fatal(err)
	}
	claims, _ := h.Claims(ctx)
	for _, cl := range claims {
		if cl.DataDir == c {
			t.Fatalf("released claim still listed: %+v", cl)
		}
	}
}

func TestReplacedNetworkInSameDirIsReleased(t *testing.T) {
	h := testHost(t)
	ctx := context.Background()
	d := dataDir(t)
	old, _ := h.Claim(ctx, d, "old", nil)
	fakeProc(t, h, 100, h.Block(old[0]).First+1) // a Cal of the old network still runs
	got, err := h.Claim(ctx, d, "new", nil)
	if err != nil || slices.Equal(got, old) {
		t.Fatalf("a new network in the directory got %v (%v), the old one's block %v has a live process", got, err, old)
	}
}

func TestBlocksInUseAreSkipped(t *testing.T) {
	h := testHost(t)
	ctx := context.Background()
	fakeProc(t, h, 42, h.Block(0).First+7) // an older calnet's Cal
	f := filepath.Join(h.ScanDirs[0], "left")
	must(t, os.WriteFile(f, nil, 0o600))
	if os.Geteuid() == 0 {
		if err := os.Chown(f, h.Block(1).First, h.Block(1).First); err != nil {
			t.Fatal(err)
		}
	} else {
		fakeProc(t, h, 43, h.Block(1).First)
	}
	got, err := h.Claim(ctx, dataDir(t), "a", nil)
	if err != nil || !slices.Equal(got, []int{2}) {
		t.Fatalf("claim: %v, %v; want block 2 (0 has a process, 1 a file)", got, err)
	}
	owner, err := h.Owner(h.Block(0), nil)
	if err != nil || owner == "" {
		t.Fatalf("Owner of block 0 = %q, %v; want the process", owner, err)
	}
	if owner, _ := h.Owner(h.Block(0), func(int) bool { return true }); owner != "" {
		t.Fatalf("Owner with every uid accepted = %q", owner)
	}
}

// TestRealProcessBlocksItsBlock runs a real process as a uid of block 0.
func TestRealProcessBlocksItsBlock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another uid")
	}
	h := testHost(t)
	h.ProcDir = "/proc"
	h.Base = 3_000_000_000 - 4*h.BlockSize // far from any other test's uids
	h.Blocks = 4
	uid := h.Block(0).First + 5
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		must(t, cmd.Process.Kill())
		_ = cmd.Wait() // its status is the kill's
	}()
	got, err := h.Claim(context.Background(), dataDir(t), "a", nil)
	if err != nil || !slices.Equal(got, []int{1}) {
		t.Fatalf("claim: %v, %v; want block 1 (block 0 has pid %d)", got, err, cmd.Process.Pid)
	}
}

func TestGrowAndExhaustion(t *testing.T) {
	h := testHost(t)
	h.Blocks = 3
	ctx := context.Background()
	a := dataDir(t)
	if _, err := h.Claim(ctx, a, "a", nil); err != nil {
		t.Fatal(err)
	}
	if b, err := h.Grow(ctx, a, "a"); err != nil || b != 1 {
		t.Fatalf("grow: %d, %v", b, err)
	}
	if _, err := h.Claim(ctx, dataDir(t), "b", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Claim(ctx, dataDir(t), "c", nil); err != ErrExhausted {
		t.Fatalf("claim past the last block: %v, want ErrExhausted", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := h.Grow(cctx, "/nowhere", "x"); err == nil {
		t.Fatal("grow without a claim succeeded")
	}
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
