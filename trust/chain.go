package trust

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/strictjson"
)

// ChainVersion is the only soul-chain format version.
const ChainVersion = 1

// Chain is a soul chain: the blessings from the genesis root down to one
// Cal, and the parent's attestation over all of them.
type Chain struct {
	Version   int
	Network   identity.NetworkID
	Blessings []*Blessing
	// Attestation is the issuing parent's signature over Digest().
	Attestation *identity.Signature
}

// Leaf returns the blessing of the Cal the chain belongs to.
func (c *Chain) Leaf() *Blessing { return c.Blessings[len(c.Blessings)-1] }

// Digest is what the attestation signs: the network and every link's digest.
func (c *Chain) Digest() []byte {
	e := newCanon("calnet/soul-chain/v1\n")
	e.raw(c.Network[:])
	e.u32(uint32(len(c.Blessings)))
	for _, b := range c.Blessings {
		d := b.Digest()
		e.raw(d[:])
	}
	sum := sha256.Sum256(e.b)
	return sum[:]
}

// Extend returns the soul chain of a child blessed by the leaf of parent
// (or, with a nil parent, of the Master Cal blessed by the genesis root),
// attested by signer, the issuer of b.
func Extend(parent *Chain, b *Blessing, signer identity.Signer) (*Chain, error) {
	c := &Chain{Version: ChainVersion, Network: b.network}
	if parent != nil {
		if parent.Leaf().child != b.parent {
			return nil, fmt.Errorf("extend chain: blessing's parent %s is not the chain's leaf %s", b.parent, parent.Leaf().child)
		}
		c.Blessings = append(c.Blessings, parent.Blessings...)
	} else if !b.IsGenesis() {
		return nil, errors.New("extend chain: only a genesis blessing starts a chain")
	}
	c.Blessings = append(c.Blessings, b)
	if len(c.Blessings) > MaxChainDepth {
		return nil, fmt.Errorf("extend chain: depth %d over the limit of %d", len(c.Blessings), MaxChainDepth)
	}
	sig, err := signer.Sign(identity.PurposeSoulChain, c.Digest())
	if err != nil {
		return nil, fmt.Errorf("extend chain: %w", err)
	}
	c.Attestation = sig
	return c, nil
}

type attestationJSON struct {
	Signer    string              `json:"signer"`
	Signature *identity.Signature `json:"signature"`
}

type chainJSON struct {
	Version     int               `json:"version"`
	Network     string            `json:"network"`
	Blessings   []json.RawMessage `json:"blessings"`
	Attestation *attestationJSON  `json:"attestation"`
}

// MarshalJSON encodes the chain as soul-chain.sig.
func (c *Chain) MarshalJSON() ([]byte, error) {
	j := chainJSON{Version: c.Version, Network: c.Network.String()}
	for _, b := range c.Blessings {
		raw, err := b.MarshalJSON()
		if err != nil {
			return nil, err
		}
		j.Blessings = append(j.Blessings, raw)
	}
	signer := GenesisParent
	if leaf := c.Leaf(); !leaf.IsGenesis() {
		signer = leaf.parent.String()
	}
	j.Attestation = &attestationJSON{Signer: signer, Signature: c.Attestation}
	return json.Marshal(j)
}

// ParseChain decodes and structurally validates a soul-chain.sig. Errors
// name the failing link. It verifies no signature; use a Verifier.
func ParseChain(data []byte) (*Chain, error) {
	if len(data) > MaxChainJSON {
		return nil, &ChainError{Reason: ReasonMalformed, Detail: fmt.Sprintf("soul chain is %d bytes, over the limit of %d", len(data), MaxChainJSON)}
	}
	var j chainJSON
	if err := strictjson.Unmarshal(data, MaxChainJSON, &j); err != nil {
		return nil, &ChainError{Reason: ReasonMalformed, Detail: err.Error()}
	}
	malformed := func(link int, format string, args ...any) error {
		return &ChainError{Link: link, Reason: ReasonMalformed, Detail: fmt.Sprintf(format, args...)}
	}
	if j.Version != ChainVersion {
		return nil, malformed(0, "version: %d is not supported (want %d)", j.Version, ChainVersion)
	}
	c := &Chain{Version: j.Version}
	var err error
	if c.Network, err = identity.ParseNetworkID(j.Network); err != nil {
		return nil, malformed(0, "network: %v", err)
	}
	switch n := len(j.Blessings); {
	case n == 0:
		return nil, malformed(0, "blessings: empty")
	case n > MaxChainDepth:
		return nil, &ChainError{Link: MaxChainDepth, Reason: ReasonDepthExceeded, Detail: fmt.Sprintf("chain has %d links, over the limit of %d", n, MaxChainDepth)}
	}
	seen := make(map[identity.ID]int, len(j.Blessings))
	for i, raw := range j.Blessings {
		b, err := ParseBlessing(raw)
		if err != nil {
			return nil, malformed(i, "%v", err)
		}
		if b.depth != i+1 {
			return nil, malformed(i, "depth is %d, want %d for link %d", b.depth, i+1, i)
		}
		if i > 0 && b.parent != c.Blessings[i-1].child {
			return nil, malformed(i, "parent %s is not the previous link's child %s", b.parent, c.Blessings[i-1].child)
		}
		if prev, dup := seen[b.child]; dup {
			return nil, malformed(i, "cal %s already appears at link %d", b.child, prev)
		}
		seen[b.child] = i
		c.Blessings = append(c.Blessings, b)
	}
	last := len(c.Blessings) - 1
	if j.Attestation == nil || j.Attestation.Signature == nil {
		return nil, malformed(last, "attestation: missing")
	}
	want := GenesisParent
	if leaf := c.Leaf(); !leaf.IsGenesis() {
		want = leaf.parent.String()
	}
	if j.Attestation.Signer != want {
		return nil, malformed(last, "attestation.signer: %q, want the leaf's parent %q", j.Attestation.Signer, want)
	}
	c.Attestation = j.Attestation.Signature
	return c, nil
}
