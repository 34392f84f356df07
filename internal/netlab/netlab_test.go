package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the programs run inside the nodes
// (NETLAB_HELPER): an echo server, a client that dials once, and a
// process that makes a lab and waits to be killed.
func TestMain(m *testing.M) {
	switch os.Getenv("NETLAB_HELPER") {
	case "echo":
		ln, err := net.Listen("tcp", os.Getenv("NETLAB_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(2)
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	case "udpecho":
		pc, err := net.ListenPacket("udp", os.Getenv("NETLAB_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				os.Exit(2)
			}
			_, _ = pc.WriteTo(buf[:n], from) // a lost answer is what the test counts
		}
	case "udp":
		// 40 requests, one at a time: how many were answered, and the
		// shortest round trip in microseconds.
		c, err := net.Dial("udp", os.Getenv("NETLAB_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		answered, best := 0, time.Duration(1<<62)
		buf := make([]byte, 64)
		for i := range 40 {
			t0 := time.Now()
			if _, err := fmt.Fprintf(c, "%d", i); err != nil {
				continue
			}
			_ = c.SetReadDeadline(t0.Add(time.Second))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				if string(buf[:n]) == fmt.Sprint(i) {
					answered++
					best = min(best, time.Since(t0))
					break
				}
			}
		}
		fmt.Println(answered, best.Microseconds())
		os.Exit(0)
	case "dial":
		if err := echoOnce(os.Getenv("NETLAB_ADDR"), time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "lab":
		l, err := New(context.Background(), 2)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(l.ID())
		select {} // until killed: the lab is left behind
	}
	os.Exit(m.Run())
}

// echoOnce dials addr, sends a line and reads it back within timeout.
func echoOnce(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return echo(c, "ping", timeout)
}

func echo(c net.Conn, msg string, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// helper runs the test binary as helper mode inside node.
func helper(ctx context.Context, t *testing.T, n *Node, mode, addr string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(ctx, self)
	cmd.Env = append(os.Environ(), "NETLAB_HELPER="+mode, "NETLAB_ADDR="+addr)
	return cmd
}

// dialFrom reports whether a process in node from reaches the echo server
// at addr.
func dialFrom(t *testing.T, from *Node, addr string) error {
	t.Helper()
	out, err := helper(t.Context(), t, from, "dial", addr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// TestTCPAcrossNodes: a TCP connection from one namespace to another
// works; isolating the server's node, partitioning and total loss each
// stop it; healing brings it back, and an established connection
// delivers what was sent during the cut.
func TestTCPAcrossNodes(t *testing.T) {
	l := ForTest(t, 3)
	ctx := t.Context()
	nodes := l.Nodes()
	srv := net.JoinHostPort(nodes[0].Addr.String(), "7000")
	echoSrv := helper(ctx, t, nodes[0], "echo", srv)
	if err := echoSrv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = echoSrv.Process.Kill(); _ = echoSrv.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for echoOnce(srv, time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the echo server in node 0 never answered from the host")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pids, err := nodes[0].PIDs(ctx); err != nil || len(pids) != 1 || pids[0] != echoSrv.Process.Pid {
		t.Errorf("pids in node 0: %v %v, want [%d]", pids, err, echoSrv.Process.Pid)
	}
	// The same port in another node is another socket: nodes are hosts.
	if err := dialFrom(t, nodes[1], net.JoinHostPort(nodes[2].Addr.String(), "7000")); err == nil {
		t.Error("node 2 answers on a port only node 0 listens on")
	}
	held, err := net.DialTimeout("tcp", srv, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	must(t, echo(held, "before", time.Second))

	for _, tc := range []struct {
		name    string
		fault   func() error
		cut     []int // nodes that must not reach node 0
		reach   []int // nodes that must
		heldCut bool  // the host's connection stalls
	}{
		{"isolate", func() error { return l.Isolate(ctx, nodes[0]) }, []int{1, 2}, nil, true},
		{"partition", func() error { return l.Partition(ctx, nodes[:1], nodes[1:2]) }, []int{1}, []int{2}, false},
		{"total loss", func() error { return l.Loss(ctx, nodes[1], 1) }, []int{1}, []int{2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			must(t, tc.fault())
			for _, i := range tc.cut {
				if err := dialFrom(t, nodes[i], srv); err == nil {
					t.Errorf("node %d reaches node 0 through the fault", i)
				}
			}
			for _, i := range tc.reach {
				if err := dialFrom(t, nodes[i], srv); err != nil {
					t.Errorf("node %d, outside the fault, does not reach node 0: %v", i, err)
				}
			}
			if tc.heldCut {
				if err := echo(held, "during", 500*time.Millisecond); err == nil {
					t.Error("the held connection echoed through the cut")
				}
			}
			must(t, l.Heal(ctx))
			for _, i := range append(tc.cut, tc.reach...) {
				if err := dialFrom(t, nodes[i], srv); err != nil {
					t.Errorf("node %d does not reach node 0 after healing: %v", i, err)
				}
			}
			if tc.heldCut {
				// What was sent during the cut arrives (TCP retransmits):
				// the connection lives through it.
				must(t, held.SetDeadline(time.Now().Add(10*time.Second)))
				got, err := bufio.NewReader(held).ReadString('\n')
				if err != nil || got != "during\n" {
					t.Fatalf("the held connection after healing: %q %v", got, err)
				}
			}
			must(t, echo(held, "after", 10*time.Second))
		})
	}
}

// udpProbe starts a UDP echo server in node to and sends 40 requests
// to it from node from: how many were answered, and the shortest round
// trip.
func udpProbe(t *testing.T, from, to *Node) (int, time.Duration) {
	t.Helper()
	addr := net.JoinHostPort(to.Addr.String(), "7001")
	srv := helper(t.Context(), t, to, "udpecho", addr)
	must(t, srv.Start())
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	// The server binds before the probe sends: poll its namespace's sockets.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := to.Command(t.Context(), "cat", "/proc/net/udp").Output()
		if strings.Contains(string(out), fmt.Sprintf(":%04X ", 7001)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the UDP echo server did not bind")
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := helper(t.Context(), t, from, "udp", addr).Output()
	if err != nil {
		t.Fatalf("udp probe: %v", err)
	}
	var n int
	var us int64
	if _, err := fmt.Sscan(string(out), &n, &us); err != nil {
		t.Fatalf("udp probe said %q: %v", out, err)
	}
	return n, time.Duration(us) * time.Microsecond
}

// TestDelay: a delay on a node lengthens every round trip through it by
// at least the delay. This kernel may lack netem: then it says so.
func TestDelay(t *testing.T) {
	l := ForTest(t, 2)
	ctx := t.Context()
	nodes := l.Nodes()
	err := l.Delay(ctx, nodes[0], 200*time.Millisecond, 0)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err.Error())
	}
	must(t, err)
	if n, rtt := udpProbe(t, nodes[1], nodes[0]); n == 0 || rtt < 200*time.Millisecond {
		t.Errorf("%d answers, shortest round trip %v through a 200 ms delay", n, rtt)
	}
}

// TestPartialLoss: a loss of half the packets a node sends drops some of
// 40 requests and lets some through (either outcome of all 40 has
// probability 2^-40); healed, all are answered.
func TestPartialLoss(t *testing.T) {
	l := ForTest(t, 2)
	ctx := t.Context()
	nodes := l.Nodes()
	must(t, l.Loss(ctx, nodes[1], 0.5))
	if n, _ := udpProbe(t, nodes[1], nodes[0]); n == 0 || n == 40 {
		t.Errorf("50%% loss: %d of 40 requests answered", n)
	}
	must(t, l.Heal(ctx))
	if n, _ := udpProbe(t, nodes[1], nodes[0]); n != 40 {
		t.Errorf("healed: %d of 40 requests answered", n)
	}
}

// TestLeftoversSwept: a lab whose process was killed is removed by the
// next New, processes, namespaces, links and all; a lab whose owner runs
// is left alone.
func TestLeftoversSwept(t *testing.T) {
	if why := Skip(); why != "" {
		t.Skip("netlab: " + why)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "NETLAB_HELPER=lab")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	must(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("the lab process: %v", err)
	}
	id := strings.TrimSpace(line)
	mine := ForTest(t, 1) // made while the other lab's owner runs
	if !hasNetns(t, "cnl-"+id+"-0") {
		t.Fatalf("the live lab %s was swept while its owner runs", id)
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	if !hasNetns(t, "cnl-"+id+"-0") {
		t.Fatal("the killed process's lab is already gone: nothing to sweep")
	}
	must(t, Sweep(t.Context()))
	if hasNetns(t, "cnl-"+id+"-0") || hasNetns(t, "cnl-"+id+"-1") {
		t.Errorf("lab %s of a killed process is left after Sweep", id)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(out), "cnl"+id) {
		t.Errorf("links of lab %s are left after Sweep:\n%s", id, out)
	}
	if _, err := os.Stat(StateDir + "/" + id); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file of lab %s: %v", id, err)
	}
	if !hasNetns(t, mine.Nodes()[0].Name) {
		t.Error("Sweep removed the lab of a running process")
	}
	must(t, mine.Close())
	if hasNetns(t, mine.Nodes()[0].Name) {
		t.Error("Close left the lab's namespace")
	}
}

func hasNetns(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestInProcess: a listener and a dialer of the test process itself, each
// on its node, talk across the lab like two hosts; isolating the
// listener's node cuts them, healing restores them; and the listener is
// not reachable on the machine's own loopback.
func TestInProcess(t *testing.T) {
	l := ForTest(t, 2)
	ctx := t.Context()
	nodes := l.Nodes()
	addr := net.JoinHostPort(nodes[0].Addr.String(), "7002")
	ln, err := nodes[0].Listen(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	dial := func(timeout time.Duration) error {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := nodes[1].DialContext(dctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		return echo(c, "hi", timeout)
	}
	must(t, dial(5*time.Second))
	if _, err := net.DialTimeout("tcp", "127.0.0.1:7002", time.Second); err == nil {
		t.Error("the node's listener answers on the machine's loopback")
	}
	must(t, l.Isolate(ctx, nodes[0]))
	if err := dial(time.Second); err == nil {
		t.Error("dialed an isolated node")
	}
	must(t, l.Heal(ctx))
	must(t, dial(5*time.Second))
}
