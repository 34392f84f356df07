package controlplane

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/trust"
)

// Spawn authorization. Every spawn, whoever asks (an administrator, a
// developer token, a Cal through its API, a rule, an approved request),
// is authorized by authorizeSpawn, once, on the final request: after its
// template, the defaults and any least-privilege cut have been applied.
// Whatever a template or a default adds is checked like what the request
// named. The parent's blessing, the permission matrix, depth, quotas and
// admission policies are checked after it, by admit.

// requester is who asks for a spawn and the bounds it holds.
type requester struct {
	// actor names the requester on records, events and the audit trail:
	// admin, admin:NAME, token:ID, cal:ID, rule:NAME.
	actor string
	// bound is the principal whose bounds apply: the actor itself, or for
	// a rule the principal who set it (a rule acts within its author's
	// bounds, never beyond them).
	bound string
	// admin: an operator credential, bounded only by the parent's blessing.
	admin bool
	// scope is the Cal in whose subtree the requester may spawn (a token's
	// Cal; a Cal itself). Empty for administrators.
	scope string
	// perms bounds the permissions a new Cal may hold; it must hold spawn.
	// Unbounded (all) for administrators and Cals, whose blessing bounds them.
	perms trust.Permissions
	// token is the developer token, for messages.
	token string
}

// requester is the requester of an API call made by p.
func (p principal) requester() requester {
	if p.admin {
		return requester{actor: p.actor(), bound: p.actor(), admin: true, perms: trust.AllPermissions}
	}
	perms, _ := trust.ParsePermissions(p.token.Permissions)
	return requester{actor: p.actor(), bound: p.actor(), scope: p.token.Parent, perms: perms, token: p.token.ID}
}

// calRequester is a Cal asking for children of its own (its local API).
func calRequester(id string) requester {
	return requester{actor: "cal:" + id, bound: "cal:" + id, scope: id, perms: trust.AllPermissions}
}

// requesterFor rebuilds the requester an actor string names, with its
// bounds as they are now: a held spawn carried out after approval, or a
// rule firing, is authorized again, and a token deleted since (or an
// administrator removed) no longer authorizes anything.
func (s *Server) requesterFor(ctx context.Context, bound string) (requester, error) {
	switch kind, id, _ := strings.Cut(bound, ":"); {
	case bound == "admin":
		return principal{admin: true, name: rootAdmin}.requester(), nil
	case kind == "admin":
		as, _, err := s.admins(ctx)
		if err != nil {
			return requester{}, err
		}
		if !slices.ContainsFunc(as, func(a api.Admin) bool { return a.Name == id }) {
			return requester{}, fmt.Errorf("administrator %s no longer exists", id)
		}
		return principal{admin: true, name: id}.requester(), nil
	case kind == "token":
		ts, err := s.listTokens(ctx)
		if err != nil {
			return requester{}, err
		}
		for i := range ts {
			if ts[i].ID == id {
				return principal{token: &ts[i]}.requester(), nil
			}
		}
		return requester{}, fmt.Errorf("token %s no longer exists", id)
	case kind == "cal":
		return calRequester(id), nil
	}
	return requester{}, fmt.Errorf("unknown principal %q", bound)
}

// authorizeSpawn is the one authorization decision for a spawn: the
// requester's bounds against the final, fully expanded request p (its
// template, defaults and least-privilege cut applied). Rules a template
// gives the new Cal need no more than spawn (as setting rules does) and act
// within the requester's bounds (attachRules records it as their author).
// The authorization table
// of the operator API refers here for POST /v1/cals; the Cal API, rules
// and approvals reach it through spawn.
func (s *Server) authorizeSpawn(ctx context.Context, who requester, p *SpawnParams) *APIError {
	if who.admin {
		return nil
	}
	deny := func(format string, args ...any) *APIError {
		by := who.actor
		if who.bound != who.actor {
			by += " (acting for " + who.bound + ")"
		}
		return apiErr(403, "%s: "+format, append([]any{by}, args...)...)
	}
	if !who.perms.Has(trust.PermSpawn) {
		return deny("needs spawn")
	}
	if who.scope != "" && !s.underCal(ctx, p.Parent, who.scope) {
		return deny("may spawn only in the subtree of cal %s", who.scope)
	}
	perms, err := trust.ParsePermissions(p.Permissions)
	if err != nil {
		return apiErr(400, "permissions: %v", err)
	}
	if extra := perms.Minus(who.perms); extra != 0 {
		return deny("permissions: may not grant %s (it holds %s; the request, its template and defaults asked for %s)", extra, who.perms, perms)
	}
	if len(p.Without) > 0 {
		return deny("without: only an administrator may lower a Cal's isolation")
	}
	return nil
}

// underCal reports whether cal is anc or one of its descendants.
func (s *Server) underCal(ctx context.Context, cal, anc string) bool {
	for cur, n := cal, 0; n <= trust.MaxChainDepth+1; n++ {
		if cur == anc {
			return true
		}
		rec, err := s.getCal(ctx, cur)
		if err != nil || rec.Parent == trust.GenesisParent {
			return false
		}
		cur = rec.Parent
	}
	return false
}

// bucketRuleAuthors holds, per Cal, the principal who set its rules: the
// rules' spawns are authorized within that principal's bounds.
const bucketRuleAuthors = "rule_authors"

// setRuleAuthor records who set a Cal's rules.
func setRuleAuthor(tx store.Tx, cal, bound string) error {
	return tx.Put(bucketRuleAuthors, cal, []byte(bound))
}

// requesterOfActor rebuilds the requester of a held spawn from the actor
// on its approval.
func (s *Server) requesterOfActor(ctx context.Context, actor, parent string) (requester, error) {
	if rule, ok := strings.CutPrefix(actor, "rule:"); ok {
		return s.ruleRequester(ctx, parent, rule)
	}
	return s.requesterFor(ctx, actor)
}

// ruleRequester is the requester of a spawn by one of cal's rules: named
// after the rule, bounded by whoever set the rules (rules stored before
// authors were recorded act within the Cal's own blessing).
func (s *Server) ruleRequester(ctx context.Context, cal, rule string) (requester, error) {
	// Without the author recorded, the rules act within the Cal's own
	// blessing; an author that cannot be read is no reason to act within
	// a wider one.
	bound := "cal:" + cal
	author, err := s.ruleAuthor(ctx, cal)
	if err != nil {
		return requester{}, fmt.Errorf("the rules' author: %w", err)
	}
	if author != "" {
		bound = author
	}
	who, err := s.requesterFor(ctx, bound)
	if err != nil {
		return requester{}, fmt.Errorf("the rules' author: %w", err)
	}
	who.actor = "rule:" + rule
	return who, nil
}
