package securedir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nobody is a uid that is not this process's.
const nobody = 65534

// TestCheck builds directory trees with real owners and modes and checks
// each verdict: another user's directory, anywhere on the path, or one
// its group or others may write, is refused; a sticky ancestor (like
// /tmp) is not.
func TestCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give directories to another user")
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, base string) string // returns the directory to check
		want  string                                 // "" for accepted, else a part of the error
	}{
		{"root's own", func(t *testing.T, base string) string {
			return mkdir(t, base, "data", 0o700, 0)
		}, ""},
		{"below a sticky world-writable directory", func(t *testing.T, base string) string {
			tmp := mkdir(t, base, "tmp", os.ModeSticky|0o777, 0)
			return mkdir(t, tmp, "data", 0o711, 0)
		}, ""},
		{"owned by another user", func(t *testing.T, base string) string {
			tmp := mkdir(t, base, "tmp", os.ModeSticky|0o777, 0)
			return mkdir(t, tmp, "data", 0o711, nobody)
		}, "owned by uid 65534"},
		{"a parent owned by another user", func(t *testing.T, base string) string {
			home := mkdir(t, base, "home", 0o755, nobody)
			return mkdir(t, home, "data", 0o700, 0)
		}, "owned by uid 65534"},
		{"writable by others", func(t *testing.T, base string) string {
			return mkdir(t, base, "data", 0o777, 0)
		}, "writable by its group or others"},
		{"sticky and world-writable itself", func(t *testing.T, base string) string {
			return mkdir(t, base, "data", os.ModeSticky|0o777, 0)
		}, "writable by its group or others"},
		{"a parent writable by its group", func(t *testing.T, base string) string {
			shared := mkdir(t, base, "shared", 0o775, 0)
			return mkdir(t, shared, "data", 0o700, 0)
		}, "writable by its group or others"},
		{"a link owned by another user", func(t *testing.T, base string) string {
			tmp := mkdir(t, base, "tmp", os.ModeSticky|0o777, 0)
			real := mkdir(t, base, "real", 0o700, 0)
			link := filepath.Join(tmp, "data")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(link, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			return link
		}, "owned by uid 65534"},
		{"a root link to an unsafe target", func(t *testing.T, base string) string {
			home := mkdir(t, base, "home", 0o755, nobody)
			target := mkdir(t, home, "data", 0o700, 0)
			link := filepath.Join(base, "data")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "owned by uid 65534"},
		{"a root link to a safe target", func(t *testing.T, base string) string {
			mkdir(t, base, "real", 0o700, 0)
			link := filepath.Join(base, "data")
			if err := os.Symlink("real", link); err != nil {
				t.Fatal(err)
			}
			return link
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			must(t, os.Chmod(base, 0o755))
			err := Check(tc.setup(t, base))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func mkdir(t *testing.T, parent, name string, mode os.FileMode, uid int) string {
	t.Helper()
	p := filepath.Join(parent, name)
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOwnFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	dir := t.TempDir()
	file := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		must(t, os.Chmod(p, mode))
		must(t, os.Chown(p, uid, uid))
		return p
	}
	if err := OwnFile(file("mine", 0o600, 0)); err != nil {
		t.Errorf("own file: %v", err)
	}
	for _, p := range []string{file("theirs", 0o600, nobody), file("open", 0o666, 0)} {
		if err := OwnFile(p); !errors.Is(err, ErrNotOwn) {
			t.Errorf("%s: %v, want ErrNotOwn", p, err)
		}
	}
	link := filepath.Join(dir, "link")
	must(t, os.Symlink(filepath.Join(dir, "mine"), link))
	if err := OwnFile(link); !errors.Is(err, ErrNotOwn) {
		t.Errorf("a link: %v, want ErrNotOwn", err)
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
