package controlplane

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/trust"
)

// Provenance of held requests. A named administrator never approves or
// rejects a request it is behind: one it made, or one made by a developer
// token it created, by rules it set, or by a Cal it spawned (whose
// workload it chose), directly or through any of these. Otherwise one
// administrator could create a token with spawn and admin, spawn an admin
// Cal through it, and approve the held request alone: a quorum of one.
//
// The root is behind only its own requests: it holds the network and may
// change the admission policies directly, so the quorum does not bind it,
// and most Cals are its (it spawns them while it sets the network up).

// maxProvenance bounds the walk from a request to the administrator behind
// it: each step goes to a token's creator, a rule's author or a Cal's
// spawner, and Cals are at most trust.MaxChainDepth deep.
const maxProvenance = 4 * (trust.MaxChainDepth + 1)

// behind returns the named administrator behind a request made by actor,
// or "" when there is none (the root, or a token from before tokens
// recorded their creator). cal is the Cal the request concerns: for a
// rule:NAME actor, the Cal whose rules fired (a held spawn's parent). A
// step that cannot be read is an error, never "nobody": that would let
// the administrator behind it approve its own request.
func (s *Server) behind(ctx context.Context, actor, cal string) (string, error) {
	var err error
	for range maxProvenance {
		kind, id, _ := strings.Cut(actor, ":")
		switch {
		case actor == "admin":
			return "", nil // the root (see above)
		case kind == "admin":
			return id, nil
		case kind == "token":
			if actor, err = s.tokenCreator(ctx, id); err != nil {
				return "", err
			}
		case kind == "rule":
			if actor, err = s.ruleAuthor(ctx, cal); err != nil {
				return "", err
			}
		case kind == "cal":
			rec, err := s.getCal(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return "", nil // gone: nothing it asked for is held
			}
			if err != nil {
				return "", fmt.Errorf("cal %s: %w", id, err)
			}
			if rec.Spawn == "" {
				return "", nil // the Master Cal, spawned by nobody
			}
			sp, err := s.getSpawn(ctx, rec.Spawn)
			if errors.Is(err, store.ErrNotFound) {
				return "", nil
			}
			if err != nil {
				return "", fmt.Errorf("spawn %s of cal %s: %w", rec.Spawn, id, err)
			}
			// A Cal a rule spawned: the rules were its parent's.
			actor, cal = sp.Actor, sp.Parent
		default:
			return "", nil
		}
	}
	return "", nil
}

// tokenCreator is the actor who created the token id ("admin" or
// "admin:NAME"), or "" if the token is gone or from before tokens
// recorded it.
func (s *Server) tokenCreator(ctx context.Context, id string) (string, error) {
	ts, err := s.listTokens(ctx)
	if err != nil {
		return "", fmt.Errorf("creator of token %s: %w", id, err)
	}
	for _, t := range ts {
		if t.ID == id {
			return t.CreatedBy, nil
		}
	}
	return "", nil
}

// ruleAuthor is the principal who set cal's rules (see setRuleAuthor),
// or "" for rules stored before authors were recorded.
func (s *Server) ruleAuthor(ctx context.Context, cal string) (string, error) {
	var b []byte
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		b, err = tx.Get(bucketRuleAuthors, cal)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("rule author of cal %s: %w", cal, err)
	}
	return string(b), nil
}
