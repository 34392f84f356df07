// Package authz is calnet's one authorization table. For every route of
// every surface (the operator API, the control plane's API for Cals, a
// Cal's local API, a Cal's own API, its gateway, its console, the
// Infinity Router) it names who may call the route, the permission the
// caller must hold and how the route's target is bounded by the caller's
// subtree. Every server builds its routes with a Mux, which refuses (at
// start) a route the table does not name and a table entry no route
// uses, and runs the surface's Guard before each handler: no handler is
// reached without the table's answer.
//
// The package decides; it does not authenticate or look Cals up. Each
// server authenticates its callers its own way (a bearer credential,
// mutual TLS, a socket's file mode) into a Principal, asks Decide, and
// applies the rule's Scope with its own registry.
package authz

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/soulfra/calnet/trust"
)

// Surface is one listener and its routes.
type Surface string

// The surfaces.
const (
	// Operator is the REST and WebSocket API for operators and
	// developers, the dashboard and the API docs (calnet up --addr).
	Operator Surface = "operator"
	// CalAPI is the control plane's API for Cals (run/cal.sock, mutual
	// TLS: each Cal with its identity key).
	CalAPI Surface = "cal-api"
	// Local is a Cal's local API for its own workload (/data/local.sock,
	// 0600, the Cal's uid).
	Local Surface = "local"
	// CalServe is a Cal's own API (/data/api.sock, mutual TLS), called by
	// the control plane alone.
	CalServe Surface = "cal-serve"
	// Gateway is a Cal's tier 0, reached through the Infinity Router.
	Gateway Surface = "gateway"
	// Router is the Infinity Router (calnet up --router).
	Router Surface = "router"
	// Ledger is the ledger's public tlog-tiles listener (calnet up
	// --ledger-addr): the checkpoint and tiles, read-only, no credential.
	Ledger Surface = "ledger"
	// Witness is `calnet witness run --listen`: a log submits checkpoints
	// to it (C2SP tlog-witness) and anyone reads what it cosigned.
	Witness Surface = "witness"
	// Console is a Cal's CLI server (/data/console.sock, 0600); its
	// "routes" are its commands.
	Console Surface = "console"
)

// Surfaces lists every surface, in the order the table is printed.
var Surfaces = []Surface{Operator, CalAPI, Local, CalServe, Gateway, Router, Ledger, Witness, Console}

// Kind is a kind of principal.
type Kind string

// The kinds of principal.
const (
	// Anonymous presented no credential, or one that is not valid.
	Anonymous Kind = "anonymous"
	// Root holds admin.token, written by calnet up.
	Root Kind = "root"
	// Admin is a named administrator (calnet admin add).
	Admin Kind = "admin"
	// Developer holds a developer token (calnet token create): bound to
	// one Cal's subtree and a subset of that Cal's permissions.
	Developer Kind = "developer"
	// Cal is a Cal on the control plane's Cal API, authenticated by
	// mutual TLS; it holds its blessing's permissions.
	Cal Kind = "cal"
	// Workload is whatever runs inside a Cal's sandbox, on its local API
	// or console: it acts with its Cal's blessing.
	Workload Kind = "workload"
	// ControlPlane is the control plane calling a Cal's own API over
	// mutual TLS (its certificate is signed by the genesis key).
	ControlPlane Kind = "control-plane"
)

// Kinds lists the kinds of principal.
var Kinds = []Kind{Anonymous, Root, Admin, Developer, Cal, Workload, ControlPlane}

// scoped reports whether a kind is bounded by a subtree and by a
// permission set (its token's or its blessing's).
func (k Kind) scoped() bool { return k == Developer || k == Cal || k == Workload }

// Scope is how a route's target is bounded by the caller's subtree. It
// binds scoped principals (developer tokens, Cals, workloads);
// administrators reach the whole network.
type Scope string

// The scopes.
const (
	// None: the route names and reveals no Cal.
	None Scope = "none"
	// Path: the Cal named by the {id} path value must be the principal's
	// Cal or one of its descendants; any other is "not found" (404), as
	// if it did not exist.
	Path Scope = "path"
	// Below: as Path, and the Cal must be a strict descendant (a token
	// does not revoke its own Cal): the principal's own Cal is 403.
	Below Scope = "below"
	// Filtered: the answer lists only what lies in the principal's
	// subtree (a single item outside it is 404).
	Filtered Scope = "filtered"
	// Body: the request body names Cals; the handler checks each with the
	// same subtree test (the rule's Note says which function).
	Body Scope = "body"
	// Self: the principal acts on itself (a Cal on its own record, its
	// own children, its own vault).
	Self Scope = "self"
)

// Rule is one table entry: who may call a route.
type Rule struct {
	// Who are the kinds of principal admitted; an anonymous caller is
	// refused with 401, any other with 403.
	Who []Kind
	// Perm is the permission a scoped principal must hold (its token's or
	// its blessing's); administrators and the control plane need none.
	Perm string
	// Scope bounds the route's target by the principal's subtree.
	Scope Scope
	// Note says what the handler checks beyond the table (body fields,
	// approvals), for the reader and the printed table.
	Note string
}

// Principal is who makes a request, as the table sees it.
type Principal struct {
	Kind Kind
	// Perms are a scoped principal's permissions.
	Perms trust.Permissions
}

// Decision is the table's answer for one principal on one route, before
// the scope check.
type Decision struct {
	// Status is 0 when the principal may call the route, else the HTTP
	// status of the refusal (401 or 403).
	Status int
	// Reason explains a refusal.
	Reason string
}

// Allowed reports whether the decision admits the request.
func (d Decision) Allowed() bool { return d.Status == 0 }

// Decide answers whether p may call the route of rule r: its kind must be
// admitted (401 for an anonymous caller, else 403), and a scoped
// principal must hold r.Perm (403). The caller applies r.Scope after.
// Permissions are checked before the scope, so a refusal never tells
// whether a Cal outside the principal's subtree exists.
func Decide(r Rule, p Principal) Decision {
	if !slices.Contains(r.Who, p.Kind) {
		if p.Kind == Anonymous {
			return Decision{Status: http.StatusUnauthorized, Reason: "this route needs a credential (" + kindsText(r.Who) + ")"}
		}
		return Decision{Status: http.StatusForbidden, Reason: fmt.Sprintf("a %s may not call this route (it needs %s)", p.Kind, kindsText(r.Who))}
	}
	if r.Perm != "" && p.Kind.scoped() {
		perm, err := trust.ParsePermission(r.Perm)
		if err != nil || !p.Perms.Has(perm) {
			return Decision{Status: http.StatusForbidden, Reason: fmt.Sprintf("this route needs the %s permission (held: %s)", r.Perm, orNone(p.Perms))}
		}
	}
	return Decision{}
}

// Expect is the answer a server must give p on the route of rule r when
// the route's target is (inScope) or is not in p's subtree, and is p's
// own Cal (own): 0 (allowed), 401, 403 or 404. The route-walk tests
// compare every server's answers with it.
func Expect(r Rule, p Principal, inScope, own bool) int {
	if d := Decide(r, p); !d.Allowed() {
		return d.Status
	}
	if !p.Kind.scoped() {
		return 0
	}
	switch r.Scope {
	case Path, Filtered:
		if !inScope {
			return http.StatusNotFound
		}
	case Below:
		if !inScope {
			return http.StatusNotFound
		}
		if own {
			return http.StatusForbidden
		}
	}
	return 0
}

func kindsText(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func orNone(p trust.Permissions) string {
	if p == 0 {
		return "none"
	}
	return p.String()
}
