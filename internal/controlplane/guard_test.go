package controlplane

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/soulfra/calnet/internal/authz"
)

// TestServersMatchTheTable: the operator API and the Cal API register
// exactly the table's routes (authz.Mux panics on a route without an
// entry, or an entry without a route).
func TestServersMatchTheTable(t *testing.T) {
	s, err := Open(context.Background(), Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, s.store.Close()) }()
	m := s.apiMux()
	m.Handler()
	if got, want := len(m.Routes()), len(authz.Routes(authz.Operator)); got != want {
		t.Fatalf("operator API: %d routes, the table has %d", got, want)
	}
	s.calHandler()
}

func TestPrincipalKinds(t *testing.T) {
	for _, tt := range []struct {
		p    principal
		want authz.Kind
	}{
		{principal{}, authz.Anonymous},
		{principal{admin: true, name: rootAdmin}, authz.Root},
		{principal{admin: true, name: "alice"}, authz.Admin},
		{principal{token: &TokenRecord{ID: "tok_1", Permissions: []string{"read"}}}, authz.Developer},
	} {
		if got := tt.p.kind(); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.p, got, tt.want)
		}
	}
}

// TestOpenAPIFollowsTheTable: every operator route is in the OpenAPI
// document (but the dashboard's files and /docs) and every operation of
// the document is a route; each operation documents the refusals the
// table can give it: 401 unless anyone may call it, 403 when a signed-in
// principal can be refused, 404 when it names a Cal a token may not see.
func TestOpenAPIFollowsTheTable(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			pattern := strings.ToUpper(method) + " " + path
			documented[pattern] = true
			rule, ok := authz.Lookup(authz.Operator, pattern)
			if !ok {
				t.Errorf("the OpenAPI document has %s, the server has no such route", pattern)
				continue
			}
			need := []string{}
			if !slices.Contains(rule.Who, authz.Anonymous) {
				need = append(need, "401")
			}
			if rule.Perm != "" || !slices.Contains(rule.Who, authz.Developer) || !slices.Contains(rule.Who, authz.Admin) || rule.Scope == authz.Below {
				need = append(need, "403")
			}
			if rule.Scope == authz.Path || rule.Scope == authz.Below {
				need = append(need, "404")
			}
			for _, code := range need {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s: the table can refuse it with %s; the OpenAPI document does not say so", pattern, code)
				}
			}
		}
	}
	for _, e := range authz.Routes(authz.Operator) {
		if !documented[e.Pattern] && e.Pattern != "GET /" && e.Pattern != "GET /docs" {
			t.Errorf("route %s is not in the OpenAPI document", e.Pattern)
		}
	}
}
