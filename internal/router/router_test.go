package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/internal/caldir"
)

// gateway serves a fake Cal gateway, its socket bound as the control
// plane binds a Cal's (caldir.Host.Bind) and listened on as the Cal does.
func gateway(t testing.TB, name, ns string) Target {
	return fakeGateway(t, name, ns, false, os.Geteuid())
}

// handoffGateway is a fake Cal gateway that also takes connections handed
// over by the router.
func handoffGateway(t testing.TB, name, ns string) Target {
	return fakeGateway(t, name, ns, true, os.Geteuid())
}

// fakeGateway serves the gateway; the router expects its listener to have
// uid.
func fakeGateway(t testing.TB, name, ns string, handoff bool, uid int) Target {
	layout := caldir.New(t.TempDir())
	if err := layout.Prepare(); err != nil {
		t.Fatal(err)
	}
	host := layout.Host(name)
	names := []string{"gateway.sock"}
	if handoff {
		names = append(names, "gateway.handoff.sock")
	}
	socks, err := host.Bind(names...)
	if err != nil {
		t.Fatal(err)
	}
	own := func() (string, string) { return ns, "calnet." }
	srv := &http.Server{ConnContext: ConnContext, Handler: Misdirected(own, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", name, r.URL.Path, r.Header.Get("X-Calnet-Namespace"))
	}))}
	t.Cleanup(func() { srv.Close() })
	tg := Target{Cal: name, Gateway: host.Socket("gateway.sock", uid)}
	ln, err := caldir.Listen(socks["gateway.sock"])
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	if handoff {
		hln, err := caldir.Listen(socks["gateway.handoff.sock"])
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if err := srv.Serve(ListenHandoff(hln)); !errors.Is(err, http.ErrServerClosed) {
				t.Error(err)
			}
		}()
		tg.Handoff = host.Socket("gateway.handoff.sock", uid)
	}
	return tg
}

// missing is a socket nobody listens on.
func missing(t testing.TB) caldir.Socket {
	return caldir.New(t.TempDir()).Host("gone").Socket("gateway.sock", os.Geteuid())
}

func TestRouting(t *testing.T) {
	routes := map[string]Target{
		"web.master":     gateway(t, "web", "web.master"),
		"api.web.master": gateway(t, "api", "api.web.master"),
		"dead.master":    {Cal: "d", Gateway: missing(t)},
		// Served, but by a listener the router does not expect (a uid
		// other than the Cal's): nothing reaches it.
		"other.master": fakeGateway(t, "other", "other.master", true, os.Geteuid()+1),
	}
	rt := New("calnet.", func(ns string) (Target, bool) { tg, ok := routes[ns]; return tg, ok })
	srv := httptest.NewServer(rt)
	defer srv.Close()
	tests := []struct {
		name, host, path string
		status           int
		body             string
	}{
		{"path", "", "/web.master/hello", 200, "web /hello web.master"},
		{"nested path", "", "/api.web.master/v1/x?y=1", 200, "api /v1/x api.web.master"},
		{"host", "api.web.master.calnet", "/ping", 200, "api /ping api.web.master"},
		{"host with port", "web.master.calnet:7080", "/", 200, "web / web.master"},
		{"case", "", "/WEB.Master/z", 200, "web /z web.master"},
		{"unknown", "", "/nobody/x", 404, "no such cal"},
		{"root", "", "/", 404, "no namespace"},
		{"gateway down", "", "/dead.master/", 502, "not answering"},
		{"another uid's listener", "", "/other.master/", 502, "not answering"},
		{"another uid's listener, by host", "other.master.calnet", "/", 502, "not answering"},
		{"too long", "", "/" + strings.Repeat("a", 300) + "/", 400, "over the limit"},
	}
	// A connection per request: one routed by Host is pinned to its Cal.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := fresh.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, tt.status, tt.body)
			}
		})
	}
}

// TestPinnedConnection: a connection routed by Host is spliced to the
// gateway; later requests on it reach the same Cal, pipelined ones too,
// and one naming another namespace gets 421 from the gateway rather than
// reaching the wrong Cal.
func TestPinnedConnection(t *testing.T) {
	t.Run("spliced", func(t *testing.T) {
		testPinned(t, map[string]Target{
			"web.master": gateway(t, "web", "web.master"),
			"api.master": gateway(t, "api", "api.master"),
		}, true)
	})
	t.Run("handed over", func(t *testing.T) {
		testPinned(t, map[string]Target{
			"web.master": handoffGateway(t, "web", "web.master"),
			"api.master": handoffGateway(t, "api", "api.master"),
		}, false)
	})
	t.Run("handoff socket gone", func(t *testing.T) { // falls back to splicing
		web := handoffGateway(t, "web", "web.master")
		web.Handoff = missing(t)
		testPinned(t, map[string]Target{"web.master": web, "api.master": handoffGateway(t, "api", "api.master")}, true)
	})
}

func testPinned(t *testing.T, routes map[string]Target, spliced bool) {
	rt := New("calnet.", func(ns string) (Target, bool) { tg, ok := routes[ns]; return tg, ok })
	srv := httptest.NewServer(rt)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	send := func(host, path string) {
		t.Helper()
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Calnet-Namespace: forged\r\n\r\n", path, host)
	}
	read := func(status int, body string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status || !strings.Contains(string(b), body) {
			t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, status, body)
		}
	}
	send("web.master.calnet", "/one")
	read(200, "web /one web.master") // the router set the namespace header
	send("web.master.calnet:80", "/two")
	send("web.master.calnet", "/three") // pipelined
	read(200, "web /two")
	read(200, "web /three")
	for _, tt := range []struct{ host, path string }{
		{"api.master.calnet", "/x"},                     // another namespace by Host
		{srv.Listener.Addr().String(), "/api.master/x"}, // meant for path routing
	} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, br = c, bufio.NewReader(c)
		send("web.master.calnet", "/first")
		read(200, "web /first")
		send(tt.host, tt.path)
		read(http.StatusMisdirectedRequest, "not served on this connection")
		if _, err := br.ReadByte(); err != io.EOF { // the gateway closed; the router closed the client
			t.Fatalf("connection after 421: %v, want EOF", err)
		}
		c.Close()
	}

	// A fresh connection to the other namespace reaches it.
	req, _ := http.NewRequest("GET", srv.URL+"/y", nil)
	req.Host = "api.master.calnet"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "api /y api.master" {
		t.Fatalf("fresh connection: %q", b)
	}

	// Close ends pinned connections.
	c2, _ := net.Dial("tcp", srv.Listener.Addr().String())
	defer c2.Close()
	fmt.Fprintf(c2, "GET / HTTP/1.1\r\nHost: web.master.calnet\r\n\r\n")
	br2 := bufio.NewReader(c2)
	resp, err = http.ReadResponse(br2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	rt.Close()
	c2.SetReadDeadline(time.Now().Add(time.Second))
	_, err = br2.ReadByte()
	if spliced && err != io.EOF {
		t.Fatalf("after Close: %v, want EOF", err)
	}
	if !spliced && !errors.Is(err, os.ErrDeadlineExceeded) { // the Cal holds it now
		t.Fatalf("handed-over connection after the router's Close: %v, want it open", err)
	}
}

// load sends requests from 32 workers for d and returns requests/second.
func load(b *testing.B, url, host, socket string, d time.Duration) float64 {
	dial := (&net.Dialer{}).DialContext
	if socket != "" {
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DialContext: dial}
	c := &http.Client{Transport: tr}
	var n int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for range 32 {
		wg.Go(func() {
			k := int64(0)
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				if host != "" {
					req.Host = host
				}
				resp, err := c.Do(req)
				if err != nil {
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil { // a cut answer is not a request served
					k++
				}
			}
			mu.Lock()
			n += k
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(n) / d.Seconds()
}

// BenchmarkRouterVsDirect compares requests per second through the router
// with requests straight to the same gateway, in one run.
func BenchmarkRouterVsDirect(b *testing.B) {
	tg := handoffGateway(b, "web", "web.master")
	sock := tg.Gateway.String()
	spliced := New("calnet.", func(string) (Target, bool) { return Target{Gateway: tg.Gateway}, true })
	ssrv := httptest.NewServer(spliced)
	defer ssrv.Close()
	rt := New("calnet.", func(string) (Target, bool) { return tg, true })
	srv := httptest.NewServer(rt)
	defer srv.Close()
	d := 3 * time.Second
	for b.Loop() {
		prps := load(b, srv.URL+"/web.master/", "", "", d)               // routed by path: parsed per request
		srps := load(b, ssrv.URL+"/", "web.master.calnet", "", d)        // routed by Host: pinned, spliced
		hrps := load(b, srv.URL+"/", "web.master.calnet", "", d)         // routed by Host: handed over
		drps := load(b, "http://gateway/", "web.master.calnet", sock, d) // straight to the gateway's socket
		b.ReportMetric(prps, "path-req/s")
		b.ReportMetric(hrps, "host-req/s")
		b.ReportMetric(srps, "spliced-req/s")
		b.ReportMetric(srps/drps*100, "%spliced-of-direct")
		b.ReportMetric(drps, "direct-req/s")
		b.ReportMetric(prps/drps*100, "%path-of-direct")
		b.ReportMetric(hrps/drps*100, "%host-of-direct")
	}
}

// FuzzReceiveConn: whatever arrives on the handoff socket without a
// descriptor is refused, without a panic or a leak.
func FuzzReceiveConn(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 'G', 'E', 'T', ' '})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
		ca, _ := net.FileConn(a)
		cb, _ := net.FileConn(b)
		a.Close()
		b.Close()
		defer ca.Close()
		defer cb.Close()
		if _, err := ca.Write(data); err != nil {
			t.Fatal(err)
		}
		must(t, ca.(*net.UnixConn).CloseWrite())
		if c, err := receiveConn(cb.(*net.UnixConn)); err == nil {
			c.Close()
			t.Fatalf("accepted %x without a descriptor", data)
		}
	})
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
