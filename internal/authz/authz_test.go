package authz

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulfra/calnet/trust"
)

var update = flag.Bool("update", false, "rewrite testdata/table.txt")

// TestTableGolden pins the whole table: a change of who may call a route
// shows in review as a change of testdata/table.txt (go test -update).
func TestTableGolden(t *testing.T) {
	var b strings.Builder
	for _, s := range Surfaces {
		fmt.Fprintf(&b, "## %s\n", s)
		for _, e := range Routes(s) {
			who := make([]string, len(e.Who))
			for i, k := range e.Who {
				who[i] = string(k)
			}
			perm := e.Perm
			if perm == "" {
				perm = "-"
			}
			fmt.Fprintf(&b, "%-44s who=%-30s perm=%-7s scope=%s\n", e.Pattern, strings.Join(who, ","), perm, e.Scope)
		}
	}
	golden := filepath.Join("testdata", "table.txt")
	if *update {
		must(t, os.WriteFile(golden, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("the authorization table changed; review it and run go test -update:\n%s", b.String())
	}
}

// TestRulesWellFormed: every rule admits someone, names a real permission
// and a known scope; a path scope has a Cal in the path; a permission
// binds only routes scoped principals may call.
func TestRulesWellFormed(t *testing.T) {
	scopes := map[Scope]bool{None: true, Path: true, Below: true, Filtered: true, Body: true, Self: true}
	for _, s := range Surfaces {
		if len(table[s]) == 0 {
			t.Errorf("surface %s has no routes", s)
		}
		for p, r := range table[s] {
			if len(r.Who) == 0 {
				t.Errorf("%s %q admits nobody", s, p)
			}
			if !scopes[r.Scope] {
				t.Errorf("%s %q: scope %q", s, p, r.Scope)
			}
			if r.Perm != "" {
				if _, err := trust.ParsePermission(r.Perm); err != nil {
					t.Errorf("%s %q: %v", s, p, err)
				}
				scoped := false
				for _, k := range r.Who {
					scoped = scoped || k.scoped()
				}
				if !scoped {
					t.Errorf("%s %q needs %s but admits no principal that holds permissions", s, p, r.Perm)
				}
			}
			if (r.Scope == Path || r.Scope == Below) && !strings.Contains(p, "{id}") {
				t.Errorf("%s %q: scope %s without {id} in the path", s, p, r.Scope)
			}
			if s == Operator && strings.Contains(p, "/cals/{id}") && r.Scope != Path && r.Scope != Below {
				t.Errorf("%s %q names a Cal but is not scoped by it", s, p)
			}
		}
	}
}

func TestDecide(t *testing.T) {
	perms := func(names ...string) trust.Permissions {
		p, err := trust.ParsePermissions(names)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		surface      Surface
		route        string
		p            Principal
		inScope, own bool
		want         int
	}{
		{Operator, "GET /v1/cals", Principal{Kind: Anonymous}, true, false, 401},
		{Operator, "GET /v1/cals", Principal{Kind: Root}, false, false, 0},
		{Operator, "GET /v1/cals/{id}", Principal{Kind: Developer, Perms: perms("read")}, false, false, 404},
		{Operator, "GET /v1/cals/{id}", Principal{Kind: Developer, Perms: perms("spawn")}, false, false, 403},
		{Operator, "GET /v1/cals/{id}", Principal{Kind: Developer, Perms: perms("read")}, true, false, 0},
		{Operator, "POST /v1/cals/{id}/revoke", Principal{Kind: Developer, Perms: perms("revoke")}, true, true, 403},
		{Operator, "POST /v1/cals/{id}/revoke", Principal{Kind: Developer, Perms: perms("revoke")}, true, false, 0},
		{Operator, "POST /v1/cals/{id}/revoke", Principal{Kind: Developer, Perms: perms("spawn", "read")}, true, false, 403},
		{Operator, "POST /v1/cals/{id}/reflections", Principal{Kind: Developer, Perms: perms("read")}, true, false, 403},
		{Operator, "POST /v1/cals/{id}/reflections", Principal{Kind: Developer, Perms: perms("share")}, true, false, 0},
		{Operator, "POST /v1/admins", Principal{Kind: Admin}, false, false, 403},
		{Operator, "POST /v1/admins", Principal{Kind: Root}, false, false, 0},
		{Operator, "GET /v1/tokens", Principal{Kind: Developer, Perms: trust.AllPermissions}, true, false, 403},
		{Operator, "GET /docs", Principal{Kind: Anonymous}, false, false, 0},
		{Operator, "GET /v1/events", Principal{Kind: Developer, Perms: perms("read")}, true, false, 0},
		{CalAPI, "POST /cal/v1/spawn", Principal{Kind: Cal, Perms: perms("read")}, true, false, 403},
		{CalAPI, "POST /cal/v1/spawn", Principal{Kind: Anonymous}, true, false, 401},
		{Local, "GET /v1/children", Principal{Kind: Workload, Perms: perms("talk")}, true, false, 403},
		{Local, "GET /v1/children", Principal{Kind: Workload, Perms: perms("read")}, true, false, 0},
		{CalServe, "POST /v1/spawn-controller/bless", Principal{Kind: Cal, Perms: trust.AllPermissions}, true, false, 403},
		{CalServe, "POST /v1/spawn-controller/bless", Principal{Kind: ControlPlane}, true, false, 0},
		{Router, "/", Principal{Kind: Anonymous}, true, false, 0},
		{Console, "spawn", Principal{Kind: Workload, Perms: perms("read")}, true, false, 403},
	} {
		t.Run(fmt.Sprintf("%s %s %s", tt.surface, tt.route, tt.p.Kind), func(t *testing.T) {
			r, ok := Lookup(tt.surface, tt.route)
			if !ok {
				t.Fatalf("no rule")
			}
			if got := Expect(r, tt.p, tt.inScope, tt.own); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// TestMuxRefusesRoutesOutsideTheTable: a route without a table entry, a
// table entry without a route, and a second registration all stop the
// server from starting.
func TestMuxRefusesRoutesOutsideTheTable(t *testing.T) {
	open := func(string, Rule, http.Handler) http.Handler { return http.NotFoundHandler() }
	mustPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(fmt.Sprint(r), want) {
				t.Errorf("%s: panic %v, want one saying %q", name, r, want)
			}
		}()
		f()
	}
	mustPanic("unknown route", "no entry in the authorization table", func() {
		NewMux(Operator, open).HandleFunc("GET /v1/secret", func(http.ResponseWriter, *http.Request) {})
	})
	mustPanic("missing route", "is not registered", func() {
		m := NewMux(Gateway, Public)
		m.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
		m.Handler()
	})
	mustPanic("twice", "registered twice", func() {
		m := NewMux(Gateway, Public)
		m.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
		m.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	})
	mustPanic("public guard on a guarded route", "does not admit anonymous", func() {
		NewMux(Local, Public).HandleFunc("GET /v1/self", func(http.ResponseWriter, *http.Request) {})
	})
}

// TestMuxRouteHeader: an admitted request carries the table entry that
// admitted it; a refused one does not.
func TestMuxRouteHeader(t *testing.T) {
	deny := func(_ string, r Rule, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Header.Get("Let-In") == "" {
				http.Error(w, "no", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, req)
		})
	}
	m := NewMux(Gateway, deny)
	for p := range table[Gateway] {
		m.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	}
	h := m.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 403 || rec.Header().Get(RouteHeader) != "" {
		t.Fatalf("refused: %d %q", rec.Code, rec.Header().Get(RouteHeader))
	}
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("Let-In", "1")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get(RouteHeader) != "GET /healthz" {
		t.Fatalf("admitted: %d %q", rec.Code, rec.Header().Get(RouteHeader))
	}
	if got := len(m.Routes()); got != len(table[Gateway]) {
		t.Fatalf("Routes: %d, want %d", got, len(table[Gateway]))
	}
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
