package rules

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicies(t *testing.T) {
	ps, err := CompilePolicies([]Policy{
		{Name: "no-admin-below-2", Deny: `depth > 1 && "admin" in request_permissions`, Message: "admin stays near the root"},
		{Name: "big-tree", Deny: `network_cals >= 1000 && actor.startsWith("rule:")`, Message: "rules may not grow past 1,000 Cals"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		r    Request
		deny []bool
	}{
		{"plain", Request{Depth: 3, Permissions: []string{"read"}, NetworkCals: 5, Actor: "admin"}, []bool{false, false}},
		{"admin deep", Request{Depth: 2, Permissions: []string{"admin", "read"}, NetworkCals: 5}, []bool{true, false}},
		{"admin shallow", Request{Depth: 1, Permissions: []string{"admin"}}, []bool{false, false}},
		{"rule at the cap", Request{Depth: 1, NetworkCals: 1000, Actor: "rule:grow"}, []bool{false, true}},
		{"admin at the cap", Request{Depth: 1, NetworkCals: 1000, Actor: "admin"}, []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, p := range ps {
				got, err := p.Denies(&tt.r)
				if err != nil || got != tt.deny[i] {
					t.Fatalf("policy %s: %v %v, want %v", p.Name, got, err, tt.deny[i])
				}
			}
		})
	}
}

func TestPolicyErrors(t *testing.T) {
	tests := []struct {
		name  string
		p     Policy
		field string
		msg   string
	}{
		{"unknown variable", Policy{Name: "a", Deny: "parent.depth > 3", Message: "m"}, "policies[0].deny", "undeclared reference to 'parent'"},
		{"denies everything", Policy{Name: "a", Deny: "true", Message: "m"}, "policies[0].deny", "denies every request"},
		{"denies everything, disguised", Policy{Name: "a", Deny: "depth >= 0", Message: "m"}, "policies[0].deny", "denies every request"},
		{"no message", Policy{Name: "a", Deny: "depth > 3"}, "policies[0].message", "needs a message"},
		{"not bool", Policy{Name: "a", Deny: "depth", Message: "m"}, "policies[0].deny", "want a bool"},
		{"bad name", Policy{Name: "A B", Deny: "depth > 3", Message: "m"}, "policies[0].name", "lowercase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompilePolicies([]Policy{tt.p})
			var e *Error
			if !errors.As(err, &e) || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Fatalf("got %v, want %s: %q", err, tt.field, tt.msg)
			}
		})
	}
}
