package connlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serve runs an HTTP server on a limited listener; block, when set, holds
// requests to /block until it is closed.
func serve(t *testing.T, network, addr string, cfg Config, block chan struct{}) (*Listener, string) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, cfg)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" && block != nil {
				<-block
			}
			io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         l.ConnState,
	}
	go func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { srv.Close() })
	return l, ln.Addr().String()
}

// request sends one request on a new connection and returns the status.
func request(network, addr, path string) (int, error) {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// get is request for the test goroutine.
func get(t *testing.T, network, addr, path string) int {
	t.Helper()
	code, err := request(network, addr, path)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// idleConns opens n connections: half send nothing, half finish one
// request and then idle on keep-alive.
func idleConns(t *testing.T, network, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := net.DialTimeout(network, addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 1 {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			c.SetReadDeadline(time.Time{})
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleFloodKeepsAnswering: one client holds thousands of idle
// connections (silent ones and kept-alive ones); the server stays within
// its limits and still answers a new request, by closing the oldest idle
// ones.
func TestIdleFloodKeepsAnswering(t *testing.T) {
	raiseNoFile(t, 8000)
	l, addr := serve(t, "tcp", "127.0.0.1:0", Config{Limits: Limits{Total: 1000, PerClient: 500}, Budget: NewBudget(800), HTTP: true}, nil)
	idleConns(t, "tcp", addr, 3000)
	for i := range 20 {
		if code := get(t, "tcp", addr, "/"); code != 200 {
			t.Fatalf("request %d under the flood: status %d", i, code)
		}
	}
	st := l.Stats()
	if st.Open > 500 || st.BudgetInUse > 500 || st.Evicted < 2000 {
		t.Fatalf("stats %+v: want at most 500 open (per client) and the rest evicted", st)
	}
}

// TestBusyConnectionsAreRefused: when every connection is busy, a new one
// gets 503 with Retry-After instead of waiting; once they finish, it gets
// in again.
func TestBusyConnectionsAreRefused(t *testing.T) {
	block := make(chan struct{})
	l, addr := serve(t, "tcp", "127.0.0.1:0", Config{Limits: Limits{Total: 4}, HTTP: true}, block)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, err := request("tcp", addr, "/block"); err != nil || code != 200 {
				t.Errorf("a busy connection: %d %v", code, err)
			}
		}()
	}
	waitFor(t, "four busy connections", func() bool { st := l.Stats(); return st.Open == 4 && st.Idle == 0 })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %v %v", resp, err)
	}
	close(block)
	wg.Wait()
	waitFor(t, "the busy connections to close", func() bool { return l.Stats().Open == 0 })
	if code := get(t, "tcp", addr, "/"); code != 200 {
		t.Fatalf("after the busy ones ended: %d", code)
	}
}

// TestBudgetIsShared: two listeners together never hold more than the
// process's budget.
func TestBudgetIsShared(t *testing.T) {
	b := NewBudget(10)
	block := make(chan struct{})
	defer close(block)
	a, addrA := serve(t, "tcp", "127.0.0.1:0", Config{Budget: b, HTTP: true}, block)
	_, addrB := serve(t, "tcp", "127.0.0.1:0", Config{Budget: b, HTTP: true}, block)
	for range 10 {
		go func() { _, _ = request("tcp", addrA, "/block") }() // holds a connection until the test ends
	}
	waitFor(t, "ten busy connections on A", func() bool { st := a.Stats(); return st.Open == 10 && st.Idle == 0 })
	if code := get(t, "tcp", addrB, "/"); code != 503 {
		t.Fatalf("B over the shared budget: %d, want 503", code)
	}
	if b.InUse() != 10 {
		t.Fatalf("budget in use %d, want 10", b.InUse())
	}
}

// TestUnixClientsAreTheirUID: on a unix socket a client is its uid.
func TestUnixClientsAreTheirUID(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, _ := serve(t, "unix", sock, Config{Limits: Limits{PerClient: 3}}, nil)
	idleConns(t, "unix", sock, 3)
	if code := get(t, "unix", sock, "/"); code != 200 {
		t.Fatalf("status %d", code)
	}
	st := l.Stats()
	if st.Clients != 1 || st.Evicted < 1 {
		t.Fatalf("stats %+v", st)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if k := ClientKey(c.(*net.UnixConn)); !strings.HasPrefix(k, "uid:") {
		t.Fatalf("client key %q", k)
	}
}

// TestSyscallConnPassesThrough: the router hands a connection's socket to
// a Cal; the wrapper must not hide it.
func TestSyscallConnPassesThrough(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, Config{})
	defer func() { must(t, l.Close()) }()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c) // until the test's side closes
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatal("not a syscall.Conn")
	}
	if _, err := sc.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Fatal("not an io.ReaderFrom")
	}
}

func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("RLIMIT_NOFILE hard limit %d is under the %d this test needs", lim.Max, n)
	}
	old := lim
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)) })
}

// TestIdleFloodOnOneListenerDoesNotStarveAnother: idle connections on one
// listener fill the shared budget; another listener still admits a new
// connection by closing the oldest of them.
func TestIdleFloodOnOneListenerDoesNotStarveAnother(t *testing.T) {
	b := NewBudget(50)
	a, addrA := serve(t, "tcp", "127.0.0.1:0", Config{Budget: b, HTTP: true}, nil)
	_, addrB := serve(t, "tcp", "127.0.0.1:0", Config{Budget: b, HTTP: true}, nil)
	idleConns(t, "tcp", addrA, 200)
	for i := range 10 {
		if code := get(t, "tcp", addrB, "/"); code != 200 {
			t.Fatalf("request %d on B: %d", i, code)
		}
	}
	if st := a.Stats(); st.Evicted < 150 || b.InUse() > 50 {
		t.Fatalf("A %+v, budget in use %d", st, b.InUse())
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
