// Package chainproof exports a Cal's soul chain as a self-contained proof
// bundle and verifies one offline: every link's blessing with its
// inclusion proof in a witness-cosigned ledger checkpoint, the revocations
// of any link with theirs, and every entry of the checkpoint's tree, from
// which the verifier recomputes the root and so proves that no other
// revocation of a link exists up to that checkpoint.
//
// An RFC 6962 log proves that an entry is in it, not that one is absent:
// absence up to a checkpoint is shown only by every entry the tree holds
// (a revocation may sit anywhere after the Master Cal's blessing, entry 1),
// so a bundle grows with the ledger (about 1-8 KB per entry). Nothing newer
// than the checkpoint is covered: a verifier that needs fresher news asks
// for a newer bundle, cosigned by the witnesses it trusts.
package chainproof

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/trust"
)

// Format names the bundle format.
const Format = "calnet-chain-proof/v1"

// Limits on a bundle.
const (
	// MaxBundleSize bounds an encoded bundle.
	MaxBundleSize = 256 << 20
	// MaxEntries bounds the entries of the revocation scan.
	MaxEntries = 1 << 20
	// maxLinks bounds the chain (trust's depth limit is lower).
	maxLinks = 64
	// maxRevocations bounds the revocation proofs.
	maxRevocations = 64
)

// Proven is a ledger entry with its inclusion proof in the bundle's
// checkpoint.
type Proven struct {
	Index uint64   `json:"index"`
	Entry []byte   `json:"entry"`
	Proof [][]byte `json:"proof"`
}

// Bundle is an exported chain proof.
type Bundle struct {
	Format string `json:"format"`
	// Cal is the Cal the chain leads to.
	Cal string `json:"cal"`
	// Checkpoint is the cosigned checkpoint note every proof leads to.
	Checkpoint string `json:"checkpoint"`
	// Links are the blessing entries from the Master Cal's (blessed by the
	// genesis root) down to Cal's.
	Links []Proven `json:"links"`
	// Revocations are the revocation entries of any link.
	Revocations []Proven `json:"revocations"`
	// Entries are every entry of the checkpoint's tree, in order: the
	// proof that no other revocation of a link exists up to it.
	Entries [][]byte `json:"entries"`
}

// Errors of verification, each wrapped with the detail.
var (
	ErrMalformed   = errors.New("malformed chain proof")
	ErrNotIncluded = errors.New("entry not included in the checkpoint")
	ErrChain       = errors.New("broken soul chain")
	ErrRevoked     = errors.New("revoked")
	ErrScan        = errors.New("revocation scan does not match the checkpoint")
)

// Parse decodes a bundle strictly and checks its limits.
func Parse(b []byte) (*Bundle, error) {
	var out Bundle
	if err := strictjson.Unmarshal(b, MaxBundleSize, &out); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case out.Format != Format:
		return nil, fmt.Errorf("%w: format %q, want %q", ErrMalformed, out.Format, Format)
	case len(out.Links) == 0 || len(out.Links) > maxLinks:
		return nil, fmt.Errorf("%w: links: %d, want 1..%d", ErrMalformed, len(out.Links), maxLinks)
	case len(out.Revocations) > maxRevocations:
		return nil, fmt.Errorf("%w: revocations: %d, over the limit of %d", ErrMalformed, len(out.Revocations), maxRevocations)
	case len(out.Entries) > MaxEntries:
		return nil, fmt.Errorf("%w: entries: %d, over the limit of %d", ErrMalformed, len(out.Entries), MaxEntries)
	case len(out.Checkpoint) > ledger.MaxCheckpointSize:
		return nil, fmt.Errorf("%w: checkpoint: over the limit of %d bytes", ErrMalformed, ledger.MaxCheckpointSize)
	}
	for i, p := range slices.Concat(out.Links, out.Revocations) {
		if len(p.Proof) > ledger.MaxProofHashes {
			return nil, fmt.Errorf("%w: proof %d: %d hashes, over the limit of %d", ErrMalformed, i, len(p.Proof), ledger.MaxProofHashes)
		}
	}
	return &out, nil
}

// Log is what Export reads: a verified remote log (*tiles.Client).
type Log interface {
	Checkpoint(ctx context.Context) (*ledger.Cosigned, error)
	Inclusion(ctx context.Context, cp *ledger.Checkpoint, index uint64) (*ledger.InclusionProof, error)
	Entries(ctx context.Context, cp *ledger.Checkpoint, from, to uint64) ([][]byte, error)
}

// Export builds the bundle of cal from the log's latest checkpoint.
func Export(ctx context.Context, log Log, cal identity.ID) (*Bundle, error) {
	cp, err := log.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if cp.Size > MaxEntries {
		return nil, fmt.Errorf("the ledger holds %d entries, over the bundle's limit of %d", cp.Size, MaxEntries)
	}
	entries, err := log.Entries(ctx, cp.Checkpoint, 0, cp.Size)
	if err != nil {
		return nil, err
	}
	bless := map[identity.ID]uint64{}
	var blessings = map[identity.ID]*trust.Blessing{}
	revs := map[identity.ID][]uint64{}
	for i, raw := range entries {
		e, err := ledger.DecodeEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("ledger entry %d: %w", i, err)
		}
		switch e.Type {
		case ledger.TypeBlessing:
			b, err := trust.ParseBlessing(e.Data)
			if err != nil {
				return nil, fmt.Errorf("ledger entry %d: %w", i, err)
			}
			bless[b.Child()], blessings[b.Child()] = uint64(i), b
		case ledger.TypeRevocation:
			r, err := trust.ParseRevocation(e.Data)
			if err != nil {
				return nil, fmt.Errorf("ledger entry %d: %w", i, err)
			}
			revs[r.Target()] = append(revs[r.Target()], uint64(i))
		}
	}
	var chain []uint64
	for id := cal; ; {
		i, ok := bless[id]
		if !ok {
			return nil, fmt.Errorf("cal %s: no blessing in the ledger's %d entries", id, cp.Size)
		}
		chain = append(chain, i)
		b := blessings[id]
		if b.IsGenesis() {
			break
		}
		if len(chain) > maxLinks {
			return nil, fmt.Errorf("cal %s: chain deeper than %d", cal, maxLinks)
		}
		id = b.Parent()
	}
	slices.Reverse(chain)
	out := &Bundle{Format: Format, Cal: cal.String(), Checkpoint: string(cp.Note), Entries: entries, Links: []Proven{}, Revocations: []Proven{}}
	prove := func(i uint64) (Proven, error) {
		p, err := log.Inclusion(ctx, cp.Checkpoint, i)
		if err != nil {
			return Proven{}, err
		}
		return Proven{Index: i, Entry: entries[i], Proof: p.Hashes}, nil
	}
	for _, i := range chain {
		p, err := prove(i)
		if err != nil {
			return nil, err
		}
		out.Links = append(out.Links, p)
		b, _ := trust.ParseBlessing(mustData(entries[i]))
		for _, r := range revs[b.Child()] {
			p, err := prove(r)
			if err != nil {
				return nil, err
			}
			out.Revocations = append(out.Revocations, p)
		}
	}
	return out, nil
}

func mustData(raw []byte) []byte {
	e, err := ledger.DecodeEntry(raw)
	if err != nil {
		return nil
	}
	return e.Data
}

// Config is what an offline verifier trusts.
type Config struct {
	// RootKeys, Origin and LogKey are the network's (network.json).
	RootKeys *identity.PublicKey
	Origin   string
	LogKey   *identity.PublicKey
	// Witnesses is the cosignature policy the checkpoint must meet.
	Witnesses ledger.WitnessPolicy
}

// Result is a verified bundle's verdict.
type Result struct {
	Cal   identity.ID
	Depth int
	// Checkpoint is the cosigned checkpoint the proofs lead to.
	Checkpoint *ledger.Cosigned
	// Revoked is set when a link was revoked (RevokedCal, at RevokedAt, the
	// ledger index of the revocation); Verify then also returns ErrRevoked.
	Revoked    bool
	RevokedCal identity.ID
	RevokedAt  uint64
	// Scanned is true when every entry up to the checkpoint was checked
	// for revocations of a link (always, for bundles this package writes).
	Scanned bool
}

// Verify checks a bundle offline against cfg: the checkpoint's signatures
// and cosignatures, every link's and revocation's inclusion, the chain's
// signatures and attenuation from the genesis root down to the Cal, and
// the scan. A revoked Cal gives its Result and an error wrapping
// ErrRevoked; any other failure a nil Result.
func Verify(b *Bundle, cfg Config) (*Result, error) {
	cp, err := ledger.VerifyCosigned([]byte(b.Checkpoint), cfg.Origin, cfg.LogKey, cfg.Witnesses)
	if err != nil {
		return nil, err
	}
	included := func(what string, p Proven) (*ledger.Entry, error) {
		ip := &ledger.InclusionProof{Index: p.Index, TreeSize: cp.Size, LeafHash: ledger.LeafHash(p.Entry), Hashes: p.Proof}
		if p.Index >= cp.Size {
			return nil, fmt.Errorf("%w: %s: index %d is beyond the checkpoint's size %d", ErrNotIncluded, what, p.Index, cp.Size)
		}
		if err := ip.Verify(cp.Root); err != nil {
			return nil, fmt.Errorf("%w: %s (entry %d): %w", ErrNotIncluded, what, p.Index, err)
		}
		e, err := ledger.DecodeEntry(p.Entry)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
		}
		return e, nil
	}
	v := trust.NewVerifier(cfg.RootKeys)
	lin := lineage{}
	var parent *trust.Blessing
	inChain := map[identity.ID]bool{}
	for i, l := range b.Links {
		what := fmt.Sprintf("link %d", i)
		e, err := included(what, l)
		if err != nil {
			return nil, err
		}
		if e.Type != ledger.TypeBlessing {
			return nil, fmt.Errorf("%w: %s: entry %d is a %s, not a blessing", ErrChain, what, l.Index, e.Type)
		}
		bl, err := trust.ParseBlessing(e.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrChain, what, err)
		}
		if err := v.VerifyBlessing(parent, bl); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrChain, what, err)
		}
		lin[bl.Child()] = bl
		inChain[bl.Child()] = true
		parent = bl
	}
	if parent.Child().String() != b.Cal {
		return nil, fmt.Errorf("%w: the chain leads to %s, not %s", ErrChain, parent.Child(), b.Cal)
	}
	res := &Result{Cal: parent.Child(), Depth: parent.Depth(), Checkpoint: cp}
	revs := trust.NewRevocationSet(v)
	for i, r := range b.Revocations {
		what := fmt.Sprintf("revocation %d", i)
		e, err := included(what, r)
		if err != nil {
			return nil, err
		}
		if e.Type != ledger.TypeRevocation {
			return nil, fmt.Errorf("%w: %s: entry %d is a %s", ErrMalformed, what, r.Index, e.Type)
		}
		rv, err := trust.ParseRevocation(e.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
		}
		if !inChain[rv.Target()] {
			return nil, fmt.Errorf("%w: %s: of %s, not a link of the chain", ErrMalformed, what, rv.Target())
		}
		if err := revs.Check(rv, lin); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
		}
		if !res.Revoked || r.Index < res.RevokedAt {
			res.Revoked, res.RevokedCal, res.RevokedAt = true, rv.Target(), r.Index
		}
	}
	if len(b.Entries) > 0 {
		if err := scan(b, cp.Checkpoint, inChain, res); err != nil {
			return nil, err
		}
		res.Scanned = true
	}
	if res.Revoked {
		return res, fmt.Errorf("%w: %s was revoked (ledger entry %d)", ErrRevoked, res.RevokedCal, res.RevokedAt)
	}
	return res, nil
}

// scan recomputes the checkpoint's root from every entry and checks that
// each revocation of a link among them is in the bundle's revocations.
func scan(b *Bundle, cp *ledger.Checkpoint, inChain map[identity.ID]bool, res *Result) error {
	if uint64(len(b.Entries)) != cp.Size {
		return fmt.Errorf("%w: %d entries for a tree of %d", ErrScan, len(b.Entries), cp.Size)
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	listed := map[uint64]bool{}
	for _, p := range b.Revocations {
		listed[p.Index] = true
	}
	for i, raw := range b.Entries {
		if err := r.Append(rfc6962.DefaultHasher.HashLeaf(raw), nil); err != nil {
			return fmt.Errorf("%w: %w", ErrScan, err)
		}
		e, err := ledger.DecodeEntry(raw)
		if err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrScan, i, err)
		}
		if e.Type != ledger.TypeRevocation {
			continue
		}
		rv, err := trust.ParseRevocation(e.Data)
		if err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrScan, i, err)
		}
		if inChain[rv.Target()] && !listed[uint64(i)] {
			return fmt.Errorf("%w: entry %d revokes %s, a link of the chain, but the bundle does not list it", ErrScan, i, rv.Target())
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrScan, err)
	}
	if cp.Size == 0 {
		root = rfc6962.DefaultHasher.EmptyRoot()
	}
	if !bytes.Equal(root, cp.Root) {
		return fmt.Errorf("%w: its entries hash to %x, the checkpoint's root is %x", ErrScan, root, cp.Root)
	}
	return nil
}

// lineage is the chain's blessings, by Cal.
type lineage map[identity.ID]*trust.Blessing

func (l lineage) Blessing(id identity.ID) (*trust.Blessing, bool) {
	b, ok := l[id]
	return b, ok
}
