package caltls

import (
	"crypto/ed25519"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/trust"
)

// Servers of one network (the Raft cluster that replicates its state) talk
// to each other over mutual TLS 1.3 with the hybrid X25519MLKEM768 key
// exchange only. Each presents a certificate self-signed by its identity
// key that names it spiffe://<network>/server/<id> and carries its soul
// chain; a peer is accepted only if that chain verifies now against the
// network's root, is not revoked, grants the admin permission (a server
// holds the whole network's state), and blesses the certificate's key.

// ServerPathPrefix starts the SPIFFE path of a server: /server/<id>.
const ServerPathPrefix = "/server/"

// oidChain marks the extension holding a server's soul chain (JSON).
var oidChain = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 1, 2}

// maxChainExtension bounds the soul chain a peer's certificate may carry.
const maxChainExtension = 256 << 10

// ServerIdentity is what a server proves to the others: its identity key
// and the soul chain that blesses that key into the network.
type ServerIdentity struct {
	Key   *identity.PrivateKey
	Chain *trust.Chain
}

// ServerTLS returns the configurations with which a server accepts (server)
// and opens (client) connections to the other servers of its network. v
// trusts the network's root; revoked, if not nil, is asked at each
// handshake; now is the clock (nil: time.Now).
func ServerTLS(id ServerIdentity, v *trust.Verifier, revoked func() trust.RevocationView, now func() time.Time) (server, client *tls.Config, err error) {
	if now == nil {
		now = time.Now
	}
	if id.Key == nil || id.Chain == nil {
		return nil, nil, errors.New("caltls: a server needs its key and its soul chain")
	}
	if revoked == nil {
		revoked = func() trust.RevocationView { return nil }
	}
	if _, err := v.Verify(id.Chain, now(), revoked()); err != nil {
		return nil, nil, fmt.Errorf("caltls: this server's own chain: %w", err)
	}
	if subtle.ConstantTimeCompare(id.Chain.Leaf().ChildKey().Ed25519, id.Key.Public().Ed25519()) != 1 {
		return nil, nil, errors.New("caltls: this server's chain blesses another key than its own")
	}
	chainJSON, err := id.Chain.MarshalJSON()
	if err != nil {
		return nil, nil, fmt.Errorf("caltls: server chain: %w", err)
	}
	src := &serverSource{key: id.Key, network: v.Network(), path: ServerPathPrefix + id.Chain.Leaf().Child().String(),
		chain: chainJSON, notAfter: id.Chain.Leaf().Constraints().NotAfter, now: now}
	if _, err := src.get(); err != nil {
		return nil, nil, err
	}
	verify := func(cs tls.ConnectionState) error {
		_, err := VerifyServer(rawOf(cs), v, revoked(), now())
		return err
	}
	base := tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
		// Chains are checked by VerifyConnection against calnet's trust
		// model, not the Web PKI.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   verify,
	}
	server, client = base.Clone(), base.Clone()
	server.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return src.get() }
	server.ClientAuth = tls.RequireAnyClientCert
	server.InsecureSkipVerify = false
	client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return src.get() }
	return server, client, nil
}

// VerifyServer checks the certificate a peer server presented and returns
// its verified chain's leaf. The errors say which check failed, first of
// all when the peer belongs to another network.
func VerifyServer(rawCerts [][]byte, v *trust.Verifier, rv trust.RevocationView, now time.Time) (*trust.Verified, error) {
	if len(rawCerts) != 1 {
		return nil, fmt.Errorf("caltls: server certificate: want exactly one, got %d", len(rawCerts))
	}
	c, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("caltls: server certificate: %w", err)
	}
	if len(c.URIs) != 1 || c.URIs[0].Scheme != "spiffe" {
		return nil, errors.New("caltls: server certificate: want exactly one SPIFFE ID")
	}
	u := c.URIs[0]
	if u.Host != v.Network().String() {
		return nil, fmt.Errorf("caltls: the peer server belongs to network %s, this server to network %s: servers of another network are refused", u.Host, v.Network())
	}
	id, ok := strings.CutPrefix(u.Path, ServerPathPrefix)
	if !ok {
		return nil, fmt.Errorf("caltls: the peer presents %s, not a server's identity (%s<id>)", u.Path, ServerPathPrefix)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return nil, fmt.Errorf("caltls: server certificate is not self-signed by its key: %w", err)
	}
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return nil, fmt.Errorf("caltls: server certificate valid from %s to %s, not at %s", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("caltls: server certificate key is not Ed25519")
	}
	var raw []byte
	for _, e := range c.Extensions {
		if e.Id.Equal(oidChain) {
			raw = e.Value
		}
	}
	if raw == nil {
		return nil, errors.New("caltls: server certificate carries no soul chain")
	}
	if len(raw) > maxChainExtension {
		return nil, fmt.Errorf("caltls: server soul chain: %d bytes, the limit is %d", len(raw), maxChainExtension)
	}
	var chainJSON []byte
	if rest, err := asn1.Unmarshal(raw, &chainJSON); err != nil || len(rest) != 0 {
		return nil, errors.New("caltls: server soul chain: malformed extension")
	}
	chain, err := trust.ParseChain(chainJSON)
	if err != nil {
		return nil, fmt.Errorf("caltls: server soul chain: %w", err)
	}
	ver, err := v.Verify(chain, now, rv)
	if err != nil {
		return nil, fmt.Errorf("caltls: the peer server's soul chain does not verify: %w", err)
	}
	if ver.Cal.String() != id {
		return nil, fmt.Errorf("caltls: the peer names itself %s but its chain blesses %s", id, ver.Cal)
	}
	if subtle.ConstantTimeCompare(ver.Key.Ed25519(), pub) != 1 {
		return nil, errors.New("caltls: the peer's certificate key is not the key its chain blesses")
	}
	if !ver.Permissions.Has(trust.PermAdmin) {
		return nil, fmt.Errorf("caltls: the peer %s is not blessed as a server: its chain grants %s, a server needs admin", ver.Cal, ver.Permissions)
	}
	return ver, nil
}

// serverSource hands out a server's certificate, renewed once two thirds
// of its validity (a day, at most the chain's) have passed.
type serverSource struct {
	key      *identity.PrivateKey
	network  identity.NetworkID
	path     string
	chain    []byte
	notAfter time.Time
	now      func() time.Time

	mu  sync.Mutex
	cur *tls.Certificate
}

func (s *serverSource) get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cur != nil {
		nb, na := s.cur.Leaf.NotBefore, s.cur.Leaf.NotAfter
		if now.Before(nb.Add(na.Sub(nb) * 2 / 3)) {
			return s.cur, nil
		}
	}
	end := now.Add(24 * time.Hour)
	if s.notAfter.Before(end) {
		end = s.notAfter
	}
	if !end.After(now) {
		return nil, fmt.Errorf("caltls: this server's chain expired at %s", s.notAfter.Format(time.RFC3339))
	}
	c, err := selfSigned(s.key, s.network, s.path, end, []pkix.Extension{{Id: oidChain, Value: mustASN1(s.chain)}}, now)
	if err != nil {
		return nil, fmt.Errorf("caltls: server certificate: %w", err)
	}
	s.cur = &c
	return s.cur, nil
}
