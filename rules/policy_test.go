package rules

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestPolicies(t *testing.T) {
	ps, err := CompilePolicies([]Policy{
		{Name: "no-admin-below-2", Deny: `depth > 1 && "admin" in request_permissions`, Message: "admin stays near the root"},
		{Name: "big-tree", Deny: `network_cals >= 1000 && actor.startsWith("rule:")`, Message: "rules may not grow past 1,000 Cals"},
	}, 1)
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
				got, err := p.Matches(&tt.r)
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
		{"no condition", Policy{Name: "a", Message: "m"}, "policies[0].deny", "one condition"},
		{"two conditions", Policy{Name: "a", Deny: "depth > 3", RequireApproval: "depth > 4", Message: "m"}, "policies[0].deny", "one condition"},
		{"approvals on a deny", Policy{Name: "a", Deny: "depth > 3", Approvals: 2, Message: "m"}, "policies[0].approvals", "only a require_approval"},
		{"more approvals than admins", Policy{Name: "a", RequireApproval: "depth > 3", Approvals: 3, Message: "m"}, "policies[0].approvals", "there are 2 administrators"},
		{"too many approvals", Policy{Name: "a", RequireApproval: "depth > 3", Approvals: 10, Message: "m"}, "policies[0].approvals", "want 1 to 9"},
		{"bad operation", Policy{Name: "a", On: "delete", Deny: "depth > 3", Message: "m"}, "policies[0].on", "want spawn or revoke"},
		{"approval CEL", Policy{Name: "a", RequireApproval: "subtree > 3", Message: "m"}, "policies[0].require_approval", "undeclared reference to 'subtree'"},
		{"revoke deny everything", Policy{Name: "a", On: "revoke", Deny: "subtree_cals >= 1", Message: "m"}, "policies[0].deny", "denies every request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompilePolicies([]Policy{tt.p}, 2)
			var e *Error
			if !errors.As(err, &e) || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Fatalf("got %v, want %s: %q", err, tt.field, tt.msg)
			}
		})
	}
}

// TestEvaluate: deny beats approval, the approval needing most approvals
// wins, policies apply only to their operation, and a failing policy
// denies.
func TestEvaluate(t *testing.T) {
	ps, err := CompilePolicies([]Policy{
		{Name: "big-revoke", On: OpRevoke, RequireApproval: `subtree_cals >= 100`, Approvals: 2, Message: "two admins revoke big subtrees"},
		{Name: "any-revoke-by-token", On: OpRevoke, RequireApproval: `actor.startsWith("token:")`, Message: "tokens revoke with an admin's approval"},
		{Name: "grant-admin", RequireApproval: `"admin" in request_permissions`, Approvals: 3, Message: "granting admin takes three"},
		{Name: "no-deep-admin", Deny: `depth > 2 && "admin" in request_permissions`, Message: "admin stays near the root"},
		{Name: "fragile", Deny: `request_cpu_millis / (depth - 7) > 0`, Message: "divides by zero at depth 7"},
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	name := func(c *CompiledPolicy) string {
		if c == nil {
			return ""
		}
		return c.Name
	}
	for _, tt := range []struct {
		name, op         string
		r                Request
		denied, approval string
		failed           bool
	}{
		{"small revoke by admin", OpRevoke, Request{SubtreeCals: 3, Actor: "admin"}, "", "", false},
		{"big revoke by admin", OpRevoke, Request{SubtreeCals: 150, Actor: "admin"}, "", "big-revoke", false},
		{"big revoke by a token: the larger M", OpRevoke, Request{SubtreeCals: 150, Actor: "token:x"}, "", "big-revoke", false},
		{"small revoke by a token", OpRevoke, Request{SubtreeCals: 1, Actor: "token:x"}, "", "any-revoke-by-token", false},
		{"grant admin shallow", OpSpawn, Request{Depth: 2, CPUMillis: 1, Permissions: []string{"admin"}}, "", "grant-admin", false},
		{"grant admin deep: deny wins", OpSpawn, Request{Depth: 3, CPUMillis: 1, Permissions: []string{"admin"}}, "no-deep-admin", "", false},
		{"spawn policies skip revokes", OpRevoke, Request{Depth: 7, CPUMillis: 1, SubtreeCals: 1, Actor: "admin"}, "", "", false},
		{"fail closed", OpSpawn, Request{Depth: 7, CPUMillis: 1}, "fragile", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := Evaluate(ps, tt.op, &tt.r)
			if name(v.Denied) != tt.denied || name(v.Approval) != tt.approval || (v.Err != nil) != tt.failed {
				t.Fatalf("denied %q approval %q err %v; want %q %q failed=%v", name(v.Denied), name(v.Approval), v.Err, tt.denied, tt.approval, tt.failed)
			}
		})
	}
	if ps[1].Approvals != 1 {
		t.Fatalf("approvals default: %d", ps[1].Approvals)
	}
}

// FuzzCompilePolicies: any policy document (PUT /v1/policies is untrusted
// input) is either compiled or refused with an *Error naming the field,
// never a panic; a compiled set evaluates without panicking, failing
// closed on errors.
func FuzzCompilePolicies(f *testing.F) {
	f.Add([]byte(`[{"name":"a","deny":"depth > 2 && \"admin\" in request_permissions","message":"m"}]`))
	f.Add([]byte(`[{"name":"b","on":"revoke","require_approval":"subtree_cals >= 100","approvals":2,"message":"m"}]`))
	f.Add([]byte(`[{"name":"c","deny":"request_cpu_millis / (depth - 7) > 0","message":"m"},{"name":"c","deny":"true","message":"m"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ps []Policy
		if json.Unmarshal(data, &ps) != nil {
			return
		}
		cs, err := CompilePolicies(ps, 3)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Field == "" {
				t.Fatalf("%v is not an *Error with a field", err)
			}
			return
		}
		for _, op := range []string{OpSpawn, OpRevoke} {
			for _, r := range probes[op] {
				v := Evaluate(cs, op, &r)
				if v.Err != nil && v.Denied == nil {
					t.Fatalf("an evaluation error without the policy that failed")
				}
			}
		}
	})
}
