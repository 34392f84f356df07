package router

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Handing a connection over: once the router has routed a connection by
// its Host, it passes the client's socket itself to the Cal's gateway over
// a unix socket (SCM_RIGHTS), with the bytes it already read (the first
// request, rewritten with the routing headers, and any pipelined ones).
// From then on the gateway serves the client directly and the router is
// out of the path: a routed connection costs what a direct one does.
//
// The message on the handoff socket: one sendmsg carrying the file
// descriptor and a 4-byte big-endian length n, then n bytes of prefix; the
// gateway answers one byte, 'k', once it owns the connection.

// maxPrefix bounds the prefix a gateway accepts: the router's header limit
// (net/http's DefaultMaxHeaderBytes) plus pipelined requests it buffered.
const maxPrefix = 1<<20 + 64<<10

// handoffTimeout bounds one handoff on either side.
const handoffTimeout = 5 * time.Second

// errNotSent means the client's socket did not leave the router: it may
// still be served another way.
var errNotSent = errors.New("handoff: connection not sent")

// sendConn passes client to the gateway listening at hc. An error wrapping
// errNotSent leaves client usable; any other error means the gateway may
// hold the connection and client must only be closed.
func sendConn(hc *net.UnixConn, client syscall.Conn, prefix []byte) error {
	if len(prefix) > maxPrefix {
		return fmt.Errorf("%w: prefix of %d bytes over the limit of %d", errNotSent, len(prefix), maxPrefix)
	}
	rc, err := client.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %v", errNotSent, err)
	}
	_ = hc.SetDeadline(time.Now().Add(handoffTimeout)) // a failed deadline shows as a write error
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(prefix)))
	var sendErr error
	if err := rc.Control(func(fd uintptr) {
		_, _, sendErr = hc.WriteMsgUnix(n[:], syscall.UnixRights(int(fd)), nil)
	}); err != nil {
		return fmt.Errorf("%w: %v", errNotSent, err)
	}
	if sendErr != nil {
		return fmt.Errorf("%w: %v", errNotSent, sendErr)
	}
	if _, err := hc.Write(prefix); err != nil {
		return fmt.Errorf("handoff: prefix: %w", err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(hc, ack[:]); err != nil || ack[0] != 'k' {
		return fmt.Errorf("handoff: no acknowledgement: %v", err)
	}
	return nil
}

// HandoffListener is the gateway's side: a net.Listener whose connections
// are the clients the router hands over. Serve it with the gateway's
// http.Server (with ConnContext, so that every request on a handed-over
// connection must name the Cal's namespace).
type HandoffListener struct {
	ln    *net.UnixListener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

// ListenHandoff listens for handoffs on the unix socket ln.
func ListenHandoff(ln *net.UnixListener) *HandoffListener {
	l := &HandoffListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *HandoffListener) run() {
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			_ = l.Close()
			return
		}
		go func() {
			defer func() { _ = c.Close() }()
			conn, err := receiveConn(c)
			if err != nil {
				return // the router closes the client on its side
			}
			select {
			case l.conns <- conn:
				_, _ = c.Write([]byte{'k'}) // the acknowledgement; the router times out without it
			case <-l.done:
				conn.Close()
			}
		}()
	}
}

// receiveConn reads one handoff: the client's socket and the prefix.
func receiveConn(c *net.UnixConn) (net.Conn, error) {
	_ = c.SetDeadline(time.Now().Add(handoffTimeout)) // a failed deadline shows as a read error
	var n [4]byte
	oob := make([]byte, syscall.CmsgSpace(4*4)) // room for a few descriptors: extras are closed
	nn, oobn, flags, _, err := c.ReadMsgUnix(n[:], oob)
	if err != nil {
		return nil, err
	}
	fds, err := rights(oob[:oobn])
	if err != nil {
		return nil, err
	}
	closeAll := func(fds []int) {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	if flags&syscall.MSG_CTRUNC != 0 || len(fds) != 1 || nn != 4 {
		closeAll(fds)
		return nil, fmt.Errorf("handoff: want one descriptor and a 4-byte length, got %d descriptors, %d bytes", len(fds), nn)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxPrefix {
		closeAll(fds)
		return nil, fmt.Errorf("handoff: prefix of %d bytes over the limit of %d", size, maxPrefix)
	}
	prefix := make([]byte, size)
	if _, err := io.ReadFull(c, prefix); err != nil {
		closeAll(fds)
		return nil, fmt.Errorf("handoff: prefix: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "handoff")
	conn, err := net.FileConn(f) // dups the descriptor
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	if _, ok := conn.(*net.TCPConn); !ok {
		conn.Close()
		return nil, fmt.Errorf("handoff: descriptor is not a TCP connection")
	}
	return &handedConn{Conn: conn, r: io.MultiReader(bytes.NewReader(prefix), conn)}, nil
}

// rights returns the descriptors of SCM_RIGHTS messages in oob.
func rights(oob []byte) ([]int, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("handoff: control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != syscall.SCM_RIGHTS {
			continue
		}
		got, err := syscall.ParseUnixRights(&m)
		if err != nil {
			return nil, fmt.Errorf("handoff: rights: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// handedConn reads the router's prefix before the socket.
type handedConn struct {
	net.Conn
	r io.Reader
}

func (c *handedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Accept implements net.Listener.
func (l *HandoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *HandoffListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.err = l.ln.Close()
	})
	return l.err
}

// Addr implements net.Listener.
func (l *HandoffListener) Addr() net.Addr { return l.ln.Addr() }
