package rules

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
)

// Admission policies (FR-4.5): network-wide CEL conditions over a spawn
// request, its parent and the network. A policy whose condition holds
// denies the spawn with its message. Policies are checked by the spawn
// engine after the trust checks (chain, permissions, depth, quotas) and
// before anything is reserved or signed.

// Limits on policies.
const (
	MaxPolicies = 32
	MaxMessage  = 200
)

// Policy denies spawns that match.
type Policy struct {
	Name string `json:"name"`
	// Deny is the condition (CEL over PolicyVars) under which a spawn is
	// refused.
	Deny string `json:"deny"`
	// Message is shown with the refusal.
	Message string `json:"message"`
}

// PolicyVars are the variables a policy sees.
func PolicyVars() []Var { return slices.Clone(policyVars) }

var policyVars = []Var{
	{"request_name", "string", "the child's name (may be empty)"},
	{"request_template", "string", "the template's name (default: default)"},
	{"request_permissions", "list(string)", "permissions asked for the child"},
	{"request_cpu_millis", "int", "CPU quota asked, millicores"},
	{"request_memory_bytes", "int", "memory quota asked, bytes"},
	{"depth", "int", "the child's depth (the master Cal is at 1, its children at 2)"},
	{"actor", "string", "who asks: admin, token:<id>, cal:<id>, rule:<name>"},
	{"parent_name", "string", "the parent's name"},
	{"parent_permissions", "list(string)", "the parent's permissions"},
	{"parent_children", "int", "the parent's running children"},
	{"parent_cpu_percent", "double", "the parent's CPU use, percent of one core"},
	{"parent_memory_bytes", "double", "the parent's memory use, bytes"},
	{"network_cals", "int", "live Cals in the network"},
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
		"parent_memory_bytes": r.ParentMemoryBytes, "network_cals": int64(r.NetworkCals),
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
	deny cel.Program
}

// probes are requests a sensible policy lets through at least one of: a
// policy that denies them all denies everything.
var probes = []Request{
	{Template: "default", Depth: 1, NetworkCals: 1, ParentName: "master", ParentPermissions: []string{"spawn", "revoke", "read", "talk", "share", "admin"}, Actor: "admin"},
	{Name: "worker", Template: "default", Permissions: []string{"read"}, CPUMillis: 250, MemoryBytes: 64 << 20, Depth: 2, NetworkCals: 10, ParentName: "team", ParentPermissions: []string{"spawn", "read"}, ParentChildren: 1, ParentCPUPercent: 5, ParentMemoryBytes: 20 << 20, Actor: "token:t"},
	{Name: "x", Template: "agent", Permissions: []string{"spawn", "read", "talk"}, CPUMillis: 1000, MemoryBytes: 512 << 20, Depth: 5, NetworkCals: 500, ParentName: "p", ParentPermissions: []string{"spawn", "read", "talk"}, ParentChildren: 20, ParentCPUPercent: 90, ParentMemoryBytes: 400 << 20, Actor: "rule:r"},
}

// CompilePolicies checks a policy set: names, messages, CEL (with the
// position of an error), and that no policy denies every request.
func CompilePolicies(ps []Policy) ([]*CompiledPolicy, error) {
	if len(ps) > MaxPolicies {
		return nil, &Error{Field: "policies", Msg: fmt.Sprintf("%d policies, over the limit of %d", len(ps), MaxPolicies)}
	}
	seen := map[string]bool{}
	var out []*CompiledPolicy
	for i, p := range ps {
		field := func(f string) string { return fmt.Sprintf("policies[%d].%s", i, f) }
		switch {
		case len(p.Name) > MaxName || !nameRE.MatchString(p.Name):
			return nil, &Error{Field: field("name"), Msg: fmt.Sprintf("want lowercase letters, digits and dashes, at most %d characters", MaxName)}
		case seen[p.Name]:
			return nil, &Error{Field: field("name"), Msg: fmt.Sprintf("%q is used twice", p.Name)}
		case strings.TrimSpace(p.Message) == "" || len(p.Message) > MaxMessage:
			return nil, &Error{Field: field("message"), Msg: fmt.Sprintf("a refusal needs a message of 1 to %d characters", MaxMessage)}
		}
		seen[p.Name] = true
		prg, err := compileBool(policyEnv(), field("deny"), p.Deny)
		if err != nil {
			return nil, err
		}
		c := &CompiledPolicy{Policy: p, deny: prg}
		all := true
		for _, r := range probes {
			if denied, err := c.Denies(&r); err == nil && !denied {
				all = false
				break
			}
		}
		if all {
			return nil, &Error{Field: field("deny"), Msg: "this policy denies every request (it holds for a minimal one from the admin too); the kill switch is the way to stop all spawning"}
		}
		out = append(out, c)
	}
	return out, nil
}

// Denies evaluates the policy. An evaluation error counts as a denial:
// policies fail closed.
func (c *CompiledPolicy) Denies(r *Request) (bool, error) {
	return eval(c.deny, r.activation())
}
