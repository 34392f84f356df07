package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/rules"
	"github.com/soulfra/calnet/trust"
)

// Retire rules revoke idle children. A rule does only what both its
// author and the Cal it belongs to may do: its author (who set the rules)
// must hold revoke and reach the child, the Cal must hold revoke, and the
// revocation is the Cal's own, signed by the Cal (PathSignRevocation on its API)
// and applied only if the trust state accepts it (the Cal is an ancestor
// of the child and holds revoke). The network authority's key never
// signs what a rule decided. Both are checked when the rules are set and
// again at every firing.

// checkRetireRules refuses retire rules that who (their author) or the
// Cal they belong to (named cal, holding perms) may not carry out.
func checkRetireRules(who requester, cal string, perms []string, rs []rules.Rule) *APIError {
	for i, r := range rs {
		if r.Action.Kind != rules.Retire {
			continue
		}
		if !who.admin && !who.perms.Has(trust.PermRevoke) {
			return apiErr(403, "rules[%d].action: a retire rule revokes children: %s needs the revoke permission (it holds %s)", i, who.actor, who.perms)
		}
		if !slices.Contains(perms, "revoke") {
			return apiErr(403, "rules[%d].action: %s does not hold revoke: a retirement is the Cal's own revocation", i, cal)
		}
	}
	return nil
}

// retireBy checks, at firing time, that the rule's author still may
// revoke child, and returns the refusal if not.
func (s *Server) retireBy(ctx context.Context, who requester, child string) string {
	switch {
	case who.admin:
		return ""
	case !who.perms.Has(trust.PermRevoke):
		return fmt.Sprintf("the rules' author %s does not hold revoke", who.bound)
	case who.scope != "" && (child == who.scope || !s.underCal(ctx, child, who.scope)):
		return fmt.Sprintf("the rules' author %s may revoke only below cal %s", who.bound, who.scope)
	}
	return ""
}

// calRevocation has cal sign the revocation of child (its descendant):
// the Cal's own revocation, checked to be what was asked.
func (s *Server) calRevocation(ctx context.Context, cal, child, reason string) (*trust.Revocation, error) {
	id, err := identity.ParseID(cal)
	if err != nil {
		return nil, err
	}
	var reply calproto.RevokeRequest
	if err := s.callCal(ctx, id, http.MethodPost, calproto.PathSignRevocation, calproto.SignRevocationRequest{Target: child, Reason: reason}, &reply); err != nil {
		return nil, fmt.Errorf("cal %s did not sign the retirement: %w", cal, err)
	}
	rev, err := trust.ParseRevocation(reply.Revocation)
	if err != nil {
		return nil, fmt.Errorf("cal %s signed no revocation: %w", cal, err)
	}
	if iss, ok := rev.Issuer(); !ok || iss != id || rev.Target().String() != child {
		return nil, fmt.Errorf("cal %s signed another revocation than the one asked", cal)
	}
	return rev, nil
}
