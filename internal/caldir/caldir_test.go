package caldir

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/limitedfile"
)

func layout(t *testing.T) (Layout, string) {
	t.Helper()
	data := t.TempDir()
	l := New(data)
	if err := l.Prepare(); err != nil {
		t.Fatal(err)
	}
	return l, data
}

// listenAndSay listens on f and answers every connection with word.
func listenAndSay(t *testing.T, f *os.File, word string) {
	t.Helper()
	ln, err := Listen(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// A failed write shows as the test's read of the word.
			_, _ = c.Write([]byte(word))
			c.Close()
		}
	}()
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBindReplacesWhatWasThere: whatever an earlier run (or anyone) left
// under a socket's name, Bind puts a fresh socket there, and a dial
// reaches the process that listens on it and nothing else.
func TestBindReplacesWhatWasThere(t *testing.T) {
	l, data := layout(t)
	// Another listener, which a planted symlink names.
	other, err := l.Host("other").Bind("gateway.sock")
	if err != nil {
		t.Fatal(err)
	}
	listenAndSay(t, other["gateway.sock"], "other")
	dir := filepath.Join(data, "host", "cal")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(data, "host", "other", "gateway.sock"), filepath.Join(dir, "gateway.sock")); err != nil {
		t.Fatal(err)
	}
	socks, err := l.Host("cal").Bind("gateway.sock", "console.sock")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gateway.sock", "console.sock"} {
		st, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || st.Mode()&os.ModeSocket == 0 {
			t.Fatalf("%s after Bind: %v %v, want a socket", name, st, err)
		}
	}
	sock := l.Host("cal").Socket("gateway.sock", os.Geteuid())
	// Bound but not listening: refused, not queued.
	if _, err := sock.Dial(context.Background()); err == nil {
		t.Fatal("dialed a socket nobody listens on")
	}
	listenAndSay(t, socks["gateway.sock"], "cal")
	c, err := sock.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, c); got != "cal" {
		t.Fatalf("dial reached %q, want the cal's listener", got)
	}
	if st, err := os.Stat(l.Host("cal").RootMount()); err != nil || !st.IsDir() {
		t.Fatalf("root mount point: %v", err)
	}
}

// TestDialChecksThePeer: a listener of another uid than the one expected
// is refused with ErrPeer.
func TestDialChecksThePeer(t *testing.T) {
	l, _ := layout(t)
	socks, err := l.Host("cal").Bind("api.sock")
	if err != nil {
		t.Fatal(err)
	}
	listenAndSay(t, socks["api.sock"], "x")
	if _, err := l.Host("cal").Socket("api.sock", os.Geteuid()+1).Dial(context.Background()); !errors.Is(err, ErrPeer) {
		t.Fatalf("dial expecting another uid: %v, want ErrPeer", err)
	}
	if (Socket{}).IsZero() != true {
		t.Fatal("zero socket")
	}
	if _, err := (Socket{}).Dial(context.Background()); err == nil {
		t.Fatal("the zero socket dialed")
	}
}

// TestHostRefusesAPlantedDirectory: a host directory that is a symlink
// (or, as root, another uid's directory) is refused, not used.
func TestHostRefusesAPlantedDirectory(t *testing.T) {
	l, data := layout(t)
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(data, "host", "linked")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Host("linked").Bind("api.sock"); err == nil {
		t.Fatal("bound in a symlinked host directory")
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "api.sock")); err == nil {
		t.Fatal("a socket was bound through the symlink")
	}
	// Nor is one dialed through it.
	real, err := l.Host("real").Bind("api.sock")
	if err != nil {
		t.Fatal(err)
	}
	listenAndSay(t, real["api.sock"], "real")
	os.Remove(filepath.Join(data, "host", "linked"))
	must(t, os.Symlink(filepath.Join(data, "host", "real"), filepath.Join(data, "host", "linked")))
	if _, err := l.Host("linked").Socket("api.sock", os.Geteuid()).Dial(context.Background()); err == nil {
		t.Fatal("dialed through a symlinked host directory")
	}
	if os.Geteuid() == 0 {
		dir := filepath.Join(data, "host", "theirs")
		must(t, os.Mkdir(dir, 0o700))
		must(t, os.Chown(dir, 12345, 12345))
		if _, err := l.Host("theirs").Bind("api.sock"); err == nil {
			t.Fatal("bound in another uid's host directory")
		}
	}
}

// TestLongDataDirectory: a data directory of any length works, though a
// unix socket address holds 107 bytes.
func TestLongDataDirectory(t *testing.T) {
	data := filepath.Join(t.TempDir(), strings.Repeat("d", 100), strings.Repeat("e", 100))
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	l := New(data)
	if err := l.Prepare(); err != nil {
		t.Fatal(err)
	}
	socks, err := l.Host("cal").Bind("gateway.handoff.sock")
	if err != nil {
		t.Fatal(err)
	}
	listenAndSay(t, socks["gateway.handoff.sock"], "long")
	c, err := l.Host("cal").Socket("gateway.handoff.sock", os.Geteuid()).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, c); got != "long" {
		t.Fatalf("got %q", got)
	}
}

func TestNamesArePlain(t *testing.T) {
	l, _ := layout(t)
	for _, id := range []string{"", ".", "..", "../x", "a/b", "a\x00b"} {
		if err := l.Sandbox(id).Populate(map[string][]byte{"f": nil}, os.Geteuid(), os.Getegid()); err == nil {
			t.Errorf("Populate of cal %q", id)
		}
		if _, err := l.Host(id).Bind("api.sock"); err == nil {
			t.Errorf("Bind of cal %q", id)
		}
		if !l.Host(id).Socket("api.sock", 0).IsZero() {
			t.Errorf("Socket of cal %q", id)
		}
	}
	if _, err := l.Host("cal").Bind("../api.sock"); err == nil {
		t.Error("Bind of socket ../api.sock")
	}
	if err := l.Sandbox("cal").Populate(map[string][]byte{"../f": nil}, os.Geteuid(), os.Getegid()); err == nil {
		t.Error("Populate of file ../f")
	}
}

// TestPopulateNeverFollows: files are created afresh where symlinks,
// FIFOs and hard links had their names; what those named is untouched.
func TestPopulateNeverFollows(t *testing.T) {
	l, data := layout(t)
	dir := filepath.Join(data, "cals", "cal")
	must(t, os.Mkdir(dir, 0o700))
	target := filepath.Join(t.TempDir(), "target")
	must(t, os.WriteFile(target, []byte("untouched"), 0o644))
	must(t, os.Symlink(target, filepath.Join(dir, "identity.key")))
	must(t, unix.Mkfifo(filepath.Join(dir, "template.json"), 0o600))
	must(t, os.Link(target, filepath.Join(dir, "blessing.json")))
	files := map[string][]byte{"identity.key": []byte("key"), "template.json": []byte("tmpl"), "blessing.json": []byte("b")}
	if err := l.Sandbox("cal").Populate(files, os.Geteuid(), os.Getegid()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "untouched" {
		t.Fatalf("the link's target now holds %q", b)
	}
	for name, want := range files {
		p := filepath.Join(dir, name)
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, st, err)
		}
		if b, _ := os.ReadFile(p); string(b) != string(want) {
			t.Fatalf("%s holds %q", name, b)
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v", st.Mode())
	}
}

// TestReadFileRefuses: only a regular file with one link, under the limit.
func TestReadFileRefuses(t *testing.T) {
	l, data := layout(t)
	sb := l.Sandbox("cal")
	if err := sb.Populate(map[string][]byte{"ok": []byte("chain"), "big": make([]byte, 100)}, os.Geteuid(), os.Getegid()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "cals", "cal")
	outside := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(outside, []byte("secret"), 0o600))
	must(t, os.Symlink(outside, filepath.Join(dir, "link")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(t, os.Link(outside, filepath.Join(dir, "hard")))
	if b, err := sb.ReadFile("ok", 10); err != nil || string(b) != "chain" {
		t.Fatalf("ok: %q %v", b, err)
	}
	for _, c := range []struct {
		name string
		want error
	}{
		{"link", unix.ELOOP},
		{"fifo", limitedfile.ErrNotRegular},
		{"hard", nil},
		{"big", limitedfile.ErrTooLarge},
		{"../cal/ok", nil},
	} {
		b, err := sb.ReadFile(c.name, 10)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %q %v, want %v", c.name, b, err, c.want)
		}
	}
}

// TestRechownNeverFollows: everything of the old uid in the tree is the
// new uid's, links themselves included; what a link names is untouched.
func TestRechownNeverFollows(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to other uids needs root")
	}
	l, data := layout(t)
	const old, new = 300001, 300002
	sb := l.Sandbox("cal")
	if err := sb.Populate(map[string][]byte{"identity.key": []byte("k")}, old, old); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "cals", "cal")
	outside := filepath.Join(t.TempDir(), "outside")
	must(t, os.WriteFile(outside, nil, 0o600))
	must(t, os.Chown(outside, old, old))
	must(t, os.MkdirAll(filepath.Join(dir, "work", "deep"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "work", "deep", "f"), nil, 0o600))
	must(t, os.Symlink(outside, filepath.Join(dir, "work", "link")))
	for _, p := range []string{"work", "work/deep", "work/deep/f", "work/link"} {
		must(t, os.Lchown(filepath.Join(dir, p), old, old))
	}
	must(t, os.WriteFile(filepath.Join(dir, "roots"), nil, 0o600)) // root's: stays so
	if err := sb.Rechown(old, new); err != nil {
		t.Fatal(err)
	}
	owner := func(p string) int {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return int(st.Uid)
	}
	for _, p := range []string{"", "identity.key", "work", "work/deep", "work/deep/f", "work/link"} {
		if got := owner(filepath.Join(dir, p)); got != new {
			t.Errorf("%q owned by %d, want %d", p, got, new)
		}
	}
	if owner(outside) != old {
		t.Error("the link's target was re-owned")
	}
	if owner(filepath.Join(dir, "roots")) != 0 {
		t.Error("root's file was re-owned")
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
