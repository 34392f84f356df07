package rules

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
)

// Admission policies (FR-4.5): network-wide CEL conditions over a
// request (a spawn, or a revocation), its parent and the network. A policy
// whose condition holds either denies the request with its message, or
// holds it for approval by M distinct administrators. Policies are checked
// by the spawn engine after the trust checks (chain, permissions, depth,
// quotas) and before anything is reserved or signed, and by the control
// plane before a revocation.

// Limits on policies.
const (
	MaxPolicies  = 32
	MaxMessage   = 200
	MaxApprovals = 9
)

// Operations a policy applies to.
const (
	OpSpawn  = "spawn"
	OpRevoke = "revoke"
)

// Policy denies requests that match, or requires approval for them.
type Policy struct {
	Name string `json:"name"`
	// On is the operation the policy applies to: spawn (the default) or
	// revoke.
	On string `json:"on,omitempty"`
	// Deny is the condition (CEL over PolicyVars) under which a request is
	// refused.
	Deny string `json:"deny,omitempty"`
	// RequireApproval is the condition under which a request waits for
	// Approvals distinct administrators to approve it. A policy has Deny
	// or RequireApproval, not both.
	RequireApproval string `json:"require_approval,omitempty"`
	Approvals       int    `json:"approvals,omitempty"` // M; 1 when not set
	// Message is shown with the refusal or the approval request.
	Message string `json:"message"`
}

// PolicyVars are the variables a policy sees.
func PolicyVars() []Var { return slices.Clone(policyVars) }

var policyVars = []Var{
	{"request_name", "string", "the child's name (may be empty); revoke: the revoked Cal's name"},
	{"request_template", "string", "the template's name (default: default; an inline template_yaml is inline:NAME); revoke: empty"},
	{"request_permissions", "list(string)", "permissions asked for the child; revoke: the revoked Cal's"},
	{"request_cpu_millis", "int", "CPU quota asked, millicores; revoke: the revoked Cal's"},
	{"request_memory_bytes", "int", "memory quota asked, bytes; revoke: the revoked Cal's"},
	{"depth", "int", "the child's depth (the master Cal is at 1, its children at 2); revoke: the revoked Cal's"},
	{"actor", "string", "who asks: admin, admin:<name>, token:<id>, cal:<id>, rule:<name>"},
	{"parent_name", "string", "the parent's name"},
	{"parent_permissions", "list(string)", "the parent's permissions"},
	{"parent_children", "int", "the parent's running children"},
	{"parent_cpu_percent", "double", "the parent's CPU use, percent of one core"},
	{"parent_memory_bytes", "double", "the parent's memory use, bytes"},
	{"network_cals", "int", "live Cals in the network"},
	{"subtree_cals", "int", "revoke: live Cals the revocation stops (the Cal and its descendants); spawn: 0"},
}

// Request is what a policy is evaluated against.
type Request struct {
	Name, Template, Actor               string
	Permissions                         []string
	CPUMillis, MemoryBytes              int64
	Depth                               int
	ParentName                          string
	ParentPermissions                   []string
	ParentChildren                      int
	ParentCPUPercent, ParentMemoryBytes float64
	NetworkCals                         int
	SubtreeCals                         int
}

func (r *Request) activation() map[string]any {
	orEmpty := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return map[string]any{
		"request_name": r.Name, "request_template": r.Template, "request_permissions": orEmpty(r.Permissions),
		"request_cpu_millis": r.CPUMillis, "request_memory_bytes": r.MemoryBytes, "depth": int64(r.Depth),
		"actor": r.Actor, "parent_name": r.ParentName, "parent_permissions": orEmpty(r.ParentPermissions),
		"parent_children": int64(r.ParentChildren), "parent_cpu_percent": r.ParentCPUPercent,
		"parent_memory_bytes": r.ParentMemoryBytes, "network_cals": int64(r.NetworkCals), "subtree_cals": int64(r.SubtreeCals),
	}
}

var policyEnv = sync.OnceValue(func() *cel.Env {
	var opts []cel.EnvOption
	for _, v := range policyVars {
		t := map[string]*cel.Type{"string": cel.StringType, "int": cel.IntType, "double": cel.DoubleType, "list(string)": cel.ListType(cel.StringType)}[v.Type]
		opts = append(opts, cel.Variable(v.Name, t))
	}
	e, err := cel.NewEnv(opts...)
	if err != nil {
		panic(err)
	}
	return e
})

// CompiledPolicy is a policy ready to evaluate.
type CompiledPolicy struct {
	Policy
	cond cel.Program
}

// probes are requests a sensible deny policy lets through at least one
// of: a policy that denies them all denies everything.
var probes = map[string][]Request{
	OpSpawn: {
		{Template: "default", Depth: 1, NetworkCals: 1, ParentName: "master", ParentPermissions: []string{"spawn", "revoke", "read", "talk", "share", "admin"}, Actor: "admin"},
		{Name: "worker", Template: "default", Permissions: []string{"read"}, CPUMillis: 250, MemoryBytes: 64 << 20, Depth: 2, NetworkCals: 10, ParentName: "team", ParentPermissions: []string{"spawn", "read"}, ParentChildren: 1, ParentCPUPercent: 5, ParentMemoryBytes: 20 << 20, Actor: "token:t"},
		{Name: "x", Template: "agent", Permissions: []string{"spawn", "read", "talk"}, CPUMillis: 1000, MemoryBytes: 512 << 20, Depth: 5, NetworkCals: 500, ParentName: "p", ParentPermissions: []string{"spawn", "read", "talk"}, ParentChildren: 20, ParentCPUPercent: 90, ParentMemoryBytes: 400 << 20, Actor: "rule:r"},
	},
	OpRevoke: {
		{Name: "worker", Permissions: []string{"read"}, CPUMillis: 250, MemoryBytes: 64 << 20, Depth: 3, NetworkCals: 10, ParentName: "team", ParentPermissions: []string{"spawn", "revoke", "read"}, ParentChildren: 2, SubtreeCals: 1, Actor: "admin"},
		{Name: "idle", Permissions: []string{"read"}, CPUMillis: 250, MemoryBytes: 64 << 20, Depth: 4, NetworkCals: 200, ParentName: "pool", ParentPermissions: []string{"spawn", "revoke", "read"}, ParentChildren: 30, SubtreeCals: 1, Actor: "rule:trim"},
	},
}

// CompilePolicies checks a policy set: names, operations, effects,
// messages, CEL (with the position of an error), and that no policy
// denies every request. admins is the number of administrators: no policy
// may require more approvals than there are administrators.
func CompilePolicies(ps []Policy, admins int) ([]*CompiledPolicy, error) {
	if len(ps) > MaxPolicies {
		return nil, &Error{Field: "policies", Msg: fmt.Sprintf("%d policies, over the limit of %d", len(ps), MaxPolicies)}
	}
	seen := map[string]bool{}
	var out []*CompiledPolicy
	for i, p := range ps {
		field := func(f string) string { return fmt.Sprintf("policies[%d].%s", i, f) }
		if p.On == "" {
			p.On = OpSpawn
		}
		switch {
		case len(p.Name) > MaxName || !nameRE.MatchString(p.Name):
			return nil, &Error{Field: field("name"), Msg: fmt.Sprintf("want lowercase letters, digits and dashes, at most %d characters", MaxName)}
		case seen[p.Name]:
			return nil, &Error{Field: field("name"), Msg: fmt.Sprintf("%q is used twice", p.Name)}
		case p.On != OpSpawn && p.On != OpRevoke:
			return nil, &Error{Field: field("on"), Msg: fmt.Sprintf("%q: want %s or %s", p.On, OpSpawn, OpRevoke)}
		case (p.Deny == "") == (p.RequireApproval == ""):
			return nil, &Error{Field: field("deny"), Msg: "a policy has one condition: deny or require_approval"}
		case p.Deny != "" && p.Approvals != 0:
			return nil, &Error{Field: field("approvals"), Msg: "only a require_approval policy takes approvals"}
		case p.Approvals < 0 || p.Approvals > MaxApprovals:
			return nil, &Error{Field: field("approvals"), Msg: fmt.Sprintf("%d: want 1 to %d", p.Approvals, MaxApprovals)}
		case p.RequireApproval != "" && max(p.Approvals, 1) > admins:
			return nil, &Error{Field: field("approvals"), Msg: fmt.Sprintf("%d approvals needed, but there are %d administrators (calnet admin add)", max(p.Approvals, 1), admins)}
		case strings.TrimSpace(p.Message) == "" || len(p.Message) > MaxMessage:
			return nil, &Error{Field: field("message"), Msg: fmt.Sprintf("a policy needs a message of 1 to %d characters", MaxMessage)}
		}
		if p.RequireApproval != "" && p.Approvals == 0 {
			p.Approvals = 1
		}
		seen[p.Name] = true
		f, expr := field("deny"), p.Deny
		if p.RequireApproval != "" {
			f, expr = field("require_approval"), p.RequireApproval
		}
		prg, err := compileBool(policyEnv(), f, expr)
		if err != nil {
			return nil, err
		}
		c := &CompiledPolicy{Policy: p, cond: prg}
		if p.Deny != "" {
			all := true
			for _, r := range probes[p.On] {
				if denied, err := c.Matches(&r); err == nil && !denied {
					all = false
					break
				}
			}
			if all {
				return nil, &Error{Field: f, Msg: "this policy denies every request (it holds for a minimal one from the admin too); the kill switch is the way to stop all spawning"}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// Matches evaluates the policy's condition.
func (c *CompiledPolicy) Matches(r *Request) (bool, error) {
	return eval(c.cond, r.activation())
}

// Verdict is what a policy set says about one request.
type Verdict struct {
	// Denied is the first deny policy that holds (or failed: policies
	// fail closed), with Err set when it failed.
	Denied *CompiledPolicy
	Err    error
	// Approval is, among the approval policies that hold and when none
	// denies, the one requiring the most approvals.
	Approval *CompiledPolicy
}

// Evaluate applies the policies for op to r. A deny beats an approval; an
// approval policy that fails to evaluate denies.
func Evaluate(ps []*CompiledPolicy, op string, r *Request) Verdict {
	var v Verdict
	for _, c := range ps {
		if c.On != op {
			continue
		}
		hit, err := c.Matches(r)
		if err != nil {
			return Verdict{Denied: c, Err: err}
		}
		switch {
		case !hit:
		case c.Deny != "":
			return Verdict{Denied: c}
		case v.Approval == nil || c.Approvals > v.Approval.Approvals:
			v.Approval = c
		}
	}
	return v
}
