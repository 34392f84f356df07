package authz

import (
	"fmt"
	"net/http"
	"sort"
)

// RouteHeader is set on every answer of a route whose guard admitted the
// request: the table entry (route pattern) that admitted it. A refusal by
// the table never carries it.
const RouteHeader = "Calnet-Route"

// Guard enforces a rule before a handler runs: it authenticates the
// request into a Principal, asks Decide, applies the rule's Scope and
// calls next only when all of them admit the request; otherwise it
// answers the refusal itself. Each server supplies its own (how it
// authenticates and finds Cals differs).
type Guard func(pattern string, rule Rule, next http.Handler) http.Handler

// Mux is an http.ServeMux whose every route has a table entry and runs
// behind its surface's Guard. It is not safe for concurrent registration;
// build it, then serve Handler().
type Mux struct {
	surface Surface
	guard   Guard
	mux     *http.ServeMux
	routes  map[string]Rule
}

// NewMux returns an empty mux for surface s whose routes run behind g.
func NewMux(s Surface, g Guard) *Mux {
	if _, ok := table[s]; !ok {
		panic(fmt.Sprintf("authz: no table for surface %q", s))
	}
	return &Mux{surface: s, guard: g, mux: http.NewServeMux(), routes: map[string]Rule{}}
}

// Handle registers h for pattern behind the guard. It panics when the
// table has no entry for the pattern (a route cannot exist without one)
// or the pattern is registered twice.
func (m *Mux) Handle(pattern string, h http.Handler) {
	rule, ok := Lookup(m.surface, pattern)
	if !ok {
		panic(fmt.Sprintf("authz: route %q of the %s surface has no entry in the authorization table (internal/authz/table.go)", pattern, m.surface))
	}
	if _, dup := m.routes[pattern]; dup {
		panic(fmt.Sprintf("authz: route %q of the %s surface registered twice", pattern, m.surface))
	}
	m.routes[pattern] = rule
	admitted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(RouteHeader, pattern)
		h.ServeHTTP(w, r)
	})
	m.mux.Handle(pattern, m.guard(pattern, rule, admitted))
}

// HandleFunc registers f for pattern, as Handle.
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Handler returns the mux once every table entry of the surface has its
// route; it panics naming a table entry no route uses (a stale entry
// would describe a route that does not exist).
func (m *Mux) Handler() http.Handler {
	for p := range table[m.surface] {
		if _, ok := m.routes[p]; !ok {
			panic(fmt.Sprintf("authz: the table's route %q of the %s surface is not registered", p, m.surface))
		}
	}
	return m.mux
}

// Routes lists the registered routes and their rules, sorted by pattern.
func (m *Mux) Routes() []Entry {
	out := make([]Entry, 0, len(m.routes))
	for p, r := range m.routes {
		out = append(out, entry(m.surface, p, r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pattern < out[j].Pattern })
	return out
}

// Public is the guard of surfaces whose callers are not authenticated
// (the router, a gateway): the table must admit an anonymous caller.
func Public(pattern string, rule Rule, next http.Handler) http.Handler {
	if d := Decide(rule, Principal{Kind: Anonymous}); !d.Allowed() {
		panic(fmt.Sprintf("authz: route %q behind the public guard does not admit anonymous callers", pattern))
	}
	return next
}

// Whole guards h as the one route "/" of a surface whose handler takes
// every request as it comes (the Infinity Router: a ServeMux would clean
// and redirect its paths). It panics unless "/" is the surface's only
// table entry.
func Whole(s Surface, g Guard, h http.Handler) http.Handler {
	rule, ok := Lookup(s, "/")
	if !ok || len(table[s]) != 1 {
		panic(fmt.Sprintf("authz: the %s surface is not a single route \"/\" in the authorization table", s))
	}
	return g("/", rule, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(RouteHeader, "/")
		h.ServeHTTP(w, r)
	}))
}
