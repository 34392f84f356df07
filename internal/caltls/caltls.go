// Package caltls binds TLS to calnet identities. A Cal's certificate is
// an X.509-SVID the network's authority (package spiffeca) issued for the
// Ed25519 half of its identity key, or, until it has one (or when its
// SVID lapsed while the control plane was away), a certificate self-signed
// by that key. Either names it with a SPIFFE ID
// (spiffe://<network>/cal/<id>) and carries the digest of its blessing; a
// peer accepts it only if an issued chain verifies against the network's
// bundle and, on top, the certificate key is the Ed25519 half of a Cal
// whose soul chain verifies now. The key exchange is X25519MLKEM768 only,
// so sessions are post-quantum.
package caltls

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/spiffeca"
)

// ControlPlanePath is the SPIFFE path of the control plane, whose
// certificate is signed by the network authority (genesis) key.
const ControlPlanePath = "/control-plane"

// SPIFFEID returns spiffe://<network>/cal/<id>.
func SPIFFEID(network identity.NetworkID, id identity.ID) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: network.String(), Path: "/cal/" + id.String()}
}

// Certificate makes a TLS certificate for key: self-signed with its
// Ed25519 half, valid for validity, naming spiffePath under network.
func Certificate(key *identity.PrivateKey, network identity.NetworkID, spiffePath string, blessingDigest []byte, validity time.Duration, now time.Time) (tls.Certificate, error) {
	var exts []pkix.Extension
	if blessingDigest != nil {
		exts = []pkix.Extension{{Id: spiffeca.OIDBlessing, Value: mustASN1(blessingDigest)}}
	}
	return selfSigned(key, network, spiffePath, now.Add(validity), exts, now)
}

// selfSigned makes a certificate for key, self-signed with its Ed25519
// half, valid from a minute before now until notAfter, naming spiffePath
// under network and carrying exts.
func selfSigned(key *identity.PrivateKey, network identity.NetworkID, spiffePath string, notAfter time.Time, exts []pkix.Extension, now time.Time) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: key.Public().ID().Short()},
		NotBefore:    now.Add(-time.Minute), NotAfter: notAfter,
		URIs:            []*url.URL{{Scheme: "spiffe", Host: network.String(), Path: spiffePath}},
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ExtraExtensions: exts,
	}
	signer := key.TLSSigner()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: signer, Leaf: leaf}, nil
}

func mustASN1(b []byte) []byte {
	v, _ := asn1.Marshal(b)
	return v
}

// Peer is an authenticated peer.
type Peer struct {
	Network identity.NetworkID
	// Path is the SPIFFE path: /cal/<id> or /control-plane.
	Path string
	// Cal is set for a Cal peer.
	Cal identity.ID
	// Key is the Ed25519 key the peer proved it holds.
	Key ed25519.PublicKey
	// BlessingDigest is the digest the certificate claims, if any.
	BlessingDigest []byte
}

// ParsePeer checks a presented certificate's form (self-signature, time,
// one SPIFFE ID in network) and returns who it claims to be. A chain
// (an issued SVID, leaf first) must verify against roots at now. The
// caller must still check that Key belongs to that identity (Resolver).
func ParsePeer(rawCerts [][]byte, network identity.NetworkID, now time.Time, roots *x509.CertPool) (*Peer, error) {
	return parsePeer(rawCerts, network, &now, roots)
}

// parsePeer is ParsePeer; a nil now skips the checks of validity and of
// the chain (done at the handshake).
func parsePeer(rawCerts [][]byte, network identity.NetworkID, now *time.Time, roots *x509.CertPool) (*Peer, error) {
	if len(rawCerts) == 0 || len(rawCerts) > spiffeca.MaxChain {
		return nil, fmt.Errorf("caltls: want 1..%d certificates, got %d", spiffeca.MaxChain, len(rawCerts))
	}
	c, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("caltls: %w", err)
	}
	if now != nil {
		if len(rawCerts) == 1 {
			if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
				return nil, fmt.Errorf("caltls: certificate is not self-signed by its key: %w", err)
			}
		} else if err := verifyChain(c, rawCerts[1:], roots, *now); err != nil {
			return nil, err
		}
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, errors.New("caltls: certificate outside its validity")
		}
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("caltls: certificate key is not Ed25519")
	}
	if len(c.URIs) != 1 || c.URIs[0].Scheme != "spiffe" {
		return nil, errors.New("caltls: want exactly one SPIFFE ID")
	}
	u := c.URIs[0]
	if u.Host != network.String() {
		return nil, fmt.Errorf("caltls: SPIFFE ID is in trust domain %q, want %q", u.Host, network)
	}
	p := &Peer{Network: network, Path: u.Path, Key: pub}
	if id, ok := strings.CutPrefix(u.Path, "/cal/"); ok {
		if p.Cal, err = identity.ParseID(id); err != nil {
			return nil, fmt.Errorf("caltls: SPIFFE ID: %w", err)
		}
	} else if u.Path != ControlPlanePath {
		return nil, fmt.Errorf("caltls: unknown SPIFFE path %q", u.Path)
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(spiffeca.OIDBlessing) {
			if rest, err := asn1.Unmarshal(e.Value, &p.BlessingDigest); err != nil || len(rest) != 0 {
				return nil, errors.New("caltls: malformed blessing digest extension")
			}
		}
	}
	return p, nil
}

// verifyChain checks an issued certificate's chain against roots.
func verifyChain(leaf *x509.Certificate, rest [][]byte, roots *x509.CertPool, now time.Time) error {
	if roots == nil {
		return errors.New("caltls: a certificate chain was presented but this peer holds no trust bundle")
	}
	inter := x509.NewCertPool()
	for i, b := range rest {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("caltls: chain certificate %d: %w", i+1, err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("caltls: certificate chain: %w", err)
	}
	return nil
}

// Resolver decides whether an authenticated Peer's key really is the key
// of the identity it names (a Cal whose chain verifies now, or the
// network authority).
type Resolver func(p *Peer) error

// Config returns a TLS 1.3 config presenting src's current certificate
// (renewed as it ages, so a long-running server or client never presents
// an expired one) and accepting exactly the peers resolve accepts. For a
// server it requires a client certificate. Peer certificates are checked
// against src's clock.
func Config(src *Source, resolve Resolver, server bool) *tls.Config {
	verify := func(cs tls.ConnectionState) error {
		p, err := ParsePeer(rawOf(cs), src.network, src.now(), src.Roots())
		if err != nil {
			return err
		}
		return resolve(p)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Post-quantum only: a peer that cannot do the hybrid key
		// exchange is refused.
		CurvePreferences:     []tls.CurveID{tls.X25519MLKEM768},
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return src.Get() },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return src.Get() },
		// Chains are checked by VerifyConnection against calnet's trust
		// model, not the Web PKI.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   verify,
	}
	if server {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.InsecureSkipVerify = false
	}
	return cfg
}

// Source hands out the TLS certificate of one identity: the SVID the
// network's authority issued for it (SetIssued) while that is valid, and
// otherwise one self-signed by its key, renewed before it expires: once
// two thirds of its validity have passed, the next Get signs a new one
// (same key, SPIFFE ID and blessing digest). Connections already
// established keep their session; new handshakes get the new
// certificate. It also holds the roots peers' chains are checked against
// (SetRoots). It is safe for concurrent use.
type Source struct {
	key      *identity.PrivateKey
	network  identity.NetworkID
	path     string
	digest   []byte
	validity time.Duration
	now      func() time.Time

	mu     sync.Mutex
	cur    *tls.Certificate // self-signed
	issued *tls.Certificate // by the network's authority, if any
	roots  *x509.CertPool
}

// NewSource makes the first certificate for key, naming spiffePath under
// network, valid for validity; now is the clock (nil: time.Now).
func NewSource(key *identity.PrivateKey, network identity.NetworkID, spiffePath string, blessingDigest []byte, validity time.Duration, now func() time.Time) (*Source, error) {
	if now == nil {
		now = time.Now
	}
	if validity < 3*time.Minute {
		return nil, fmt.Errorf("caltls: certificate validity %v is below the minimum of 3m", validity)
	}
	s := &Source{key: key, network: network, path: spiffePath, digest: blessingDigest, validity: validity, now: now}
	if _, err := s.Get(); err != nil {
		return nil, err
	}
	return s, nil
}

// Get returns the current certificate, renewing it first when it is due.
func (s *Source) Get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.issued != nil && now.Before(s.issued.Leaf.NotAfter) {
		return s.issued, nil
	}
	if s.cur != nil && now.Before(s.renewAt()) {
		return s.cur, nil
	}
	c, err := Certificate(s.key, s.network, s.path, s.digest, s.validity, now)
	if err != nil {
		if s.cur != nil && now.Before(s.cur.Leaf.NotAfter) {
			return s.cur, nil // still valid: try again at the next handshake
		}
		return nil, fmt.Errorf("caltls: renew certificate: %w", err)
	}
	s.cur = &c
	return s.cur, nil
}

// SetIssued makes chain (leaf first, DER), an SVID the network's
// authority issued for this Source's key, the certificate handed out
// until it expires; the caller renews it before.
func (s *Source) SetIssued(chain [][]byte) error {
	if len(chain) == 0 {
		return errors.New("caltls: empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return fmt.Errorf("caltls: issued certificate: %w", err)
	}
	signer := s.key.TLSSigner()
	if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(signer.Public()) {
		return errors.New("caltls: the issued certificate is not for this key")
	}
	c := &tls.Certificate{Certificate: chain, PrivateKey: crypto.Signer(signer), Leaf: leaf}
	s.mu.Lock()
	s.issued = c
	s.mu.Unlock()
	return nil
}

// SetRoots sets the roots issued chains of peers are checked against.
func (s *Source) SetRoots(roots *x509.CertPool) {
	s.mu.Lock()
	s.roots = roots
	s.mu.Unlock()
}

// Roots returns the roots set by SetRoots (nil: none).
func (s *Source) Roots() *x509.CertPool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roots
}

// renewAt is when the current certificate is due for renewal (s.mu held).
func (s *Source) renewAt() time.Time {
	nb, na := s.cur.Leaf.NotBefore.Add(time.Minute), s.cur.Leaf.NotAfter
	return nb.Add(na.Sub(nb) * 2 / 3)
}

func rawOf(cs tls.ConnectionState) [][]byte {
	out := make([][]byte, len(cs.PeerCertificates))
	for i, c := range cs.PeerCertificates {
		out[i] = c.Raw
	}
	return out
}

// PeerOf returns the authenticated peer of a connection state. The
// handshake verified the certificate, its validity included; a connection
// outlives its peer's certificate (renewal gives new handshakes a new
// one), so the time is not checked again here.
func PeerOf(cs *tls.ConnectionState, network identity.NetworkID) (*Peer, error) {
	if cs == nil {
		return nil, errors.New("caltls: not a TLS connection")
	}
	return parsePeer(rawOf(*cs), network, nil, nil)
}
