package controlplane

import (
	"context"
	"fmt"
	"net/http"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/rules"
)

// Admission policies: network-wide CEL conditions that deny spawns (see
// package rules). They are stored in the meta bucket, loaded at start,
// and read without a lock on every admission.

const keyPolicies = "policies"

// PoliciesDoc and PoliciesView are the policies API's wire types.
type (
	PoliciesDoc  = api.PoliciesDoc
	PoliciesView = api.PoliciesView
)

func (s *Server) loadPolicies(ctx context.Context) error {
	var doc PoliciesDoc
	err := s.store.View(ctx, func(tx store.Tx) error { return store.GetJSON(tx, bucketMeta, keyPolicies, &doc) })
	if err != nil {
		return nil // none stored yet
	}
	ps, cerr := rules.CompilePolicies(doc.Policies, s.adminCount(ctx))
	if cerr != nil {
		// Fail closed: a stored set that no longer compiles stops spawning
		// until an administrator replaces it.
		s.log.Error("stored admission policies no longer compile; spawning is refused until they are replaced", "err", cerr)
		s.policyErr.Store(&[]string{cerr.Error()}[0])
		return nil
	}
	s.policies.Store(&ps)
	return nil
}

func (s *Server) handlePoliciesGet(w http.ResponseWriter, r *http.Request, _ principal) {
	v := PoliciesView{Policies: []rules.Policy{}, Vars: rules.PolicyVars()}
	if ps := s.policies.Load(); ps != nil {
		for _, p := range *ps {
			v.Policies = append(v.Policies, p.Policy)
		}
	}
	writeJSON(w, 200, v)
}

// OpPolicies is the operation of an approval request that holds a named
// administrator's change of the policies.
const OpPolicies = "policies"

// handlePoliciesPut replaces the policies. The root does so directly; a
// named administrator too, unless a require_approval policy is in force:
// then the change is held for the quorum of the strictest one (its
// approvals, from administrators other than the requester), so that one
// administrator cannot clear the policy that needs several and then act
// alone.
func (s *Server) handlePoliciesPut(w http.ResponseWriter, r *http.Request, pr principal) {
	var doc PoliciesDoc
	if !readJSON(w, r, &doc) {
		return
	}
	if doc.Policies == nil {
		doc.Policies = []rules.Policy{}
	}
	if _, err := rules.CompilePolicies(doc.Policies, s.adminCount(r.Context())); err != nil {
		writeError(w, apiErr(400, "%v", err))
		return
	}
	if pol := s.strictestApproval(); pol != nil && pr.kind() != authz.Root {
		a := &api.Approval{Operation: OpPolicies, Policies: &doc, Actor: pr.actor()}
		held := *pol
		held.Message = fmt.Sprintf("changing the admission policies while %s is in force takes its %d approvals (%s)", pol.Name, pol.Approvals, pol.Message)
		if aerr := s.openApproval(r.Context(), a, &held); aerr != nil {
			writeError(w, aerr)
			return
		}
		writeJSON(w, 202, a)
		return
	}
	if aerr := s.setPolicies(r.Context(), doc, pr.actor()); aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, 200, doc)
}

// strictestApproval is the require_approval policy in force that needs
// the most approvals, or nil.
func (s *Server) strictestApproval() *rules.CompiledPolicy {
	ps := s.policies.Load()
	if ps == nil {
		return nil
	}
	var best *rules.CompiledPolicy
	for _, p := range *ps {
		if p.RequireApproval != "" && (best == nil || p.Approvals > best.Approvals) {
			best = p
		}
	}
	return best
}

// setPolicies compiles, stores and puts a policy set in force.
func (s *Server) setPolicies(ctx context.Context, doc PoliciesDoc, actor string) *APIError {
	ps, err := rules.CompilePolicies(doc.Policies, s.adminCount(ctx))
	if err != nil {
		return apiErr(400, "%v", err)
	}
	if err := s.store.Update(ctx, func(tx store.Tx) error { return store.PutJSON(tx, bucketMeta, keyPolicies, doc) }); err != nil {
		return apiErr(500, "policies: could not be stored")
	}
	s.policies.Store(&ps)
	s.policyErr.Store(nil)
	s.bus.publish(Event{Type: "policies.set", Actor: actor, Reason: fmt.Sprintf("%d policies", len(doc.Policies))})
	return nil
}

// checkPolicies applies the spawn policies: it returns a refusal, or the
// policy that holds the spawn for approval (unless approved, when the
// spawn was approved already). Policies fail closed: one that errors on
// this request denies it.
func (s *Server) checkPolicies(ctx context.Context, p SpawnParams, parent *CalRecord, depth, networkCals int, actor string, approved bool) (*APIError, *rules.CompiledPolicy) {
	if msg := s.policyErr.Load(); msg != nil {
		return apiErr(403, "admission policies: the stored set does not compile (%s); an administrator must replace it", *msg), nil
	}
	ps := s.policies.Load()
	if ps == nil || len(*ps) == 0 {
		return nil, nil
	}
	req := &rules.Request{
		Name: p.Name, Template: p.Template, Actor: actor, Permissions: p.Permissions, CPUMillis: p.CPUMillis, MemoryBytes: p.MemoryBytes,
		Depth: depth, ParentName: parent.Name, ParentPermissions: parent.Permissions, NetworkCals: networkCals,
	}
	req.ParentChildren = len(s.runningChildren(ctx, parent))
	req.ParentCPUPercent, req.ParentMemoryBytes = s.last(parent.ID, "cpu_percent"), s.last(parent.ID, "memory_bytes")
	aerr, pol := verdict(rules.Evaluate(*ps, rules.OpSpawn, req))
	if approved {
		pol = nil
	}
	return aerr, pol
}
