package caltls

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time       { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration)  { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func (c *fakeClock) set(t time.Time)      { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func TestSourceRenewsBeforeExpiry(t *testing.T) {
	k := key(t, 7)
	n := k.Public().NetworkID()
	clk := newFakeClock(time.Now())
	src, err := NewSource(k, n, "/cal/"+k.Public().ID().String(), []byte("d"), 30*time.Hour, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := src.Get()
	steps := []struct {
		name  string
		after time.Duration
		renew bool
	}{
		{"young certificate is kept", time.Hour, false},
		{"just before two thirds", 18*time.Hour + 30*time.Minute, false},
		{"past two thirds: renewed", 21 * time.Hour, true},
	}
	start := clk.now()
	for _, st := range steps {
		clk.set(start.Add(st.after))
		got, err := src.Get()
		if err != nil {
			t.Fatal(err)
		}
		if renewed := got != first; renewed != st.renew {
			t.Fatalf("%s: renewed = %v, want %v", st.name, renewed, st.renew)
		}
		if now := clk.now(); now.Before(got.Leaf.NotBefore) || !now.Before(got.Leaf.NotAfter) {
			t.Fatalf("%s: certificate valid %v..%v does not cover %v", st.name, got.Leaf.NotBefore, got.Leaf.NotAfter, now)
		}
	}
	if _, err := NewSource(k, n, "/x", nil, time.Second, clk.now); err == nil {
		t.Fatal("a validity of one second was accepted")
	}
}

// TestMutualTLSAcrossLifetimes drives one server (a control plane: 30-day
// certificates) and one client (a Cal: 7-day certificates) on an injected
// clock through 100 days. A request every 12 hours on a kept-alive
// connection and one on a fresh connection must all succeed: the
// certificates are renewed before they expire and no request is cut.
func TestMutualTLSAcrossLifetimes(t *testing.T) {
	authority, cal := key(t, 8), key(t, 9)
	n := authority.Public().NetworkID()
	clk := newFakeClock(time.Now())
	srvSrc, err := NewSource(authority, n, ControlPlanePath, nil, 30*24*time.Hour, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	cliSrc, err := NewSource(cal, n, "/cal/"+cal.Public().ID().String(), []byte("d"), 7*24*time.Hour, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	expectKey := func(want ed25519.PublicKey) Resolver {
		return func(p *Peer) error {
			if !want.Equal(p.Key) {
				return errors.New("unexpected peer")
			}
			return nil
		}
	}
	dir := t.TempDir()
	ln, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	var seenMu sync.Mutex
	seen := map[string]bool{} // client certificate serials the server saw
	srv := &http.Server{
		TLSConfig: Config(srvSrc, expectKey(cal.Public().Ed25519()), true),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := PeerOf(r.TLS, n)
			if err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			seenMu.Lock()
			seen[r.TLS.PeerCertificates[0].SerialNumber.String()] = true
			seenMu.Unlock()
			io.WriteString(w, p.Cal.String())
		}),
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	defer srv.Close()
	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", dir+"/s")
			},
			TLSClientConfig: Config(cliSrc, expectKey(authority.Public().Ed25519()), false),
		}}
	}
	kept := client()
	get := func(c *http.Client) error {
		resp, err := c.Get("https://cal/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != cal.Public().ID().String() {
			return errors.New(resp.Status + ": " + string(b))
		}
		return nil
	}
	serverCerts := map[string]bool{}
	for h := 0; h <= 100*24; h += 12 {
		if err := get(kept); err != nil {
			t.Fatalf("after %d h, kept-alive connection: %v", h, err)
		}
		fresh := client()
		if err := get(fresh); err != nil {
			t.Fatalf("after %d h, new connection: %v", h, err)
		}
		fresh.CloseIdleConnections()
		c, _ := srvSrc.Get()
		serverCerts[c.Leaf.SerialNumber.String()] = true
		clk.add(12 * time.Hour)
	}
	// 100 days: the 30-day certificate renewed every 20 days, the 7-day
	// one every ~4.7 days.
	if len(serverCerts) < 5 {
		t.Errorf("server presented %d certificates over 100 days, want >= 5", len(serverCerts))
	}
	if len(seen) < 20 {
		t.Errorf("server saw %d client certificates over 100 days, want >= 20", len(seen))
	}
}
