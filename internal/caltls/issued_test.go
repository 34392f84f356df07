package caltls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/internal/spiffeca"
)

// handshake runs one mutual TLS handshake and returns the client's
// connection state and the server's error (or the client's).
func handshake(t *testing.T, srv, cli *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	a, b := socketPair(t)
	s, c := tls.Server(a, srv), tls.Client(b, cli)
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake(); a.Close() }()
	cerr := c.Handshake()
	serr := <-errc
	b.Close()
	if serr == nil && cerr != nil {
		serr = cerr
	}
	return c.ConnectionState(), serr
}

// TestIssuedChains runs mutual TLS with a Cal presenting the SVID the
// network's authority issued: accepted against the network's root,
// refused against another's or without a bundle; the key exchange is
// X25519MLKEM768 and a classical-only client is refused.
func TestIssuedChains(t *testing.T) {
	genesis, cal := key(t, 1), key(t, 3)
	n := genesis.Public().NetworkID()
	ca, err := spiffeca.New(spiffeca.Config{Network: n, Born: time.Now().Add(-time.Hour), Root: genesis.TLSSigner()})
	if err != nil {
		t.Fatal(err)
	}
	other, err := spiffeca.New(spiffeca.Config{Network: n, Born: time.Now().Add(-time.Hour), Root: key(t, 9).TLSSigner()})
	if err != nil {
		t.Fatal(err)
	}
	pool := func(a *spiffeca.Authority) *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(a.Root())
		return p
	}
	svid, err := ca.Issue(spiffeca.Request{Cal: cal.Public().ID(), Key: cal.Public().Ed25519(), BlessingDigest: []byte("digest")})
	if err != nil {
		t.Fatal(err)
	}
	cliSrc, err := NewSource(cal, n, spiffeca.CalPath(cal.Public().ID(), false), []byte("digest"), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cliSrc.SetIssued(svid.Raw()); err != nil {
		t.Fatal(err)
	}
	if got, _ := cliSrc.Get(); len(got.Certificate) != 2 {
		t.Fatalf("the source hands out %d certificates, want the issued chain of 2", len(got.Certificate))
	}
	wrong, _ := ca.Issue(spiffeca.Request{Cal: genesis.Public().ID(), Key: genesis.Public().Ed25519()})
	if err := cliSrc.SetIssued(wrong.Raw()); err == nil {
		t.Fatal("a chain for another key was taken")
	}
	resolve := func(p *Peer) error {
		if p.Cal != cal.Public().ID() || !cal.Public().Ed25519().Equal(p.Key) {
			return errors.New("not the cal")
		}
		return nil
	}
	cpSrc, err := NewSource(genesis, n, ControlPlanePath, nil, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli := Config(cliSrc, func(*Peer) error { return nil }, false)
	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
		want  string
	}{
		{"the network's root", pool(ca), ""},
		{"another root of the same trust domain", pool(other), "certificate chain"},
		{"no bundle", nil, "holds no trust bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpSrc.SetRoots(tc.roots)
			cs, err := handshake(t, Config(cpSrc, resolve, true), cli)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cs.CurveID != tls.X25519MLKEM768 {
					t.Fatalf("key exchange %v", cs.CurveID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("classical key exchange", func(t *testing.T) {
		cpSrc.SetRoots(pool(ca))
		c := cli.Clone()
		c.CurvePreferences = []tls.CurveID{tls.X25519}
		if _, err := handshake(t, Config(cpSrc, resolve, true), c); err == nil {
			t.Fatal("the server accepted a classical-only key exchange")
		}
	})
}
