// Package caldir is the one place that names a Cal's directories on the
// host, and the only code through which the control plane, the router and
// the drivers, all running as root, touch them (DESIGN.md section 7: the
// control plane never opens, dials or follows a path a Cal can write).
//
// A Cal has two directories under the data directory:
//
//	cals/<id>/  its sandbox, /data inside. The Cal's uid owns it, so every
//	            name in it is the Cal's to replace: with a symlink to
//	            another Cal's socket, a FIFO, a hard link. The control plane
//	            fills it before the Cal first runs (Sandbox.Populate),
//	            creating each file afresh without following a link, and
//	            otherwise only hands its path to the driver to mount
//	            (Sandbox.MountSource).
//	host/<id>/  its host side: root's, mode 0700, mounted into no sandbox.
//	            The sockets the control plane and the router dial are bound
//	            here by the control plane and handed to the Cal as open
//	            descriptors (Host.Bind): the Cal listens on them, and can
//	            neither replace them nor reach them by name. The sandbox
//	            builds the Cal's new root on an empty directory here
//	            (Host.RootMount).
//
// Every connection to a Cal's socket checks its peer (Socket.Dial): the
// credentials the kernel took when the Cal called listen(2) (SO_PEERCRED)
// must carry the Cal's uid.
package caldir

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Layout names the Cal directories of one data directory.
type Layout struct{ data string }

// New returns the layout under the absolute data directory data.
func New(data string) Layout { return Layout{data: filepath.Clean(data)} }

// Prepare creates the parents of every Cal's directories: cals/ (0711,
// so that each Cal reaches its own directory through it) and host/ (0700).
// Both are root's: no Cal can rename or replace its own directory.
func (l Layout) Prepare() error {
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"cals", 0o711}, {"host", 0o700}} {
		if _, err := ownDir(filepath.Join(l.data, d.name), d.mode); err != nil {
			return err
		}
	}
	return nil
}

// Cals is the directory that holds every Cal's sandbox directory (the
// mount point of the Cal filesystem, when there is one).
func (l Layout) Cals() string { return filepath.Join(l.data, "cals") }

// LogsName is the directory beside the Cals' sandbox directories that
// holds their logs: root's, and a name no Cal ID can take (IDs never start
// with a dot).
const LogsName = ".logs"

// Logs is where the Cals' logs are kept on the Cal filesystem.
func (l Layout) Logs() string { return filepath.Join(l.Cals(), LogsName) }

// Sandbox returns the sandbox directory of the Cal id.
func (l Layout) Sandbox(id string) Sandbox {
	return Sandbox{path: filepath.Join(l.data, "cals", id), err: checkName("cal id", id)}
}

// Host returns the host directory of the Cal id.
func (l Layout) Host(id string) Host {
	return Host{path: filepath.Join(l.data, "host", id), err: checkName("cal id", id)}
}

// checkName refuses anything but one plain path component.
func checkName(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%s %q: want one plain name (no slash, not . or ..)", what, name)
	}
	return nil
}

// ownDir makes sure path is a directory of this process's uid with the
// given mode, creating it if it is missing, and refuses anything else in
// its place (a symlink, a file, another owner's directory). It returns the
// directory open (O_PATH is not enough: it is used with *at calls).
func ownDir(path string, mode os.FileMode) (*os.File, error) {
	if err := unix.Mkdir(path, uint32(mode)); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: not a directory of its own (%w)", path, err)
	}
	d := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int(st.Uid) != os.Geteuid() {
		d.Close()
		return nil, fmt.Errorf("%s: owned by uid %d, not this process's %d; refusing it", path, st.Uid, os.Geteuid())
	}
	if os.FileMode(st.Mode)&os.ModePerm != mode {
		if err := unix.Fchmod(fd, uint32(mode)); err != nil {
			d.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return d, nil
}

// ErrPeer is returned when the process listening on a Cal's socket is not
// that Cal.
var ErrPeer = errors.New("the socket's listener is not the cal")

// Socket is one of a Cal's sockets in its host directory, with the uid
// its listener must have. The zero Socket dials nothing.
type Socket struct {
	path string
	uid  int
}

// String is the socket's path, for logs.
func (s Socket) String() string { return s.path }

// IsZero reports whether s names no socket.
func (s Socket) IsZero() bool { return s.path == "" }

// Dial connects to the socket and checks that its listener has the Cal's
// uid (SO_PEERCRED); a connection to anyone else is closed and the error
// wraps ErrPeer.
func (s Socket) Dial(ctx context.Context) (*net.UnixConn, error) {
	if s.path == "" {
		return nil, errors.New("caldir: dial of no socket")
	}
	// The host directory is root's and its parents too; it is opened
	// without following a link, and dialed into by descriptor.
	dirfd, err := unix.Open(filepath.Dir(s.path), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.path, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", inDir(dirfd, filepath.Base(s.path)))
	unix.Close(dirfd)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.path, err)
	}
	uc := c.(*net.UnixConn)
	if err := CheckPeer(uc, s.uid); err != nil {
		_ = uc.Close()
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	return uc, nil
}

// CheckPeer checks that the peer of c, as the kernel recorded it (for a
// connection to a listening socket, the listener's credentials at
// listen(2)), has uid.
func CheckPeer(c *net.UnixConn, uid int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if int(cred.Uid) != uid {
		return fmt.Errorf("%w: its uid is %d (pid %d), the cal's is %d", ErrPeer, cred.Uid, cred.Pid, uid)
	}
	return nil
}

// Listen is the Cal's side of a socket Host.Bind bound: it listens on f
// (so that every connection's peer credentials are the Cal's), takes its
// own close-on-exec copy and closes f.
func Listen(f *os.File) (*net.UnixListener, error) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = unix.Listen(int(fd), unix.SOMAXCONN) }); err != nil {
		return nil, err
	}
	if lerr != nil {
		return nil, fmt.Errorf("listen on %s: %w", f.Name(), lerr)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", f.Name(), err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("%s: not a unix socket", f.Name())
	}
	return ul, nil
}
