package calrt

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/trust"
)

// fakeControlPlane answers every call of a Cal with status and headers; it
// stands in for the control plane's side of the Cal protocol only.
func fakeControlPlane(t *testing.T, status int, header http.Header) *http.Client {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(`{"error":"spawn rate limit: try again later"}`))
	}))
	t.Cleanup(srv.Close)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = "example.com" // httptest's certificate name
	addr := srv.Listener.Addr().String()
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	tr.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, tr.TLSClientConfig)
		return tc, tc.HandshakeContext(ctx)
	}
	return &http.Client{Transport: tr}
}

// serveLocal serves the Cal's local API on a unix socket, as the console
// tier does, and returns the Go SDK's client for it.
func serveLocal(t *testing.T, rt *Runtime) *client.Local {
	t.Helper()
	sock := filepath.Join(t.TempDir(), calproto.LocalSocket)
	ln, err := listenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rt.localHandler()}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { srv.Close() })
	return client.NewLocal(sock)
}

// TestLocalAPIKeepsRetryAfter: a 429 of the control plane reaches the
// workload with its Retry-After, so that it backs off as an operator
// client does (before the fix the local API dropped the header).
func TestLocalAPIKeepsRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header http.Header
		want   time.Duration
	}{
		{"rate limited", http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{"unavailable", http.StatusServiceUnavailable, http.Header{"Retry-After": {"2"}}, 2 * time.Second},
		{"no header", http.StatusTooManyRequests, nil, 0},
		{"garbage header", http.StatusTooManyRequests, http.Header{"Retry-After": {"soon"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &Runtime{log: slog.New(slog.DiscardHandler), cp: fakeControlPlane(t, tt.status, tt.header), chain: testChain(t, trust.PermSpawn)}
			local := serveLocal(t, rt)
			_, err := local.Spawn(t.Context(), client.LocalSpawn{Permissions: []string{"read"}})
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("Spawn error = %v, want a *client.Error", err)
			}
			if e.Status != tt.status || e.RetryAfter != tt.want {
				t.Fatalf("got status %d, Retry-After %v; want %d, %v", e.Status, e.RetryAfter, tt.status, tt.want)
			}
		})
	}
}

// FuzzDecode: the local API and the Cal API decode every body strictly;
// whatever the bytes, decode answers 400 or 413 or accepts one document.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"permissions":["read"],"name":"a"}`))
	f.Add([]byte(`{"Permissions":["admin"]}`))
	f.Add([]byte(`{"permissions":["read"]} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/children", strings.NewReader(string(data)))
		var req calproto.SpawnRequest
		if !decode(w, r, &req) && w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("refused with %d", w.Code)
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
