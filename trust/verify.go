package trust

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/soulfra/calnet/identity"
)

// RevocationView tells a verifier which Cals are revoked. Implementations
// must be safe for concurrent use.
type RevocationView interface {
	// IsRevoked reports whether id itself was revoked. The verifier checks
	// every link, so a revoked ancestor fails all its descendants.
	IsRevoked(id identity.ID) bool
}

// NoRevocations is the empty revocation view.
var NoRevocations RevocationView = noRevocations{}

type noRevocations struct{}

func (noRevocations) IsRevoked(identity.ID) bool { return false }

// Verified is the result of a successful verification.
type Verified struct {
	Cal         identity.ID
	Network     identity.NetworkID
	Depth       int
	Permissions Permissions
	Constraints Constraints
	// Key is the Cal's parsed public key.
	Key *identity.PublicKey
}

// Verifier checks soul chains against one network's genesis root key. It
// caches parsed public keys and links whose signatures verified, so
// re-verifying a known chain costs a few map lookups; time windows and
// revocations are checked on every call, so a cached link never outlives a
// revocation. A Verifier is safe for concurrent use.
type Verifier struct {
	root    *identity.PublicKey
	network identity.NetworkID

	mu    sync.RWMutex
	keys  map[identity.ID]*identity.PublicKey
	links map[[32]byte]struct{}
	atts  map[[32]byte]struct{}
}

// maxCacheEntries bounds each cache; when full it is cleared, which costs
// only re-verification.
const maxCacheEntries = 1 << 16

// NewVerifier returns a verifier for the network whose genesis root is root.
func NewVerifier(root *identity.PublicKey) *Verifier {
	return &Verifier{
		root:    root,
		network: root.NetworkID(),
		keys:    make(map[identity.ID]*identity.PublicKey),
		links:   make(map[[32]byte]struct{}),
		atts:    make(map[[32]byte]struct{}),
	}
}

// Network returns the ID of the network this verifier trusts.
func (v *Verifier) Network() identity.NetworkID { return v.network }

// Root returns the genesis root key.
func (v *Verifier) Root() *identity.PublicKey { return v.root }

// Forget drops cached state about a Cal, for example after its revocation.
// Correctness never depends on it: revocation is checked on every call.
func (v *Verifier) Forget(id identity.ID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.keys, id)
	// Cached links are keyed by digest; clearing them all is simplest and
	// revocations are rare.
	clear(v.links)
	clear(v.atts)
}

// Key returns the parsed key for raw, from the cache when possible.
func (v *Verifier) Key(raw RawPublicKey) (*identity.PublicKey, error) {
	return v.keyByID(raw.ID(), raw)
}

// keyByID is Key for a raw key whose ID is already known (a blessing's
// child, which validation bound to its key), skipping the hash.
func (v *Verifier) keyByID(id identity.ID, raw RawPublicKey) (*identity.PublicKey, error) {
	v.mu.RLock()
	k := v.keys[id]
	v.mu.RUnlock()
	if k != nil {
		return k, nil
	}
	k, err := identity.ParsePublicKey(raw.Ed25519, raw.MLDSA)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.keys) >= maxCacheEntries {
		clear(v.keys)
	}
	v.keys[id] = k
	v.mu.Unlock()
	return k, nil
}

func (v *Verifier) cached(m map[[32]byte]struct{}, d [32]byte) bool {
	v.mu.RLock()
	_, ok := m[d]
	v.mu.RUnlock()
	return ok
}

func (v *Verifier) remember(m map[[32]byte]struct{}, d [32]byte) {
	v.mu.Lock()
	if len(m) >= maxCacheEntries {
		clear(m)
	}
	m[d] = struct{}{}
	v.mu.Unlock()
}

// issuerKey returns the key that must have signed link i.
func (v *Verifier) issuerKey(c *Chain, i int) (*identity.PublicKey, error) {
	if i == 0 {
		return v.root, nil
	}
	p := c.Blessings[i-1]
	return v.keyByID(p.child, p.childKey)
}

// checkSignatures verifies the signatures of the links not in the cache
// and returns one error slot per link (nil when the link verified). On a
// cold chain the links are verified in parallel.
func (v *Verifier) checkSignatures(c *Chain) []error {
	errs := make([]error, len(c.Blessings))
	var todo []int
	for i, b := range c.Blessings {
		if !v.cached(v.links, b.Digest()) {
			todo = append(todo, i)
		}
	}
	verify := func(i int) {
		b := c.Blessings[i]
		k, err := v.issuerKey(c, i)
		if err == nil {
			err = k.Verify(identity.PurposeBlessing, b.Canonical(), b.sig)
		}
		if err != nil {
			errs[i] = err
			return
		}
		v.remember(v.links, b.Digest())
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	if workers <= 1 {
		for _, i := range todo {
			verify(i)
		}
		return errs
	}
	var wg sync.WaitGroup
	next := make(chan int, len(todo))
	for _, i := range todo {
		next <- i
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for i := range next {
				verify(i)
			}
		})
	}
	wg.Wait()
	return errs
}

// Verify checks chain c at time at against revocations rv (nil means none).
// It returns the verified leaf, or a *ChainError naming the first failing
// link and the reason.
func (v *Verifier) Verify(c *Chain, at time.Time, rv RevocationView) (*Verified, error) {
	if rv == nil {
		rv = NoRevocations
	}
	if c == nil || len(c.Blessings) == 0 {
		return nil, &ChainError{Reason: ReasonMalformed, Detail: "empty chain"}
	}
	if len(c.Blessings) > MaxChainDepth {
		return nil, &ChainError{Link: MaxChainDepth, Reason: ReasonDepthExceeded, Detail: fmt.Sprintf("chain has %d links, over the limit of %d", len(c.Blessings), MaxChainDepth)}
	}
	fail := func(i int, r Reason, format string, args ...any) error {
		return &ChainError{Link: i, Cal: c.Blessings[i].child.String(), Reason: r, Detail: fmt.Sprintf(format, args...)}
	}
	if c.Network != v.network {
		return nil, fail(0, ReasonWrongNetwork, "chain is for network %s, this verifier trusts %s", c.Network, v.network)
	}
	sigErrs := v.checkSignatures(c)
	for i, b := range c.Blessings {
		if b.network != v.network {
			return nil, fail(i, ReasonWrongNetwork, "blessing is for network %s, want %s", b.network, v.network)
		}
		if b.depth != i+1 {
			return nil, fail(i, ReasonMalformed, "depth is %d, want %d", b.depth, i+1)
		}
		if i == 0 && !b.IsGenesis() {
			return nil, fail(i, ReasonMalformed, "first link is not issued by the genesis root")
		}
		if i > 0 && b.parent != c.Blessings[i-1].child {
			return nil, fail(i, ReasonMalformed, "parent %s is not the previous link's child %s", b.parent, c.Blessings[i-1].child)
		}
		if err := sigErrs[i]; err != nil {
			issuer := "the genesis root"
			if i > 0 {
				issuer = "parent " + b.parent.String()
			}
			if errors.Is(err, identity.ErrBadSignature) {
				return nil, fail(i, ReasonBadSignature, "signature by %s does not verify: %v", issuer, err)
			}
			return nil, fail(i, ReasonMalformed, "issuer key: %v", err)
		}
		if i > 0 {
			if ce := checkAgainstParent(c.Blessings[i-1], b); ce != nil {
				ce.Link, ce.Cal = i, b.child.String()
				return nil, ce
			}
		}
		if b.depth > b.cons.MaxDepth {
			return nil, fail(i, ReasonDepthExceeded, "depth %d exceeds its own max_depth %d", b.depth, b.cons.MaxDepth)
		}
		if at.Before(b.cons.NotBefore) {
			return nil, fail(i, ReasonNotYetValid, "not valid before %s (checked at %s)", formatTime(b.cons.NotBefore), formatTime(at))
		}
		if !at.Before(b.cons.NotAfter) {
			return nil, fail(i, ReasonExpired, "expired at %s (checked at %s)", formatTime(b.cons.NotAfter), formatTime(at))
		}
		if rv.IsRevoked(b.child) {
			if i == len(c.Blessings)-1 {
				return nil, fail(i, ReasonRevoked, "cal %s is revoked", b.child)
			}
			return nil, fail(i, ReasonRevokedAncestor, "ancestor %s is revoked, and with it every descendant", b.child)
		}
	}
	last := len(c.Blessings) - 1
	if err := v.checkAttestation(c); err != nil {
		return nil, fail(last, ReasonBadSignature, "attestation: %v", err)
	}
	leaf := c.Leaf()
	key, err := v.keyByID(leaf.child, leaf.childKey)
	if err != nil {
		return nil, fail(last, ReasonMalformed, "child key: %v", err)
	}
	return &Verified{Cal: leaf.child, Network: v.network, Depth: leaf.depth, Permissions: leaf.perms, Constraints: leaf.cons, Key: key}, nil
}

func (v *Verifier) checkAttestation(c *Chain) error {
	if c.Attestation == nil {
		return errors.New("missing")
	}
	d := c.Digest()
	// The cache key covers both signature halves: a cached ed25519 half
	// must never vouch for an unverified ML-DSA half.
	h := sha256.New()
	h.Write(d)
	h.Write(c.Attestation.Ed25519)
	h.Write(c.Attestation.MLDSA)
	var key [32]byte
	h.Sum(key[:0])
	if v.cached(v.atts, key) {
		return nil
	}
	k, err := v.issuerKey(c, len(c.Blessings)-1)
	if err != nil {
		return err
	}
	if err := k.Verify(identity.PurposeSoulChain, d, c.Attestation); err != nil {
		return err
	}
	v.remember(v.atts, key)
	return nil
}

// VerifyBlessing checks one blessing against its issuer: the signature
// (cached like chain links) and the attenuation rules. parent is nil for a
// genesis blessing. It checks neither time nor revocation; use it to audit
// a recorded history of blessings, and Verify for a Cal's standing now.
func (v *Verifier) VerifyBlessing(parent, b *Blessing) error {
	fail := func(r Reason, format string, args ...any) error {
		return &ChainError{Link: b.depth - 1, Cal: b.child.String(), Reason: r, Detail: fmt.Sprintf(format, args...)}
	}
	if b.network != v.network {
		return fail(ReasonWrongNetwork, "blessing is for network %s, want %s", b.network, v.network)
	}
	issuer := v.root
	if parent == nil {
		if !b.IsGenesis() {
			return fail(ReasonMalformed, "no parent given for a depth-%d blessing", b.depth)
		}
	} else {
		if b.parent != parent.child || b.depth != parent.depth+1 {
			return fail(ReasonMalformed, "parent %s (depth %d) did not issue this blessing", parent.child, parent.depth)
		}
		k, err := v.keyByID(parent.child, parent.childKey)
		if err != nil {
			return fail(ReasonMalformed, "issuer key: %v", err)
		}
		issuer = k
	}
	if !v.cached(v.links, b.digest) {
		if err := issuer.Verify(identity.PurposeBlessing, b.canonical, b.sig); err != nil {
			return fail(ReasonBadSignature, "%v", err)
		}
		v.remember(v.links, b.digest)
	}
	if parent != nil {
		if ce := checkAgainstParent(parent, b); ce != nil {
			ce.Link, ce.Cal = b.depth-1, b.child.String()
			return ce
		}
	}
	return nil
}
