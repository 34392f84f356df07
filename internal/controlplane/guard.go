package controlplane

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/trust"
)

// The operator API's side of the authorization table (package authz):
// who a request comes from, the table's decision, and the scope check on
// the Cal a route names. Handlers run only behind guard.

// kind is the principal's kind in the authorization table.
func (p principal) kind() authz.Kind {
	switch {
	case p.admin && p.name == rootAdmin:
		return authz.Root
	case p.admin:
		return authz.Admin
	case p.token != nil:
		return authz.Developer
	}
	return authz.Anonymous
}

// perms are a developer token's permissions.
func (p principal) perms() trust.Permissions {
	if p.token == nil {
		return 0
	}
	ps, _ := trust.ParsePermissions(p.token.Permissions)
	return ps
}

func (p principal) authz() authz.Principal { return authz.Principal{Kind: p.kind(), Perms: p.perms()} }

// guard is the operator API's authz.Guard: it authenticates the request,
// applies the table's decision, and for a developer token checks that the
// Cal the path names is in the token's subtree (404 otherwise, as for a
// Cal that does not exist). The handler finds the principal with
// principalOf.
func (s *Server) guard(pattern string, rule authz.Rule, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := s.who(r)
		if d := authz.Decide(rule, p.authz()); !d.Allowed() {
			writeError(w, refusal(d, rule, p))
			return
		}
		if p.token != nil && (rule.Scope == authz.Path || rule.Scope == authz.Below) {
			rec, aerr := s.resolveScoped(r.Context(), p, r.PathValue("id"))
			if aerr != nil {
				writeError(w, aerr)
				return
			}
			if rule.Scope == authz.Below && rec.ID == p.token.Parent {
				writeError(w, apiErr(403, "authorization: token %s acts below cal %s, not on it", p.token.ID, p.token.Parent))
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// refusal words a refusal of the table for the operator API.
func refusal(d authz.Decision, rule authz.Rule, p principal) *APIError {
	switch {
	case d.Status == 401:
		return apiErr(401, "authorization: missing or wrong credential (see admin.token or calnet token create)")
	case slices.Equal(rule.Who, []authz.Kind{authz.Root}):
		return apiErr(403, "authorization: only the root administrator (the admin credential of calnet up) may do this")
	case !slices.Contains(rule.Who, authz.Developer):
		return apiErr(403, "authorization: this operation needs an administrator's credential")
	case p.token != nil:
		return apiErr(403, "authorization: token %s needs the %s permission for this (it holds %s)", p.token.ID, rule.Perm, orNone(p.token.Permissions))
	}
	return apiErr(d.Status, "authorization: %s", d.Reason)
}

// principalOf is the principal the guard admitted.
func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p
}

// withPrincipal adapts a handler that takes the principal.
func withPrincipal(h func(http.ResponseWriter, *http.Request, principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { h(w, r, principalOf(r)) }
}

// resolveScoped resolves ref (an ID, a name, or a unique ID prefix of at
// least 4 characters) among the Cals the principal may see: a Cal outside
// a token's subtree is "not found", and neither shadows a name nor makes
// a prefix ambiguous.
func (s *Server) resolveScoped(ctx context.Context, p principal, ref string) (*CalRecord, *APIError) {
	if p.admin {
		return s.resolve(ctx, ref)
	}
	notFound := apiErr(404, "cal %q: no such cal", ref)
	if rec, err := s.getCal(ctx, ref); err == nil {
		if !s.inScope(ctx, p, rec.ID) {
			return nil, notFound
		}
		return rec, nil
	}
	recs, _ := s.listCals(ctx)
	var mine []*CalRecord
	for _, c := range recs {
		if s.inScope(ctx, p, c.ID) {
			mine = append(mine, c)
		}
	}
	if c := byName(mine, ref); c != nil {
		return c, nil
	}
	pfx := strings.ReplaceAll(strings.ToLower(ref), "-", "")
	if len(pfx) < 4 {
		return nil, apiErr(404, "cal %q: no cal of that name; give the full ID or a prefix of at least 4 characters", ref)
	}
	var found *CalRecord
	for _, c := range mine {
		if strings.HasPrefix(c.ID, pfx) {
			if found != nil {
				return nil, apiErr(409, "cal %q is ambiguous", ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, notFound
	}
	return found, nil
}

// authzTable is GET /v1/authz: the routes the operator API registered,
// with their rules, and the table's other surfaces (each server checks
// its own routes against the table when it starts).
func (s *Server) authzTable(m *authz.Mux) []authz.Entry {
	out := m.Routes()
	for _, sf := range authz.Surfaces {
		if sf != authz.Operator {
			out = append(out, authz.Routes(sf)...)
		}
	}
	return out
}

// eventInScope reports whether a token may receive an event: one about a
// Cal of its subtree (the event's Cal, or for an event without one, its
// parent). Events that name no Cal (administrators' changes, the kill
// switch, limits) are the administrators'.
func (s *Server) eventInScope(ctx context.Context, p principal, e Event) bool {
	switch {
	case p.admin:
		return true
	case e.Cal != "":
		return s.inScope(ctx, p, e.Cal)
	case e.Parent != "":
		return s.inScope(ctx, p, e.Parent)
	}
	return false
}
