package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"net/http"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// bundleEndpointSVID is the SVID the bundle endpoint serves with (the
// https_spiffe profile), renewed at half its life. It implements
// go-spiffe's x509svid.Source.
type bundleEndpointSVID struct {
	s   *Server
	mu  sync.Mutex
	cur *x509svid.SVID
}

// GetX509SVID returns the current SVID, renewing it when half its life
// is gone.
func (b *bundleEndpointSVID) GetX509SVID() (*x509svid.SVID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur != nil {
		leaf := b.cur.Certificates[0]
		if b.s.now().Before(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)) {
			return b.cur, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	svid, err := b.s.ca.IssueBundleEndpoint(&key.PublicKey)
	if err != nil {
		if b.cur != nil && b.s.now().Before(b.cur.Certificates[0].NotAfter) {
			return b.cur, nil
		}
		return nil, err
	}
	b.cur = &x509svid.SVID{ID: svid.ID, Certificates: svid.Chain, PrivateKey: key}
	return b.cur, nil
}

// bundleSource is the network's SPIFFE bundle as go-spiffe's
// spiffebundle.Source.
type bundleSource struct{ s *Server }

func (b bundleSource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	return b.s.spiffeBundle(), nil
}

// bundleEndpoint is the SPIFFE bundle endpoint for federation (calnet up
// --bundle-addr): go-spiffe's federation handler serving the network's
// bundle over TLS with an SVID of the network
// (spiffe://<network>/control-plane/bundle-endpoint), the https_spiffe
// profile. A federating peer fetches the first bundle out of band (GET
// /v1/spiffe/bundle, or the genesis key: spiffeca.RootMatches) and later
// ones from here.
func (s *Server) bundleEndpoint() (http.Handler, *tls.Config, error) {
	h, err := federation.NewHandler(s.ca.TrustDomain(), bundleSource{s})
	if err != nil {
		return nil, nil, err
	}
	cfg := tlsconfig.TLSServerConfig(&bundleEndpointSVID{s: s})
	cfg.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}
	return h, cfg, nil
}
