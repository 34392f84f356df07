package spiffeca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/soulfra/calnet/identity"
)

func key(t testing.TB, b byte) *identity.PrivateKey {
	k, err := identity.FromSeed(bytes.Repeat([]byte{b}, 64))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var born = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func authority(t testing.TB, genesis *identity.PrivateKey, clk *clock) *Authority {
	t.Helper()
	a, err := New(Config{Network: genesis.Public().NetworkID(), Born: born, Root: genesis.TLSSigner(), TTL: time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRootIsDerivedFromTheGenesisKey(t *testing.T) {
	g := key(t, 1)
	clk := &clock{t: born.Add(time.Hour)}
	a, b := authority(t, g, clk), authority(t, g, clk)
	if !bytes.Equal(a.Root().Raw, b.Root().Raw) {
		t.Fatal("two authorities of one network made different roots")
	}
	if err := RootMatches(a.Root(), g.Public()); err != nil {
		t.Fatalf("the root does not match the genesis key: %v", err)
	}
	other := authority(t, key(t, 2), clk)
	if err := RootMatches(other.Root(), g.Public()); err == nil {
		t.Fatal("another network's root matched the genesis key")
	}
}

func TestIssuedSVIDsVerifyWithGoSPIFFE(t *testing.T) {
	g, cal := key(t, 1), key(t, 3)
	clk := &clock{t: born.Add(time.Hour)}
	a := authority(t, g, clk)
	wk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  Request
		path string
	}{
		{"a cal, with its identity key", Request{Cal: cal.Public().ID(), Key: cal.Public().Ed25519(), BlessingDigest: []byte("d")}, "/cal/" + cal.Public().ID().String()},
		{"its workload, with a P-256 key", Request{Cal: cal.Public().ID(), Workload: true, Key: &wk.PublicKey}, "/cal/" + cal.Public().ID().String() + "/workload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := a.Issue(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			id, _, err := x509svid.Verify(s.Chain, a.Bundle(), x509svid.WithTime(clk.now()))
			if err != nil {
				t.Fatalf("go-spiffe refused the svid: %v", err)
			}
			if id.Path() != tc.path || id.TrustDomain() != a.TrustDomain() {
				t.Fatalf("id = %s, want path %s", id, tc.path)
			}
			if got := s.Leaf().NotAfter.Sub(clk.now()); got != time.Hour {
				t.Fatalf("ttl = %v, want 1h", got)
			}
			v, err := Verify(s.Raw(), a.Bundle(), clk.now(), nil)
			if err != nil || v.Cal != cal.Public().ID() || v.Workload != tc.req.Workload {
				t.Fatalf("Verify = %+v, %v", v, err)
			}
		})
	}
	if _, err := a.Issue(Request{Cal: cal.Public().ID(), Key: mustRSA(t)}); err == nil {
		t.Fatal("an RSA key was certified")
	}
}

func mustRSA(t *testing.T) *rsa.PublicKey {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

// TestVerifyNamesTheReason refuses each kind of bad SVID with its reason.
func TestVerifyNamesTheReason(t *testing.T) {
	g, cal, child := key(t, 1), key(t, 3), key(t, 4)
	clk := &clock{t: born.Add(time.Hour)}
	a := authority(t, g, clk)
	other := authority(t, key(t, 2), clk)
	issue := func(a *Authority, k *identity.PrivateKey) [][]byte {
		s, err := a.Issue(Request{Cal: k.Public().ID(), Key: k.Public().Ed25519()})
		if err != nil {
			t.Fatal(err)
		}
		return s.Raw()
	}
	good, kid := issue(a, cal), issue(a, child)
	// An impostor: a root of the same trust domain made with another key.
	impostor, err := New(Config{Network: g.Public().NetworkID(), Born: born, Root: key(t, 9).TLSSigner(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	revoked := func(id identity.ID) (identity.ID, bool) {
		switch id {
		case cal.Public().ID():
			return id, true
		case child.Public().ID():
			return cal.Public().ID(), true
		}
		return identity.ID{}, false
	}
	now := clk.now()
	for _, tc := range []struct {
		name    string
		raw     [][]byte
		at      time.Time
		revoked Revoked
		want    Reason
	}{
		{"expired", good, now.Add(time.Hour + time.Second), nil, ReasonExpired},
		{"not yet valid", good, now.Add(-time.Minute), nil, ReasonNotYetValid},
		{"wrong trust domain", issue(other, cal), now, nil, ReasonWrongTrustDomain},
		{"unknown authority", issue(impostor, cal), now, nil, ReasonUnknownAuthority},
		{"revoked", good, now, revoked, ReasonRevoked},
		{"below a revoked cal", kid, now, revoked, ReasonRevoked},
		{"no certificate", nil, now, nil, ReasonMalformed},
		{"garbage", [][]byte{[]byte("not der")}, now, nil, ReasonMalformed},
		{"leaf without its issuer", good[:1], now, nil, ReasonUnknownAuthority},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.raw, a.Bundle(), tc.at, tc.revoked)
			if got := ReasonOf(err); got != tc.want {
				t.Fatalf("reason = %q (%v), want %q", got, err, tc.want)
			}
			if !errors.Is(err, &Error{Reason: tc.want}) {
				t.Fatalf("errors.Is does not match the reason: %v", err)
			}
		})
	}
}

// TestIssuerRotatesAtHalfLife replaces the issuing CA once half its life
// is gone; SVIDs of the old one still verify (the bundle is the root).
func TestIssuerRotatesAtHalfLife(t *testing.T) {
	g, cal := key(t, 1), key(t, 3)
	clk := &clock{t: born.Add(time.Hour)}
	a := authority(t, g, clk)
	req := Request{Cal: cal.Public().ID(), Key: cal.Public().Ed25519()}
	first, err := a.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(IssuerTTL/2 - time.Hour)
	same, _ := a.Issue(req)
	if !bytes.Equal(same.Chain[1].Raw, first.Chain[1].Raw) {
		t.Fatal("the issuing CA was replaced before half its life")
	}
	if _, err := Verify(same.Raw(), a.Bundle(), clk.now(), nil); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Hour)
	next, _ := a.Issue(req)
	if bytes.Equal(next.Chain[1].Raw, first.Chain[1].Raw) {
		t.Fatal("the issuing CA was not replaced after half its life")
	}
	if _, err := Verify(next.Raw(), a.Bundle(), clk.now(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestParseCSR(t *testing.T) {
	wk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, wk)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParseCSR(der)
	if err != nil || !wk.PublicKey.Equal(pub) {
		t.Fatalf("ParseCSR = %v, %v", pub, err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, p384)
	tampered := append([]byte(nil), der...)
	tampered[len(tampered)-5] ^= 1
	for name, b := range map[string][]byte{"empty": nil, "too big": make([]byte, MaxCSR+1), "garbage": []byte("x"), "P-384": der384, "bad signature": tampered} {
		if _, err := ParseCSR(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseCSR(f *testing.F) {
	wk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, wk)
	f.Add(der)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ParseCSR(b)
		if err == nil && pub == nil {
			t.Fatal("no key and no error")
		}
	})
}

// FuzzVerify feeds arbitrary chains to Verify: it never panics, names
// the reason of every refusal, and accepts only what the authority issued.
func FuzzVerify(f *testing.F) {
	g, cal := key(f, 1), key(f, 3)
	clk := &clock{t: born.Add(time.Hour)}
	a := authority(f, g, clk)
	s, err := a.Issue(Request{Cal: cal.Public().ID(), Key: cal.Public().Ed25519()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Chain[0].Raw, s.Chain[1].Raw)
	f.Add([]byte("x"), []byte{})
	bundle := a.Bundle()
	f.Fuzz(func(t *testing.T, leaf, issuer []byte) {
		v, err := Verify([][]byte{leaf, issuer}, bundle, clk.now(), nil)
		if err == nil {
			// The authority (any of this network's: the root is the
			// same) certified only cal's key: a fuzzer cannot forge
			// another.
			c, _ := x509.ParseCertificate(leaf)
			if !sameKey(c, cal.Public().Ed25519()) || v.Cal != cal.Public().ID() {
				t.Fatalf("accepted a leaf it did not issue: %s", v.ID)
			}
		}
		if err != nil && ReasonOf(err) == "" {
			t.Fatalf("refusal without a reason: %v", err)
		}
	})
}

// sameKey reports whether a certificate's key is pub.
func sameKey(c *x509.Certificate, pub crypto.PublicKey) bool {
	b, err := x509.MarshalPKIXPublicKey(pub)
	return err == nil && bytes.Equal(b, c.RawSubjectPublicKeyInfo)
}
