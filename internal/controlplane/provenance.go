package controlplane

import (
	"context"
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
// rule:NAME actor, the Cal whose rules fired (a held spawn's parent).
func (s *Server) behind(ctx context.Context, actor, cal string) string {
	for range maxProvenance {
		kind, id, _ := strings.Cut(actor, ":")
		switch {
		case actor == "admin":
			return "" // the root (see above)
		case kind == "admin":
			return id
		case kind == "token":
			actor = s.tokenCreator(ctx, id)
		case kind == "rule":
			actor = s.ruleAuthor(ctx, cal)
		case kind == "cal":
			rec, err := s.getCal(ctx, id)
			if err != nil || rec.Spawn == "" {
				return "" // the Master Cal, spawned by nobody
			}
			sp, err := s.getSpawn(ctx, rec.Spawn)
			if err != nil {
				return ""
			}
			// A Cal a rule spawned: the rules were its parent's.
			actor, cal = sp.Actor, sp.Parent
		default:
			return ""
		}
	}
	return ""
}

// tokenCreator is the actor who created the token id ("admin" or
// "admin:NAME"), or "" if the token is gone or from before tokens
// recorded it.
func (s *Server) tokenCreator(ctx context.Context, id string) string {
	ts, err := s.listTokens(ctx)
	if err != nil {
		return ""
	}
	for _, t := range ts {
		if t.ID == id {
			return t.CreatedBy
		}
	}
	return ""
}

// ruleAuthor is the principal who set cal's rules (see setRuleAuthor).
func (s *Server) ruleAuthor(ctx context.Context, cal string) string {
	author := ""
	s.store.View(ctx, func(tx store.Tx) error {
		if b, err := tx.Get(bucketRuleAuthors, cal); err == nil {
			author = string(b)
		}
		return nil
	})
	return author
}
