package netdir

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/trust"
)

// State is the trust state replayed from the ledger: every blessing (each
// checked against its issuer) and every revocation (each checked against
// the lineage). It implements trust.Lineage and trust.RevocationView.
type State struct {
	Blessings   map[identity.ID]*trust.Blessing
	Children    map[identity.ID][]identity.ID
	Revocations *trust.RevocationSet
	Size        uint64
}

// Blessing implements trust.Lineage.
func (s *State) Blessing(id identity.ID) (*trust.Blessing, bool) {
	b, ok := s.Blessings[id]
	return b, ok
}

// IsRevoked implements trust.RevocationView.
func (s *State) IsRevoked(id identity.ID) bool { return s.Revocations.IsRevoked(id) }

// RevokedThrough returns the revoked ancestor (or the Cal itself) that takes
// id out of the network, if any.
func (s *State) RevokedThrough(id identity.ID) (identity.ID, bool) {
	for cur, n := id, 0; n <= trust.MaxChainDepth; n++ {
		if s.IsRevoked(cur) {
			return cur, true
		}
		b, ok := s.Blessings[cur]
		if !ok || b.IsGenesis() {
			break
		}
		cur = b.Parent()
	}
	return identity.ID{}, false
}

// Replay reads the whole ledger and rebuilds the trust state, verifying
// every blessing and revocation it holds.
func (n *Network) Replay(ctx context.Context, lg *ledger.Log) (*State, error) {
	s := &State{
		Blessings:   map[identity.ID]*trust.Blessing{},
		Children:    map[identity.ID][]identity.ID{},
		Revocations: trust.NewRevocationSet(n.verifier),
		Size:        lg.Size(),
	}
	for i := uint64(0); i < s.Size; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		raw, err := lg.Entry(i)
		if err != nil {
			return nil, err
		}
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
			var parent *trust.Blessing
			if !b.IsGenesis() {
				if parent = s.Blessings[b.Parent()]; parent == nil {
					return nil, fmt.Errorf("ledger entry %d: blessing of %s by unknown parent %s", i, b.Child(), b.Parent())
				}
			}
			if err := n.verifier.VerifyBlessing(parent, b); err != nil {
				return nil, fmt.Errorf("ledger entry %d: %w", i, err)
			}
			if _, dup := s.Blessings[b.Child()]; dup {
				return nil, fmt.Errorf("ledger entry %d: %s is blessed twice", i, b.Child())
			}
			s.Blessings[b.Child()] = b
			if parent != nil {
				s.Children[parent.Child()] = append(s.Children[parent.Child()], b.Child())
			}
		case ledger.TypeRevocation:
			r, err := trust.ParseRevocation(e.Data)
			if err != nil {
				return nil, fmt.Errorf("ledger entry %d: %w", i, err)
			}
			if err := s.Revocations.Add(r, s); err != nil {
				return nil, fmt.Errorf("ledger entry %d: %w", i, err)
			}
		}
	}
	return s, nil
}

// Resolve finds a Cal by its full ID, a unique prefix of at least 4
// characters, or its short form ("abcd-efgh").
func (s *State) Resolve(ref string) (identity.ID, error) {
	if id, err := identity.ParseID(ref); err == nil {
		return id, nil
	}
	p := strings.ReplaceAll(strings.ToLower(ref), "-", "")
	if len(p) < 4 {
		return identity.ID{}, fmt.Errorf("cal %q: give the full ID or a prefix of at least 4 characters", ref)
	}
	var matches []identity.ID
	for id := range s.Blessings {
		if strings.HasPrefix(id.String(), p) {
			matches = append(matches, id)
		}
	}
	switch len(matches) {
	case 0:
		return identity.ID{}, fmt.Errorf("cal %q: no such cal in the ledger", ref)
	case 1:
		return matches[0], nil
	}
	sort.Slice(matches, func(i, j int) bool { return matches[i].String() < matches[j].String() })
	return identity.ID{}, fmt.Errorf("cal %q is ambiguous: matches %s and %d more", ref, matches[0], len(matches)-1)
}
