package sealgate

import (
	"net"
	"os"
	"syscall"
)

// listenPrivate binds a unix socket that only its owner (root) can
// connect to: it is made under umask 077, so no other uid (a Cal) ever
// sees it writable.
func listenPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
