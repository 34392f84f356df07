package calfs

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/internal/sandbox"
)

func needPool(t *testing.T) {
	t.Helper()
	if err := Supported(); err != nil {
		t.Skip(err)
	}
}

// openPool makes a pool on a temp data directory, closed at cleanup.
func openPool(t *testing.T) (*Pool, string) {
	t.Helper()
	needPool(t)
	data := t.TempDir()
	for _, d := range []string{filepath.Dir(data), data} { // the Cal uids traverse it, as in a data dir
		must(t, os.Chmod(d, 0o711))
	}
	p, err := Open(context.Background(), filepath.Join(data, "cals.img"), filepath.Join(data, "cals"), MinSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, p)
	return p, data
}

// writeAsUID writes mib MiB into path as uid, like a Cal's workload, and
// returns dd's output and the size of the file.
func writeAsUID(t *testing.T, uid int, path string, mib int) (string, int64) {
	t.Helper()
	cmd := exec.Command("dd", "if=/dev/zero", "of="+path, "bs=1M", "count="+strconv.Itoa(mib), "conv=fsync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, _ := cmd.CombinedOutput()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), st.Size()
}

// TestQuotaEnforcedByKernel: a workload writing past its Cal's quota gets
// "Disk quota exceeded" from the kernel; another Cal is not affected.
func TestQuotaEnforcedByKernel(t *testing.T) {
	p, _ := openPool(t)
	const uid = 3_900_000_001
	a, err := p.Create("cal-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Create("cal-b")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{a, b} {
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := SetLimit(a, 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := SetLimit(b, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, size := writeAsUID(t, uid, filepath.Join(a, "fill"), 32)
	if size > 8<<20 {
		t.Fatalf("wrote %d bytes past an 8 MiB quota: %s", size, out)
	}
	if !strings.Contains(out, "Disk quota exceeded") {
		t.Fatalf("dd past the quota: %q, want EDQUOT", out)
	}
	if _, size := writeAsUID(t, uid, filepath.Join(b, "fill"), 32); size != 32<<20 {
		t.Fatalf("cal-b wrote %d bytes of 32 MiB within its 64 MiB quota", size)
	}
	used, limit, err := Usage(a)
	if err != nil || limit != 8<<20 || used <= 0 || used > limit {
		t.Fatalf("usage of cal-a: %d of %d, %v", used, limit, err)
	}
	// Create keeps an existing subvolume; SetLimit refuses a plain directory.
	if again, err := p.Create("cal-a"); err != nil || again != a {
		t.Fatalf("create again: %s, %v", again, err)
	}
	if err := SetLimit(t.TempDir(), 1<<20); err == nil {
		t.Fatal("SetLimit on a plain directory succeeded")
	}
	if err := p.Remove("cal-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed subvolume still there: %v", err)
	}
}

// TestSurvivesRemount: the pool comes back, quotas and all, after an
// unmount (a control-plane restart), and a mount left by a control plane
// that died is used as it is.
func TestSurvivesRemount(t *testing.T) {
	p, data := openPool(t)
	a, _ := p.Create("cal-a")
	if err := SetLimit(a, 4<<20); err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(a, "kept"), []byte("x"), 0o600))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a, "kept")); err == nil {
		t.Fatal("the pool is still mounted after Close")
	}
	ctx := context.Background()
	p2, err := Open(ctx, filepath.Join(data, "cals.img"), filepath.Join(data, "cals"), MinSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, p2)
	if b, err := os.ReadFile(filepath.Join(a, "kept")); err != nil || string(b) != "x" {
		t.Fatalf("after remount: %q, %v", b, err)
	}
	if _, limit, err := Usage(a); err != nil || limit != 4<<20 {
		t.Fatalf("quota after remount: %d, %v", limit, err)
	}
	p3, err := Open(ctx, filepath.Join(data, "cals.img"), filepath.Join(data, "cals"), MinSize, nil)
	if err != nil {
		t.Fatalf("open while mounted: %v", err)
	}
	if p3.Size() != MinSize {
		t.Fatalf("size %d", p3.Size())
	}
}

// TestMigratesPlainDirectories: a network made before disk quotas keeps
// its Cal directories, now subvolumes, owners and modes as they were.
func TestMigratesPlainDirectories(t *testing.T) {
	needPool(t)
	data := t.TempDir()
	cals := filepath.Join(data, "cals")
	old := filepath.Join(cals, "cal-old")
	must(t, os.MkdirAll(filepath.Join(old, "sub"), 0o700))
	must(t, os.WriteFile(filepath.Join(old, "sub", "f"), []byte("data"), 0o600))
	must(t, os.Symlink("sub/f", filepath.Join(old, "link")))
	must(t, os.Chown(old, 3_900_000_002, 3_900_000_002))
	must(t, os.Chown(filepath.Join(old, "sub", "f"), 3_900_000_002, 3_900_000_002))
	p, err := Open(context.Background(), filepath.Join(data, "cals.img"), cals, MinSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, p)
	if ok, err := isSubvolume(old); err != nil || !ok {
		t.Fatalf("migrated directory is not a subvolume: %v", err)
	}
	f, err := os.Open(filepath.Join(old, "link"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	must(t, err)
	var st syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(old, "sub", "f"), &st))
	if string(b) != "data" || st.Uid != 3_900_000_002 || st.Mode&0o777 != 0o600 {
		t.Fatalf("migrated file: %q uid %d mode %o", b, st.Uid, st.Mode&0o777)
	}
	if _, err := os.Stat(cals + ".pre-quota"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old directory is left: %v", err)
	}
}

// TestSandboxRefusesEveryCreatingIoctl: the seccomp filter's list is the
// set of ioctls that make a subvolume.
func TestSandboxRefusesEveryCreatingIoctl(t *testing.T) {
	want := []uint32{iocSnapCreate, iocSubvolCreate, iocSnapCreateV2, iocSubvolCreateV2}
	if !slices.Equal(sandbox.SubvolumeIoctls, want) {
		t.Fatalf("sandbox.SubvolumeIoctls = %#x, want %#x", sandbox.SubvolumeIoctls, want)
	}
}

// BenchmarkCreateAndLimit is what the pool adds to a spawn: a subvolume
// for the Cal's directory and its quota.
func BenchmarkCreateAndLimit(b *testing.B) {
	if err := Supported(); err != nil {
		b.Skip(err)
	}
	data := b.TempDir()
	p, err := Open(context.Background(), filepath.Join(data, "cals.img"), filepath.Join(data, "cals"), MinSize, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			b.Error(err)
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		dir, err := p.Create("cal-" + strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		if err := SetLimit(dir, 64<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNoSecondFilesystemWhileHeld: after an unmount the filesystem lives
// on while another mount namespace (a Cal still exiting) holds it; Close
// says so, and Open waits for it instead of mounting a second filesystem
// over the same image (which would not see the first one's writes).
func TestNoSecondFilesystemWhileHeld(t *testing.T) {
	p, data := openPool(t)
	a, _ := p.Create("cal-a")
	if err := os.WriteFile(filepath.Join(a, "kept"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { // killed below unless the test ends before
		_ = holder.Process.Kill() // done already: the test killed it
		_ = holder.Wait()         // its status is the kill's
	}()
	time.Sleep(200 * time.Millisecond) // until unshare has copied the mounts
	if err := p.Close(); err == nil || !strings.Contains(err.Error(), "still in use") {
		t.Fatalf("Close while a namespace holds the filesystem: %v", err)
	}
	opened := make(chan error, 1)
	go func() {
		p2, err := Open(context.Background(), filepath.Join(data, "cals.img"), filepath.Join(data, "cals"), MinSize, nil)
		if err == nil {
			closeAtEnd(t, p2)
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("Open returned (%v) while the old filesystem lives", err)
	case <-time.After(time.Second):
	}
	must(t, holder.Process.Kill())
	_ = holder.Wait() // its status is the kill's
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(a, "kept")); err != nil || string(b) != "x" {
		t.Fatalf("after the holder ended: %q, %v", b, err)
	}
}

// closeAtEnd closes p when the test ends (it unmounts), failing the
// test if that fails.
func closeAtEnd(t testing.TB, p *Pool) {
	t.Helper()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
