package trust

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/strictjson"
)

// RevocationVersion is the only revocation format version.
const RevocationVersion = 1

// AuthorityIssuer is the issuer field of a revocation signed by the network
// authority (the genesis root key).
const AuthorityIssuer = "authority"

// Revocation revokes a Cal and its whole subtree. It is signed either by an
// ancestor of the target holding revoke, or by the network authority.
type Revocation struct {
	_         [0]func()
	network   identity.NetworkID
	target    identity.ID
	issuer    identity.ID // zero when the authority signed
	authority bool
	reason    string
	issuedAt  time.Time
	nonce     []byte
	sig       *identity.Signature
}

// Network returns the network of the revocation.
func (r *Revocation) Network() identity.NetworkID { return r.network }

// Target returns the revoked Cal.
func (r *Revocation) Target() identity.ID { return r.target }

// Issuer returns the revoking ancestor, or ok=false for the authority.
func (r *Revocation) Issuer() (id identity.ID, ok bool) { return r.issuer, !r.authority }

// Reason returns the free-text reason.
func (r *Revocation) Reason() string { return r.reason }

// IssuedAt returns when the revocation was signed.
func (r *Revocation) IssuedAt() time.Time { return r.issuedAt }

func (r *Revocation) encode() []byte {
	c := newCanon("calnet/revocation/v1\n")
	c.u8(RevocationVersion)
	c.raw(r.network[:])
	c.raw(r.target[:])
	c.bool(r.authority)
	c.raw(r.issuer[:])
	c.str(r.reason)
	c.time(r.issuedAt)
	c.bytes(r.nonce)
	return c.b
}

// RevokeRequest describes a revocation to sign.
type RevokeRequest struct {
	Network identity.NetworkID
	Target  identity.ID
	// Authority is true when signer is the genesis root key.
	Authority bool
	Reason    string
	IssuedAt  time.Time
	Rand      io.Reader
}

// Revoke signs a revocation. Whether the signer may revoke the target is
// checked by RevocationSet.Add, which has the lineage.
func Revoke(signer identity.Signer, req RevokeRequest) (*Revocation, error) {
	r := &Revocation{
		network: req.Network, target: req.Target, authority: req.Authority,
		reason: req.Reason, issuedAt: req.IssuedAt.UTC().Truncate(time.Second),
	}
	if !req.Authority {
		r.issuer = signer.Public().ID()
	}
	if err := validateReason(r.reason); err != nil {
		return nil, err
	}
	rd := req.Rand
	if rd == nil {
		rd = rand.Reader
	}
	r.nonce = make([]byte, NonceSize)
	if _, err := io.ReadFull(rd, r.nonce); err != nil {
		return nil, fmt.Errorf("revoke: nonce: %w", err)
	}
	sig, err := signer.Sign(identity.PurposeRevocation, r.encode())
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}
	r.sig = sig
	return r, nil
}

func validateReason(s string) error {
	if len(s) > MaxReasonLen {
		return fieldErr("reason", "%d bytes, over the limit of %d", len(s), MaxReasonLen)
	}
	if !utf8.ValidString(s) {
		return fieldErr("reason", "not valid UTF-8")
	}
	return nil
}

type revocationJSON struct {
	Version   int                 `json:"version"`
	Network   string              `json:"network"`
	Target    string              `json:"target"`
	Issuer    string              `json:"issuer"`
	Reason    string              `json:"reason"`
	IssuedAt  string              `json:"issued_at"`
	Nonce     string              `json:"nonce"`
	Signature *identity.Signature `json:"signature"`
}

// MarshalJSON encodes the revocation.
func (r *Revocation) MarshalJSON() ([]byte, error) {
	issuer := AuthorityIssuer
	if !r.authority {
		issuer = r.issuer.String()
	}
	return json.Marshal(revocationJSON{
		Version: RevocationVersion, Network: r.network.String(), Target: r.target.String(),
		Issuer: issuer, Reason: r.reason, IssuedAt: formatTime(r.issuedAt),
		Nonce: base64.StdEncoding.EncodeToString(r.nonce), Signature: r.sig,
	})
}

// ParseRevocation decodes a revocation without verifying it.
func ParseRevocation(data []byte) (*Revocation, error) {
	var j revocationJSON
	if err := strictjson.Unmarshal(data, MaxRevocationJSON, &j); err != nil {
		return nil, fmt.Errorf("revocation: %w: %w", ErrMalformed, err)
	}
	r, err := revocationFromJSON(&j)
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	return r, nil
}

func revocationFromJSON(j *revocationJSON) (*Revocation, error) {
	if j.Version != RevocationVersion {
		return nil, fieldErr("version", "%d is not supported (want %d)", j.Version, RevocationVersion)
	}
	r := &Revocation{reason: j.Reason}
	var err error
	if r.network, err = identity.ParseNetworkID(j.Network); err != nil {
		return nil, fieldErr("network", "%v", err)
	}
	if r.target, err = identity.ParseID(j.Target); err != nil {
		return nil, fieldErr("target", "%v", err)
	}
	if j.Issuer == AuthorityIssuer {
		r.authority = true
	} else if r.issuer, err = identity.ParseID(j.Issuer); err != nil {
		return nil, fieldErr("issuer", "%v (or %q)", err, AuthorityIssuer)
	}
	if err := validateReason(j.Reason); err != nil {
		return nil, err
	}
	if r.issuedAt, err = parseTime("issued_at", j.IssuedAt); err != nil {
		return nil, err
	}
	if r.nonce, err = decodeB64("nonce", j.Nonce, NonceSize); err != nil {
		return nil, err
	}
	if j.Signature == nil {
		return nil, fieldErr("signature", "missing")
	}
	r.sig = cloneSig(j.Signature)
	return r, nil
}

// Lineage looks up the blessing of any Cal of the network, for checking
// that a revocation's issuer is an ancestor of its target.
type Lineage interface {
	Blessing(id identity.ID) (*Blessing, bool)
}

// RevocationSet is a verified set of revocations; it implements
// RevocationView. It is safe for concurrent use.
type RevocationSet struct {
	v    *Verifier
	mu   sync.RWMutex
	revs map[identity.ID]*Revocation
}

var _ RevocationView = (*RevocationSet)(nil)

// NewRevocationSet returns an empty set that checks revocations against v's
// network and root key, and clears v's cache when a Cal is revoked.
func NewRevocationSet(v *Verifier) *RevocationSet {
	return &RevocationSet{v: v, revs: make(map[identity.ID]*Revocation)}
}

// IsRevoked implements RevocationView.
func (s *RevocationSet) IsRevoked(id identity.ID) bool {
	s.mu.RLock()
	_, ok := s.revs[id]
	s.mu.RUnlock()
	return ok
}

// Get returns the revocation of id, if any.
func (s *RevocationSet) Get(id identity.ID) (*Revocation, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.revs[id]
	return r, ok
}

// Len returns the number of revoked Cals (subtrees count once).
func (s *RevocationSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.revs)
}

// Check verifies r without adding it: the network, the signature, and, for
// an issuer other than the authority, that the issuer is a strict ancestor
// of the target holding revoke and is not itself revoked.
func (s *RevocationSet) Check(r *Revocation, lin Lineage) error {
	if r.network != s.v.network {
		return fmt.Errorf("revocation is for network %s, want %s", r.network, s.v.network)
	}
	if r.authority {
		if err := s.v.root.Verify(identity.PurposeRevocation, r.encode(), r.sig); err != nil {
			return fmt.Errorf("revocation signature by the network authority: %w", err)
		}
		return nil
	}
	ib, ok := lin.Blessing(r.issuer)
	if !ok {
		return fmt.Errorf("revocation issuer %s is not a known cal", r.issuer)
	}
	if !ib.perms.Has(PermRevoke) {
		return fmt.Errorf("revocation issuer %s does not hold revoke", r.issuer)
	}
	// Walk up from the target to find the issuer; every step is a blessing
	// the network recorded, so the walk is bounded by MaxChainDepth.
	cur, ok := lin.Blessing(r.target)
	if !ok {
		return fmt.Errorf("revocation target %s is not a known cal; only the authority can revoke unknown cals", r.target)
	}
	found := false
	for range MaxChainDepth {
		if cur.IsGenesis() {
			break
		}
		if cur.parent == r.issuer {
			found = true
			break
		}
		if cur, ok = lin.Blessing(cur.parent); !ok {
			break
		}
	}
	if !found {
		return fmt.Errorf("revocation issuer %s is not an ancestor of %s", r.issuer, r.target)
	}
	for a, n := ib, 0; n <= MaxChainDepth; n++ {
		if s.IsRevoked(a.child) {
			return fmt.Errorf("revocation issuer %s is itself revoked (through %s)", r.issuer, a.child)
		}
		if a.IsGenesis() {
			break
		}
		if a, ok = lin.Blessing(a.parent); !ok {
			break
		}
	}
	k, err := s.v.keyByID(ib.child, ib.childKey)
	if err != nil {
		return err
	}
	if err := k.Verify(identity.PurposeRevocation, r.encode(), r.sig); err != nil {
		return fmt.Errorf("revocation signature by %s: %w", r.issuer, err)
	}
	return nil
}

// Add checks r (see Check) and records it. Adding a Cal that is already
// revoked keeps the first revocation.
func (s *RevocationSet) Add(r *Revocation, lin Lineage) error {
	if err := s.Check(r, lin); err != nil {
		return err
	}
	s.mu.Lock()
	if _, dup := s.revs[r.target]; !dup {
		s.revs[r.target] = r
	}
	s.mu.Unlock()
	s.v.Forget(r.target)
	return nil
}
