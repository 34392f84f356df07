package sealgate

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestGate(t *testing.T) {
	ctx := context.Background()
	sock := filepath.Join(t.TempDir(), SocketName)
	addr := freeAddr(t)
	done := make(chan error, 1)
	var tried []string
	go func() {
		done <- Run(ctx, Config{APIAddr: addr, Socket: sock, Mode: "passphrase", Hint: "run calnet unseal",
			Try: func(_ context.Context, secret []byte) error {
				tried = append(tried, string(secret))
				if string(secret) != "correct horse battery" {
					return errors.New("wrong passphrase (or seal.json was changed)")
				}
				return nil
			}})
	}()
	waitFor(t, "the socket", func() bool { _, err := os.Stat(sock); return err == nil })
	st, _ := os.Stat(sock)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v", st.Mode().Perm())
	}
	var resp *http.Response
	waitFor(t, "the sealed API", func() bool {
		var err error
		resp, err = http.Get("http://" + addr + "/v1/cals")
		return err == nil
	})
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 503 || !s.Sealed || !strings.Contains(s.Error, "sealed") {
		t.Fatalf("sealed API: %d %+v %v", resp.StatusCode, s, err)
	}
	resp.Body.Close()
	resp, err := http.Get("http://" + addr + "/v1/seal-status")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("seal-status: %v %v", resp, err)
	}
	resp.Body.Close()

	for _, tc := range []struct{ secret, want string }{
		{"", "empty"},
		{strings.Repeat("x", MaxSecret+10), "over the limit"},
		{"wrong horse battery", "wrong passphrase"},
	} {
		if err := Unseal(ctx, sock, []byte(tc.secret)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%.20q: %v, want %q", tc.secret, err, tc.want)
		}
	}
	if err := Unseal(ctx, sock, []byte("correct horse battery")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/v1/cals"); err == nil {
		t.Fatal("the sealed API still answers after unsealing")
	}
	if len(tried) != 2 {
		t.Fatalf("Try called for %d secrets, want 2 (the empty and oversized ones never reach it)", len(tried))
	}
}

func FuzzReadSecret(f *testing.F) {
	f.Add([]byte("pass\n"))
	f.Add([]byte("\r\n"))
	f.Add([]byte("no newline"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := readSecret(strings.NewReader(string(b)))
		if err == nil && (len(s) == 0 || len(s) > MaxSecret || strings.ContainsRune(string(s), '\n')) {
			t.Fatalf("accepted %q", s)
		}
	})
}
