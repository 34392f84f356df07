package caldir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Host is a Cal's host directory: root's, mounted into no sandbox.
type Host struct {
	path string
	err  error
}

// Bind makes the Cal's host directory and binds a fresh unix socket for
// each name in it, replacing whatever an earlier run left there. The
// sockets are not listening: the caller hands them to the Cal's process,
// which listens (Listen), so that connections find the Cal's credentials
// on them. The caller closes its copies once the process has them.
func (h Host) Bind(names ...string) (map[string]*os.File, error) {
	if h.err != nil {
		return nil, h.err
	}
	dir, err := ownDir(h.path, 0o700)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	if err := unix.Mkdirat(int(dir.Fd()), "root", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("%s: %w", h.RootMount(), err)
	}
	out := make(map[string]*os.File, len(names))
	fail := func(err error) (map[string]*os.File, error) {
		for _, f := range out {
			f.Close()
		}
		return nil, err
	}
	for _, name := range names {
		if err := checkName("socket name", name); err != nil {
			return fail(err)
		}
		path := filepath.Join(h.path, name)
		if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fail(fmt.Errorf("socket %s: %w", path, err))
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("socket %s: %w", path, err))
		}
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: inDir(int(dir.Fd()), name)}); err != nil {
			unix.Close(fd)
			return fail(fmt.Errorf("bind %s: %w", path, err))
		}
		out[name] = os.NewFile(uintptr(fd), path)
	}
	return out, nil
}

// Socket names the socket name of the Cal, whose listener must have uid.
func (h Host) Socket(name string, uid int) Socket {
	if h.err != nil || checkName("socket name", name) != nil {
		return Socket{}
	}
	return Socket{path: filepath.Join(h.path, name), uid: uid}
}

// Remove removes the host directory (a Cal that no longer exists).
func (h Host) Remove() error {
	if h.err != nil {
		return h.err
	}
	return os.RemoveAll(h.path)
}

// RootMount is the empty directory on which the Cal's sandbox builds its
// new root, in the Cal's own mount namespace (Bind makes it).
func (h Host) RootMount() string { return filepath.Join(h.path, "root") }

// inDir is the address of name in the open directory dirfd: short
// whatever the data directory's length (a unix socket address holds 107
// bytes), and resolved through the directory already opened.
func inDir(dirfd int, name string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name) }
