package spiffeca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/soulfra/calnet/identity"
)

// OIDBlessing marks the extension of a Cal's certificate that holds the
// digest of its blessing (an OCTET STRING).
var OIDBlessing = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 1, 1}

// WorkloadSuffix ends the SPIFFE path of a Cal's workload.
const WorkloadSuffix = "/workload"

// CalPath is the SPIFFE path of a Cal; with workload set, of its workload.
func CalPath(id identity.ID, workload bool) string {
	p := "/cal/" + id.String()
	if workload {
		p += WorkloadSuffix
	}
	return p
}

// TrustDomain is the network's SPIFFE trust domain (its network ID).
func TrustDomain(n identity.NetworkID) spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(n.String())
}

// Config makes an Authority.
type Config struct {
	// Network is the network and trust domain.
	Network identity.NetworkID
	// Born is the network's creation time: the root's NotBefore.
	Born time.Time
	// Root signs the root certificate and the issuing CAs: the Ed25519
	// half of the genesis key (identity.PrivateKey.TLSSigner).
	Root crypto.Signer
	// TTL is the lifetime of the SVIDs issued (0: DefaultTTL).
	TTL time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Authority issues X.509-SVIDs. It is safe for concurrent use.
type Authority struct {
	td     spiffeid.TrustDomain
	root   *x509.Certificate
	signer crypto.Signer
	ttl    time.Duration
	now    func() time.Time

	mu     sync.Mutex
	issuer *x509.Certificate
	key    *ecdsa.PrivateKey
}

// New makes the authority: the network's root certificate and a first
// issuing CA.
func New(cfg Config) (*Authority, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < MinTTL || cfg.TTL > MaxTTL {
		return nil, fmt.Errorf("spiffeca: svid ttl %v is outside %v..%v", cfg.TTL, MinTTL, MaxTTL)
	}
	if _, ok := cfg.Root.Public().(ed25519.PublicKey); !ok {
		return nil, errors.New("spiffeca: the root signer is not the genesis key's Ed25519 half")
	}
	root, err := RootCertificate(cfg.Network, cfg.Born, cfg.Root)
	if err != nil {
		return nil, err
	}
	a := &Authority{td: TrustDomain(cfg.Network), root: root, signer: cfg.Root, ttl: cfg.TTL, now: cfg.Now}
	if err := a.rotate(a.now()); err != nil {
		return nil, err
	}
	return a, nil
}

// RootCertificate makes the network's root certificate: self-signed by
// the genesis key's Ed25519 half, with every field derived from the
// network alone. Ed25519 signatures are deterministic, so it is the same
// certificate each time.
func RootCertificate(n identity.NetworkID, born time.Time, root crypto.Signer) (*x509.Certificate, error) {
	sum := sha256.Sum256(append([]byte("calnet-x509-root-v1\x00"), n[:]...))
	sum[0] &= 0x7f
	td := TrustDomain(n)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sum[:16]),
		Subject:               pkix.Name{Organization: []string{"calnet"}, CommonName: "calnet root " + n.Short()},
		NotBefore:             born.UTC().Truncate(time.Second),
		NotAfter:              born.UTC().Truncate(time.Second).Add(RootTTL),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
		PermittedURIDomains:   []string{td.String()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, root.Public(), root)
	if err != nil {
		return nil, fmt.Errorf("spiffeca: root certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// RootMatches reports whether a bundle's authority is the network's root:
// a CA certificate, self-signed, whose key is the Ed25519 half of the
// network's root keys. A verifier holding only the root public keys checks
// a bundle fetched from anywhere with it.
func RootMatches(c *x509.Certificate, root *identity.PublicKey) error {
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(root.Ed25519()) {
		return errors.New("spiffeca: bundle authority's key is not the network's genesis key")
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		return errors.New("spiffeca: bundle authority is not a CA certificate")
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return fmt.Errorf("spiffeca: bundle authority is not self-signed: %w", err)
	}
	return nil
}

// rotate makes a new issuing CA (a.mu held, or during New).
func (a *Authority) rotate(now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	notAfter := now.Add(IssuerTTL)
	if notAfter.After(a.root.NotAfter) {
		notAfter = a.root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"calnet"}, CommonName: "calnet issuing CA " + now.UTC().Format("20060102T150405Z")},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{a.td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.root, key.Public(), a.signer)
	if err != nil {
		return fmt.Errorf("spiffeca: issuing CA: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	a.issuer, a.key = c, key
	return nil
}

func serial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

// TrustDomain returns the authority's trust domain.
func (a *Authority) TrustDomain() spiffeid.TrustDomain { return a.td }

// Root returns the root certificate.
func (a *Authority) Root() *x509.Certificate { return a.root }

// TTL returns the lifetime of the SVIDs it issues.
func (a *Authority) TTL() time.Duration { return a.ttl }

// Bundle returns the network's X.509 trust bundle: its root.
func (a *Authority) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(a.td, []*x509.Certificate{a.root})
}

// Request asks for one SVID.
type Request struct {
	// Cal is the Cal the SVID names.
	Cal identity.ID
	// Workload names the Cal's workload (spiffe://<network>/cal/<id>/workload)
	// instead of the Cal.
	Workload bool
	// Key is the SVID's public key: the Cal's Ed25519 identity half, or
	// the workload's key (from its certificate request).
	Key crypto.PublicKey
	// BlessingDigest binds the SVID to the Cal's blessing.
	BlessingDigest []byte
}

// SVID is an issued X.509-SVID.
type SVID struct {
	ID spiffeid.ID
	// Chain is the leaf, then the issuing CA.
	Chain []*x509.Certificate
}

// Leaf returns the SVID's certificate.
func (s *SVID) Leaf() *x509.Certificate { return s.Chain[0] }

// Raw returns the chain's DER certificates.
func (s *SVID) Raw() [][]byte {
	out := make([][]byte, len(s.Chain))
	for i, c := range s.Chain {
		out[i] = c.Raw
	}
	return out
}

// Issue signs an SVID for r, valid for the authority's TTL (never past
// its issuing CA, which it replaces first when half its life is gone).
func (a *Authority) Issue(r Request) (*SVID, error) {
	if err := certifiable(r.Key); err != nil {
		return nil, err
	}
	id, err := spiffeid.FromPath(a.td, CalPath(r.Cal, r.Workload))
	if err != nil {
		return nil, err
	}
	return a.issue(id, r.Key, r.BlessingDigest, r.Cal.Short())
}

// BundleEndpointPath is the SPIFFE path of the control plane's bundle
// endpoint (https_spiffe profile).
const BundleEndpointPath = "/control-plane/bundle-endpoint"

// IssueBundleEndpoint signs the SVID the bundle endpoint serves with,
// spiffe://<network>/control-plane/bundle-endpoint, for key.
func (a *Authority) IssueBundleEndpoint(key crypto.PublicKey) (*SVID, error) {
	if err := certifiable(key); err != nil {
		return nil, err
	}
	return a.issue(spiffeid.RequireFromPath(a.td, BundleEndpointPath), key, nil, "bundle endpoint")
}

func (a *Authority) issue(id spiffeid.ID, pub crypto.PublicKey, digest []byte, cn string) (*SVID, error) {
	now := a.now()
	a.mu.Lock()
	iss := a.issuer
	if life := iss.NotAfter.Sub(iss.NotBefore); now.After(iss.NotBefore.Add(life/2)) || now.Add(a.ttl).After(iss.NotAfter) {
		if err := a.rotate(now); err != nil {
			a.mu.Unlock()
			return nil, err
		}
	}
	iss, key := a.issuer, a.key
	a.mu.Unlock()
	notAfter := now.Add(a.ttl)
	if notAfter.After(iss.NotAfter) {
		notAfter = iss.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"calnet"}, CommonName: cn},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		URIs:                  []*url.URL{id.URL()},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if digest != nil {
		v, _ := asn1.Marshal(digest)
		tmpl.ExtraExtensions = []pkix.Extension{{Id: OIDBlessing, Value: v}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss, pub, key)
	if err != nil {
		return nil, fmt.Errorf("spiffeca: issue %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &SVID{ID: id, Chain: []*x509.Certificate{leaf, iss}}, nil
}

// certifiable checks the authority certifies a key of this kind.
func certifiable(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return nil
		}
		return errors.New("spiffeca: key: only ECDSA P-256 and Ed25519 keys are certified")
	}
	return fmt.Errorf("spiffeca: key: %T is not certified (ECDSA P-256 or Ed25519)", pub)
}

// ParseCSR reads a PKCS #10 certificate request (untrusted bytes from a
// Cal) and returns its key, once its signature proves the requester holds
// it. Only ECDSA P-256 and Ed25519 keys are accepted; what the request
// asks for besides the key is ignored (the authority decides the names).
func ParseCSR(der []byte) (crypto.PublicKey, error) {
	if len(der) == 0 {
		return nil, errors.New("spiffeca: csr: empty")
	}
	if len(der) > MaxCSR {
		return nil, fmt.Errorf("spiffeca: csr: %d bytes, over the limit of %d", len(der), MaxCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("spiffeca: csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("spiffeca: csr: signature: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case ed25519.PublicKey:
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return k, nil
		}
	}
	return nil, fmt.Errorf("spiffeca: csr: key %T is not ECDSA P-256 or Ed25519", csr.PublicKey)
}

// BundleOf makes the X.509 bundle of network from DER authorities;
// unreadable ones are left out.
func BundleOf(network identity.NetworkID, der [][]byte) *x509bundle.Bundle {
	b := x509bundle.New(TrustDomain(network))
	for _, d := range der {
		if c, err := x509.ParseCertificate(d); err == nil {
			b.AddX509Authority(c)
		}
	}
	return b
}
