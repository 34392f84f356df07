package calrt

import (
	"net/http"

	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/caltls"
)

// The Cal's side of the authorization table (package authz): its local
// API and console act with the Cal's blessing, its own API answers the
// control plane alone, its gateway anyone the router sends.

// workload is whoever uses the local API or the console: it acts with
// this Cal's blessing.
func (rt *Runtime) workload() authz.Principal {
	return authz.Principal{Kind: authz.Workload, Perms: rt.chain.Leaf().Permissions()}
}

// localGuard refuses, before anything reaches the control plane, what the
// Cal's blessing does not grant (the control plane checks again).
func (rt *Runtime) localGuard(_ string, rule authz.Rule, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := authz.Decide(rule, rt.workload()); !d.Allowed() {
			writeErr(w, d.Status, "cal %s does not hold %s (its blessing grants %s)", rt.ID(), rule.Perm, rt.chain.Leaf().Permissions())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveGuard admits the control plane alone: the TLS handshake already
// required its certificate (isControlPlane); the guard checks it again for
// every request, so a route served without mutual TLS answers 401.
func (rt *Runtime) serveGuard(_ string, rule authz.Rule, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := authz.Principal{Kind: authz.Anonymous}
		if peer, err := caltls.PeerOf(r.TLS, rt.network); err == nil && rt.isControlPlane(peer) == nil {
			p.Kind = authz.ControlPlane
		}
		if d := authz.Decide(rule, p); !d.Allowed() {
			writeErr(w, d.Status, "%s", d.Reason)
			return
		}
		next.ServeHTTP(w, r)
	})
}
