package caldir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/limitedfile"
)

// Sandbox is a Cal's sandbox directory: the Cal's own, and so
// attacker-controlled once the Cal has run.
type Sandbox struct {
	path string
	err  error
}

// MountSource is the directory's path on the host, for the driver to
// mount as the Cal's /data and for nothing else: a path below it names
// whatever the Cal put there (internal/archtest keeps its callers few).
func (s Sandbox) MountSource() string { return s.path }

// open opens the sandbox directory itself, refusing a symlink in its
// place (its parent is root's, so only root could have put one there).
func (s Sandbox) open() (*os.File, error) {
	if s.err != nil {
		return nil, s.err
	}
	fd, err := unix.Open(s.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	return os.NewFile(uintptr(fd), s.path), nil
}

// Populate creates the sandbox directory if it is missing and writes
// files into it, each created afresh (whatever had the name is unlinked
// first, and O_EXCL|O_NOFOLLOW refuses anything put back in between)
// with mode 0600 and owned by uid:gid; then it gives the directory to
// uid:gid, mode 0700. It runs before the Cal first runs; on a directory
// the Cal already had it still writes only the files it names, and never
// through a link.
func (s Sandbox) Populate(files map[string][]byte, uid, gid int) error {
	if s.err != nil {
		return s.err
	}
	if err := unix.Mkdir(s.path, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	dir, err := s.open()
	if err != nil {
		return err
	}
	defer dir.Close()
	dfd := int(dir.Fd())
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := checkName("file name", name); err != nil {
			return err
		}
		p := filepath.Join(s.path, name)
		if err := unix.Unlinkat(dfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%s: %w", p, err)
		}
		fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		f := os.NewFile(uintptr(fd), p)
		_, err = f.Write(files[name])
		if err == nil {
			err = f.Chown(uid, gid)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := dir.Chown(uid, gid); err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	if err := dir.Chmod(0o700); err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	return nil
}

// ReadFile reads the regular file name directly in the sandbox directory,
// at most limit bytes, never through a link (a symlink, or a hard link to
// a file outside) and never blocking on a FIFO. It is for migrating data
// the control plane did not keep a copy of; the caller must still treat
// the content as the Cal's word only.
func (s Sandbox) ReadFile(name string, limit int64) ([]byte, error) {
	if err := checkName("file name", name); err != nil {
		return nil, err
	}
	dir, err := s.open()
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	p := filepath.Join(s.path, name)
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	st, err := limitedfile.Regular(f, p)
	if err != nil {
		return nil, err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Nlink != 1 {
		return nil, fmt.Errorf("%s: has other hard links; refusing to read it", p)
	}
	return limitedfile.ReadAll(f, p, limit)
}

// maxDepth bounds how deep Rechown descends into a Cal's directory tree.
const maxDepth = 64

// Rechown gives everything in the sandbox owned by uid or gid old to new
// instead, never following a link. The Cal must not run.
func (s Sandbox) Rechown(old, new int) error {
	dir, err := s.open()
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := rechown(dir, s.path, old, new, 0); err != nil {
		return err
	}
	return rechownAt(int(dir.Fd()), "", s.path, old, new)
}

// rechown re-owns the entries of the open directory dir, descending into
// subdirectories by descriptor.
func rechown(dir *os.File, path string, old, new, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: deeper than %d directories", path, maxDepth)
	}
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, name := range names {
		p := filepath.Join(path, name)
		if err := rechownAt(int(dir.Fd()), name, p, old, new); err != nil {
			return err
		}
		fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOENT) {
			continue // not a directory (a symlink is not followed)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		sub := os.NewFile(uintptr(fd), p)
		err = rechown(sub, p, old, new, depth+1)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// rechownAt re-owns name in dirfd (the directory itself when name is "")
// if old owns it, without following a link.
func rechownAt(dirfd int, name, path string, old, new int) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, flags); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	u, g := int(st.Uid), int(st.Gid)
	if u != old && g != old {
		return nil
	}
	if u == old {
		u = new
	}
	if g == old {
		g = new
	}
	if err := unix.Fchownat(dirfd, name, u, g, flags); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
