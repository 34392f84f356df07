package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateway serves a fake Cal gateway on a unix socket.
func gateway(t testing.TB, name string) string {
	sock := filepath.Join(t.TempDir(), "gw.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", name, r.URL.Path, r.Header.Get("X-Calnet-Namespace"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestRouting(t *testing.T) {
	routes := map[string]Target{
		"web.master":     {Cal: "w", Socket: gateway(t, "web")},
		"api.web.master": {Cal: "a", Socket: gateway(t, "api")},
		"dead.master":    {Cal: "d", Socket: filepath.Join(t.TempDir(), "none.sock")},
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
		{"too long", "", "/" + strings.Repeat("a", 300) + "/", 400, "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := http.DefaultClient.Do(req)
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

// load sends requests from 32 workers for d and returns requests/second.
func load(b *testing.B, url string, socket string, d time.Duration) float64 {
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
				resp, err := c.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				k++
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
	sock := gateway(b, "web")
	rt := New("calnet.", func(string) (Target, bool) { return Target{Socket: sock}, true })
	srv := httptest.NewServer(rt)
	defer srv.Close()
	d := 3 * time.Second
	for b.Loop() {
		rps := load(b, srv.URL+"/web.master/", "", d)
		drps := load(b, "http://gateway/", sock, d) // straight to the gateway's socket
		b.ReportMetric(rps, "router-req/s")
		b.ReportMetric(drps, "direct-req/s")
		b.ReportMetric(rps/drps*100, "%-of-direct")
	}
}
