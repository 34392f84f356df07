// Package securedir checks that a directory root keeps its secrets and
// code in is root's alone: that no other user can rename, replace or add
// an entry in it, nor in any directory above it.
//
// `calnet up` keeps in its data directory the root credential
// (admin.token), the network's keys, the ledger, the state store, the
// programs every Cal runs and the Cal filesystem's image. Whoever can
// write the data directory (or a directory above it) can rename any of
// them away and put their own in its place, whatever the files' own
// modes: a local user who created the directory first (say
// /tmp/calnet-data, before the operator ran calnet up on it) would then
// choose the root credential at the next start.
package securedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Trusted reports whether uid may own a directory this process trusts:
// root, or this process's own effective uid.
func trusted(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// Check returns nil when dir (absolute) is a directory that only root (or
// this process's user) can change, and so is every directory above it:
// each is owned by root or this process's user, and none is writable by
// its group or others, but for an ancestor with the sticky bit (like
// /tmp), where others may not rename or remove what they do not own. A
// symbolic link on the way must be root's too, and its target is checked
// the same way. The error names the first directory that fails and why.
func Check(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%s: not an absolute path", dir)
	}
	return check(filepath.Clean(dir), 0)
}

// maxLinks bounds the symbolic links followed, as the kernel does.
const maxLinks = 40

func check(dir string, links int) error {
	if links > maxLinks {
		return fmt.Errorf("%s: too many symbolic links", dir)
	}
	parts := strings.Split(strings.TrimPrefix(dir, "/"), "/")
	cur := "/"
	for i := -1; i < len(parts); i++ {
		if i >= 0 {
			if parts[i] == "" {
				continue
			}
			cur = filepath.Join(cur, parts[i])
		}
		last := i == len(parts)-1
		st, err := os.Lstat(cur)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner to check", cur)
		}
		if !trusted(sys.Uid) {
			return fmt.Errorf("%s is owned by uid %d, not root: that user can replace what calnet keeps below it", cur, sys.Uid)
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(cur)
			if err != nil {
				return err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(cur), target)
			}
			rest := filepath.Join(append([]string{target}, parts[i+1:]...)...)
			return check(filepath.Clean(rest), links+1)
		}
		if !st.IsDir() {
			return fmt.Errorf("%s: not a directory", cur)
		}
		if perm := st.Mode(); perm&0o022 != 0 && (last || perm&fs.ModeSticky == 0) {
			return fmt.Errorf("%s (mode %v) is writable by its group or others: they can replace what calnet keeps below it", cur, perm)
		}
	}
	return nil
}

// ErrNotOwn is returned (wrapped) by OwnFile for a file another user owns
// or may write.
var ErrNotOwn = errors.New("not this process's own file")

// OwnFile returns nil when path is a regular file, not a link, owned by
// root or this process's user and not writable by its group or others.
func OwnFile(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s: %w: not a regular file (%v)", path, ErrNotOwn, st.Mode().Type())
	case !ok || !trusted(sys.Uid):
		return fmt.Errorf("%s: %w: owned by another user", path, ErrNotOwn)
	case st.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s: %w: writable by its group or others (mode %v)", path, ErrNotOwn, st.Mode().Perm())
	}
	return nil
}
