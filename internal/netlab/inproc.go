package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// A socket belongs to the network namespace of the thread that made it,
// for its whole life. So a test process can put servers of its own (an
// in-process Raft server, say) on the lab's nodes: Listen and Dial make
// their socket on a thread moved into the node's namespace for the call,
// then move the thread back; the socket stays in the node.

// Listen listens on addr inside the node's network namespace (as a
// process running there would).
func (n *Node) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.inNetns(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(ctx, network, addr)
		return err
	})
	return ln, err
}

// DialContext dials addr from inside the node's network namespace. Its
// signature is net.Dialer's, for transports that take a dial function.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.inNetns(func() error {
		var err error
		// One address, no fallback: the dial runs on this goroutine, on
		// this thread.
		d := net.Dialer{FallbackDelay: -1}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// inNetns runs fn on a thread in the node's network namespace. If the
// thread cannot be moved back, it is left locked, and Go ends it with the
// goroutine rather than reuse it.
func (n *Node) inNetns(fn func() error) error {
	target, err := os.Open(filepath.Join("/run/netns", n.Name))
	if err != nil {
		return fmt.Errorf("netlab: node %s: %w", n.Name, err)
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer self.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netlab: enter node %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("netlab: leave node %s: %w (the thread is retired)", n.Name, err)
			return // still locked: the thread exits with this goroutine
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
