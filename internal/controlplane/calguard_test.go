package controlplane

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/spiffeca"
	"github.com/soulfra/calnet/trust"
)

// TestCalAPIChecksTheBlessing: a Cal calling the control plane's Cal API
// over mutual TLS (a real server, real certificates, real blessings
// signed by the Master) is admitted to a route only when its blessing
// holds the table's permission for it.
func TestCalAPIChecksTheBlessing(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, s.store.Close()) }()
	close(s.recovered) // as Run does once it has recovered the Cals: the Cal API answers from then on
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.calHandler(), TLSConfig: caltls.Config(s.certs, s.resolveCal, true)}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	defer srv.Close()

	masterKey, err := s.net.LoadKey(filepath.Join(s.networkDir(), "master"))
	if err != nil {
		t.Fatal(err)
	}
	controlPlane := func(p *caltls.Peer) error { return nil }
	for i, perms := range []trust.Permissions{
		trust.PermissionsOf(trust.PermTalk),
		trust.PermissionsOf(trust.PermRead, trust.PermSpawn, trust.PermRevoke),
	} {
		_, src := blessTestCal(t, s, masterKey, i+1, perms)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: caltls.Config(src, controlPlane, false)}}
		cal := authz.Principal{Kind: authz.Cal, Perms: perms}
		for _, e := range authz.Routes(authz.CalAPI) {
			rule, _ := authz.Lookup(authz.CalAPI, e.Pattern)
			method, path, _ := strings.Cut(e.Pattern, " ")
			if path == "/cal/v1/watch" {
				continue // a stream: admitted, it never ends
			}
			var body *strings.Reader
			if method != "GET" {
				body = strings.NewReader("not json")
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequest(method, "https://"+ln.Addr().String()+path, body)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s as a cal holding %s: %v", e.Pattern, perms, err)
			}
			resp.Body.Close()
			want := authz.Expect(rule, cal, true, false)
			if admitted := resp.Header.Get(authz.RouteHeader); (want == 0) != (admitted == e.Pattern) || want != 0 && resp.StatusCode != want {
				t.Errorf("%s as a cal holding %s: %d (%s %q), the table says %d", e.Pattern, perms, resp.StatusCode, authz.RouteHeader, admitted, want)
			}
		}
		hc.CloseIdleConnections()
	}
	// A certificate of a key no blessing names is refused at the handshake.
	stranger, _ := identity.Generate(nil)
	src, _ := caltls.NewSource(stranger, s.net.Info.Network, "/cal/"+stranger.Public().ID().String(), nil, time.Hour, nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: caltls.Config(src, controlPlane, false)}}
	if resp, err := hc.Get("https://" + ln.Addr().String() + "/cal/v1/children"); err == nil {
		resp.Body.Close()
		t.Fatalf("a stranger's certificate: %d", resp.StatusCode)
	}
}

// blessTestCal blesses a new key under the Master with perms (the
// blessing's serial is serial), records the blessing in s's trust state
// as a spawn does, and returns the key and a certificate source for it.
func blessTestCal(t testing.TB, s *Server, masterKey *identity.PrivateKey, serial int, perms trust.Permissions) (*identity.PrivateKey, *caltls.Source) {
	t.Helper()
	master := s.state.Blessings[masterKey.Public().ID()]
	key, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mc := master.Constraints()
	b, err := trust.Issue(masterKey, trust.Grant{Network: s.net.Info.Network, Parent: master, ChildKey: key.Public(), Serial: serial, Permissions: perms,
		Constraints: trust.Constraints{MaxDepth: mc.MaxDepth, MaxChildren: 4, Quota: trust.Quota{CPUMillis: 100, MemoryBytes: 32 << 20, PIDs: 16},
			NotBefore: mc.NotBefore, NotAfter: now.Add(time.Hour)}, IssuedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	s.trustMu.Lock()
	s.state.Blessings[b.Child()] = b
	s.trustMu.Unlock()
	d := b.Digest()
	src, err := caltls.NewSource(key, s.net.Info.Network, spiffeca.CalPath(b.Child(), false), d[:], time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return key, src
}
