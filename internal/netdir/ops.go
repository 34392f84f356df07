package netdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/trust"
)

// Keygen creates a new identity directory at dir with a fresh key sealed
// with the network's key protection. dir must not already hold a key.
func (n *Network) Keygen(dir string) (*identity.PublicKey, error) {
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil {
		return nil, fmt.Errorf("keygen: %s already holds %s; refusing to overwrite a key", dir, KeyFile)
	}
	p, err := n.protector()
	if err != nil {
		return nil, err
	}
	k, err := identity.Generate(n.opts.Rand)
	if err != nil {
		return nil, err
	}
	if err := p.writeIdentity(dir, k); err != nil {
		return nil, fmt.Errorf("keygen: %w", err)
	}
	return k.Public(), nil
}

// ReadChain reads and parses soul-chain.sig from an identity directory or
// a file path.
func ReadChain(path string) (*trust.Chain, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, SoulChainFile)
	}
	b, err := limitedfile.Read(path, trust.MaxChainJSON)
	if errors.Is(err, limitedfile.ErrNotRegular) || errors.Is(err, limitedfile.ErrTooLarge) {
		return nil, &trust.ChainError{Reason: trust.ReasonMalformed, Detail: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	return trust.ParseChain(b)
}

// BlessRequest describes a blessing to issue from the Cal in ParentDir to
// the Cal in ChildDir.
type BlessRequest struct {
	ParentDir   string
	ChildDir    string
	Permissions trust.Permissions
	// Constraints are the child's; nil fields in Narrow keep the parent's.
	Narrow Narrowing
}

// Narrowing lists the constraints to tighten; nil keeps the parent's value.
type Narrowing struct {
	MaxDepth    *int
	MaxChildren *int
	CPUMillis   *int64
	MemoryBytes *int64
	PIDs        *int64
	DiskBytes   *int64
	NotBefore   *time.Time
	NotAfter    *time.Time
}

func (w Narrowing) apply(c trust.Constraints) trust.Constraints {
	if w.MaxDepth != nil {
		c.MaxDepth = *w.MaxDepth
	}
	if w.MaxChildren != nil {
		c.MaxChildren = *w.MaxChildren
	}
	if w.CPUMillis != nil {
		c.Quota.CPUMillis = *w.CPUMillis
	}
	if w.MemoryBytes != nil {
		c.Quota.MemoryBytes = *w.MemoryBytes
	}
	if w.PIDs != nil {
		c.Quota.PIDs = *w.PIDs
	}
	if w.DiskBytes != nil {
		c.Quota.DiskBytes = *w.DiskBytes
	}
	if w.NotBefore != nil {
		c.NotBefore = *w.NotBefore
	}
	if w.NotAfter != nil {
		c.NotAfter = *w.NotAfter
	}
	return c
}

// Bless issues a blessing from the parent Cal to the child, writes the
// child's blessing.json and soul-chain.sig and records the blessing in the
// ledger. The parent's chain must verify now and grant spawn; the child
// must not be blessed already. On error nothing is written.
func (n *Network) Bless(ctx context.Context, req BlessRequest) (_ *trust.Blessing, _ *trust.Chain, err error) {
	parentChain, err := ReadChain(req.ParentDir)
	if err != nil {
		return nil, nil, fmt.Errorf("bless: parent chain: %w", err)
	}
	childKey, err := ReadPublic(req.ChildDir)
	if err != nil {
		return nil, nil, fmt.Errorf("bless: child identity (create it with `calnet keygen --out %s`): %w", req.ChildDir, err)
	}
	lg, st, err := n.openState(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer closeLedger(lg, &err)
	now := n.opts.now()
	pv, err := n.verifier.Verify(parentChain, now, st)
	if err != nil {
		return nil, nil, fmt.Errorf("bless: the parent's soul chain does not verify: %w", err)
	}
	parent := parentChain.Leaf()
	if rec, ok := st.Blessings[pv.Cal]; !ok || rec.Digest() != parent.Digest() {
		return nil, nil, fmt.Errorf("bless: the parent's blessing is not the one recorded in this network's ledger")
	}
	if !pv.Permissions.Has(trust.PermSpawn) {
		return nil, nil, fmt.Errorf("bless: parent %s does not hold spawn (it holds %s)", pv.Cal, pv.Permissions)
	}
	if _, dup := st.Blessings[childKey.ID()]; dup {
		return nil, nil, fmt.Errorf("bless: cal %s is already blessed in this network", childKey.ID())
	}
	signer, err := n.LoadKey(req.ParentDir)
	if err != nil {
		return nil, nil, fmt.Errorf("bless: parent key: %w", err)
	}
	serial := len(st.Children[pv.Cal]) + 1
	if max := parent.Constraints().MaxChildren; serial > max {
		return nil, nil, fmt.Errorf("bless: parent %s already has %d children, its max_children is %d", pv.Cal, serial-1, max)
	}
	cons := req.Narrow.apply(parent.Constraints())
	if req.Narrow.NotBefore == nil && cons.NotBefore.Before(now) {
		cons.NotBefore = now.Truncate(time.Second)
	}
	b, err := trust.Issue(signer, trust.Grant{
		Network: n.Info.Network, Parent: parent, ChildKey: childKey, Serial: serial,
		Permissions: req.Permissions, Constraints: cons, IssuedAt: now, Rand: n.opts.Rand,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("bless: %w", err)
	}
	chain, err := trust.Extend(parentChain, b, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("bless: %w", err)
	}
	bj, _ := b.MarshalJSON()
	if _, err := lg.Append(ctx, ledger.Entry{Type: ledger.TypeBlessing, Time: now, Subject: b.Child().String(), Actor: pv.Cal.String(), Data: bj}); err != nil {
		return nil, nil, fmt.Errorf("bless: ledger: %w", err)
	}
	if err := writeBlessing(req.ChildDir, b, chain); err != nil {
		return nil, nil, fmt.Errorf("bless: recorded in the ledger but writing %s failed (rerun `calnet ledger log` to recover the blessing): %w", req.ChildDir, err)
	}
	return b, chain, nil
}

// openState opens the ledger for writing and replays it. The caller closes
// the ledger.
func (n *Network) openState(ctx context.Context) (*ledger.Log, *State, error) {
	lg, err := n.OpenLedger(true)
	if err != nil {
		return nil, nil, err
	}
	st, err := n.Replay(ctx, lg)
	if err != nil {
		_ = lg.Close() // the replay's error is the one to report
		return nil, nil, err
	}
	return lg, st, nil
}

// RevokeRequest describes a revocation.
type RevokeRequest struct {
	// Target is a Cal ID, unique prefix or short form.
	Target string
	// AsDir is the identity directory of the revoking ancestor; empty means
	// the network authority (the genesis key).
	AsDir  string
	Reason string
}

// ErrAlreadyRevoked is returned when the target is already revoked.
var ErrAlreadyRevoked = errors.New("already revoked")

// Revoke signs a revocation of the target (and so of its subtree) and
// records it in the ledger. It returns the revocation and the Cals it took
// out of the network.
func (n *Network) Revoke(ctx context.Context, req RevokeRequest) (_ *trust.Revocation, _ []identity.ID, err error) {
	lg, st, err := n.openState(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer closeLedger(lg, &err)
	target, err := st.Resolve(req.Target)
	if err != nil {
		return nil, nil, fmt.Errorf("revoke: %w", err)
	}
	if through, ok := st.RevokedThrough(target); ok {
		return nil, nil, fmt.Errorf("revoke %s: %w (through %s)", target, ErrAlreadyRevoked, through)
	}
	authority := req.AsDir == ""
	keyDir := req.AsDir
	if authority {
		keyDir = filepath.Join(n.Dir, "genesis")
	}
	signer, err := n.LoadKey(keyDir)
	if err != nil {
		return nil, nil, fmt.Errorf("revoke: signing key: %w", err)
	}
	now := n.opts.now()
	r, err := trust.Revoke(signer, trust.RevokeRequest{Network: n.Info.Network, Target: target, Authority: authority, Reason: req.Reason, IssuedAt: now, Rand: n.opts.Rand})
	if err != nil {
		return nil, nil, err
	}
	if !authority {
		c, err := ReadChain(req.AsDir)
		if err != nil {
			return nil, nil, fmt.Errorf("revoke: issuer chain: %w", err)
		}
		if _, err := n.verifier.Verify(c, now, st); err != nil {
			return nil, nil, fmt.Errorf("revoke: the issuer's soul chain does not verify: %w", err)
		}
	}
	if err := st.Revocations.Check(r, st); err != nil {
		return nil, nil, fmt.Errorf("revoke: %w", err)
	}
	rj, _ := json.Marshal(r)
	actor := trust.AuthorityIssuer
	if !authority {
		actor = signer.Public().ID().String()
	}
	if _, err := lg.Append(ctx, ledger.Entry{Type: ledger.TypeRevocation, Time: now, Subject: target.String(), Actor: actor, Data: rj}); err != nil {
		return nil, nil, fmt.Errorf("revoke: ledger: %w", err)
	}
	return r, st.Subtree(target), nil
}

// Subtree lists id and all its descendants, parents before children.
func (s *State) Subtree(id identity.ID) []identity.ID {
	out := []identity.ID{id}
	for i := 0; i < len(out); i++ {
		out = append(out, s.Children[out[i]]...)
	}
	return out
}

// Verification is the result of checking an identity directory or chain.
type Verification struct {
	Verified *trust.Verified
	Chain    *trust.Chain
	// Err is the chain's failure (a *trust.ChainError) or a mismatch between
	// the files of an identity directory.
	Err error
	// RevocationsChecked is false only for VerifyPathWithoutLedger.
	RevocationsChecked bool
}

// ErrNoLedger is returned by VerifyPath when the network directory has no
// ledger to take revocations from.
var ErrNoLedger = errors.New("the network directory has no ledger: revocations cannot be checked")

// VerifyPath checks the soul chain at path (an identity directory or a
// soul-chain.sig file) against the network's root keys and the ledger's
// revocations at time at. In a directory, blessing.json and identity.pub
// must agree with the chain. A missing or damaged ledger is an error: a
// chain is never reported valid without its revocations checked.
func (n *Network) VerifyPath(ctx context.Context, path string, at time.Time) (*Verification, error) {
	return n.verifyPath(ctx, path, at, true)
}

// VerifyPathWithoutLedger is VerifyPath for a copy of a network's public
// description without its ledger: signatures, attenuation and constraints
// are checked, revocations are not.
func (n *Network) VerifyPathWithoutLedger(ctx context.Context, path string, at time.Time) (*Verification, error) {
	return n.verifyPath(ctx, path, at, false)
}

func (n *Network) verifyPath(ctx context.Context, path string, at time.Time, withLedger bool) (*Verification, error) {
	chain, err := ReadChain(path)
	if err != nil {
		var ce *trust.ChainError
		if errors.As(err, &ce) {
			return &Verification{Err: err, RevocationsChecked: withLedger}, nil
		}
		return nil, err
	}
	rv := trust.RevocationView(trust.NoRevocations)
	if withLedger {
		lg, err := n.OpenLedger(false)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w (%s)", ErrNoLedger, filepath.Join(n.Dir, "ledger"))
		}
		if err != nil {
			return nil, err
		}
		defer func() { _ = lg.Close() }() // opened to read
		st, err := n.Replay(ctx, lg)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		rv = st
	}
	v, err := n.verifier.Verify(chain, at, rv)
	res := &Verification{Verified: v, Chain: chain, Err: err, RevocationsChecked: withLedger}
	if err != nil {
		return res, nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		res.Err = checkIdentityDir(path, chain)
	}
	return res, nil
}

func checkIdentityDir(dir string, chain *trust.Chain) error {
	leaf := chain.Leaf()
	b, err := limitedfile.Read(filepath.Join(dir, BlessingFile), trust.MaxBlessingJSON)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err == nil {
		bl, err := trust.ParseBlessing(b)
		if err != nil {
			return fmt.Errorf("%s: %w", BlessingFile, err)
		}
		if bl.Digest() != leaf.Digest() {
			return fmt.Errorf("%s is not the last blessing of %s", BlessingFile, SoulChainFile)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, PublicFile)); err == nil {
		pk, err := ReadPublic(dir)
		if err != nil {
			return err
		}
		if pk.ID() != leaf.Child() {
			return fmt.Errorf("%s is cal %s but the chain blesses %s", PublicFile, pk.ID(), leaf.Child())
		}
	}
	return nil
}

// closeLedger closes a ledger opened for writing (which makes its head
// durable) and reports a failure through *err unless an earlier error is
// already there.
func closeLedger(lg *ledger.Log, err *error) {
	if cerr := lg.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("ledger: close: %w", cerr)
	}
}
