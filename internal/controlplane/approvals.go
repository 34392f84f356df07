package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/rules"
	"github.com/soulfra/calnet/trust"
)

// Approvals: a require_approval policy holds a spawn or a revocation
// until Required distinct administrators approve it (the requester, if an
// administrator, does not count), one rejects it, or it expires. A held
// spawn keeps its spawn record in state awaiting_approval; once approved
// it runs the whole admission again (deny policies, limits, quotas), only
// the approval policies are not asked twice.

const (
	bucketApprovals = "approvals"
	// ApprovalTTL is how long a request waits for its approvals.
	ApprovalTTL = 24 * time.Hour
	// SpawnAwaitingApproval is the state of a spawn held for approval.
	SpawnAwaitingApproval = "awaiting_approval"
	maxComment            = 500
	maxApprovalsListed    = 500
	// keepResolved is how long resolved requests stay listed; the audit
	// trail keeps every step for good.
	keepResolved = 30 * 24 * time.Hour
)

// requesterAdmin names the administrator behind an actor, if any.
func requesterAdmin(actor string) (string, bool) {
	if actor == "admin" {
		return rootAdmin, true
	}
	n, ok := strings.CutPrefix(actor, "admin:")
	return n, ok
}

// behindNote names the administrator behind a request, for messages.
func behindNote(a *api.Approval) string {
	if a.Behind == "" {
		return ""
	}
	return " and " + a.Behind + ", who is behind " + a.Actor
}

// isAdmin reports whether name is a named administrator now.
func (s *Server) isAdmin(ctx context.Context, name string) bool {
	as, _, err := s.admins(ctx)
	if err != nil {
		return true // counted out: a refusal is safer than a quorum short of one
	}
	return slices.ContainsFunc(as, func(a api.Admin) bool { return a.Name == name && !a.Root })
}

// openApproval stores a new approval request for a held operation.
func (s *Server) openApproval(ctx context.Context, a *api.Approval, pol *rules.CompiledPolicy) *APIError {
	eligible := s.adminCount(ctx)
	if _, isAdmin := requesterAdmin(a.Actor); isAdmin {
		eligible--
	} else {
		behind, err := s.behind(ctx, a.Actor, a.Cal)
		if err != nil {
			s.log.Error("approvals: who is behind a request", "actor", a.Actor, "cal", a.Cal, "err", err)
			return apiErr(500, "approvals: who is behind the request could not be read")
		}
		if a.Behind = behind; behind != "" && s.isAdmin(ctx, behind) {
			eligible--
		}
	}
	if pol.Approvals > eligible {
		return apiErr(403, "policy %s: %s; it needs %d approvals from administrators other than the requester%s, and there are %d (calnet admin add)", pol.Name, pol.Message, pol.Approvals, behindNote(a), eligible)
	}
	if a.Request != nil && a.Request.Permissions == nil {
		// A request that named none (a rule's, or one taking its
		// template's): an empty list, as the API document has it, not null.
		a.Request.Permissions = []string{}
	}
	now := s.now()
	a.ID, a.Policy, a.Message, a.Required = newID("apr_"), pol.Name, pol.Message, pol.Approvals
	a.State, a.Approvals, a.CreatedAt, a.ExpiresAt, a.UpdatedAt = api.ApprovalPending, []api.Vote{}, now, now.Add(ApprovalTTL), now
	if err := s.putApproval(ctx, a); err != nil {
		return apiErr(500, "approvals: could not store the request")
	}
	s.bus.publish(Event{Type: "approval.requested", Cal: a.Cal, Spawn: a.Spawn, Actor: a.Actor, State: a.State,
		Reason: fmt.Sprintf("%s %s: policy %s: %s (%d approval(s) needed)", a.ID, a.Operation, a.Policy, a.Message, a.Required)})
	return nil
}

func (s *Server) putApproval(ctx context.Context, a *api.Approval) error {
	return s.store.Update(ctx, func(tx store.Tx) error { return store.PutJSON(tx, bucketApprovals, a.ID, a) })
}

func (s *Server) getApproval(ctx context.Context, id string) (*api.Approval, error) {
	var a api.Approval
	err := s.store.View(ctx, func(tx store.Tx) error { return store.GetJSON(tx, bucketApprovals, id, &a) })
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// listApprovals returns the approvals, pending first, newest first.
func (s *Server) listApprovals(ctx context.Context) ([]*api.Approval, error) {
	var out []*api.Approval
	err := s.store.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(bucketApprovals, "", func(k string, _ []byte) error {
			var a api.Approval
			if store.GetJSON(tx, bucketApprovals, k, &a) == nil {
				out = append(out, &a)
			}
			return nil
		})
	})
	for _, a := range out {
		// One that cannot be recorded expired is listed as stored
		// (pending); expire logged why.
		_ = s.expire(ctx, a)
	}
	sort.SliceStable(out, func(i, j int) bool {
		pi, pj := out[i].State == api.ApprovalPending, out[j].State == api.ApprovalPending
		if pi != pj {
			return pi
		}
		return out[i].CreatedAt.After(out[j].CreatedAt)
	})
	return out, err
}

// expire ends a pending request past its time, and the spawn it held.
// The caller holds no lock; votes take approvalMu, so expiry and a vote
// cannot both resolve one request. If the expiry cannot be stored, a is
// left as stored (pending), the failure is logged and returned: a vote
// must not then count on an expired request.
func (s *Server) expire(ctx context.Context, a *api.Approval) error {
	if a.State != api.ApprovalPending || !s.now().After(a.ExpiresAt) {
		return nil
	}
	s.approvalMu.Lock()
	defer s.approvalMu.Unlock()
	cur, err := s.getApproval(ctx, a.ID)
	if err != nil || cur.State != api.ApprovalPending {
		return nil // gone (forgotten) or resolved meanwhile: the vote says so
	}
	next := *cur
	next.State, next.UpdatedAt = api.ApprovalExpired, s.now()
	next.Result = fmt.Sprintf("expired after %v with %d of %d approvals", ApprovalTTL, len(next.Approvals), next.Required)
	if err := s.putApproval(ctx, &next); err != nil {
		s.unrecorded(err, "the expiry of an approval request; it stays pending", "approval", a.ID, "cal", a.Cal)
		return stateErr(err, "approval %s: its expiry", a.ID)
	}
	*a = next
	s.bus.publish(Event{Type: "approval.expired", Cal: a.Cal, Spawn: a.Spawn, Actor: a.Actor, State: a.State, Reason: a.ID + ": " + a.Result})
	s.endHeldSpawn(ctx, a, "approval "+a.ID+" "+a.Result)
	return nil
}

// endHeldSpawn rejects the spawn a resolved request held. It runs once
// the request's end is stored; a spawn record that cannot follow is
// logged (recovery leaves a held spawn waiting, and the request it waits
// for is resolved, so an operator sees both).
func (s *Server) endHeldSpawn(ctx context.Context, a *api.Approval, reason string) {
	if a.Spawn == "" {
		return
	}
	sp, err := s.getSpawn(ctx, a.Spawn)
	if err != nil || sp.State != SpawnAwaitingApproval {
		return
	}
	s.unrecorded(s.finishSpawn(ctx, sp, SpawnRejected, reason), "the rejection of a held spawn", "spawn", sp.ID, "approval", a.ID)
}

// expireApprovals sweeps pending requests past their time and forgets
// requests resolved more than keepResolved ago (every collection).
func (s *Server) expireApprovals(ctx context.Context) {
	as, err := s.listApprovals(ctx)
	if err != nil {
		return
	}
	var old []string
	for _, a := range as {
		if a.State != api.ApprovalPending && s.now().Sub(a.UpdatedAt) > keepResolved {
			old = append(old, a.ID)
		}
	}
	if len(old) == 0 {
		return
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		for _, id := range old {
			if err := tx.Delete(bucketApprovals, id); err != nil {
				return err
			}
		}
		return nil
	})
	// Nothing is lost: the resolved requests stay listed until a later
	// collection forgets them.
	if err != nil {
		s.log.Warn("forgetting resolved approval requests; they stay listed", "requests", len(old), "err", err)
	}
}

// mayView: administrators see every request, a token the ones it made.
func mayView(pr principal, a *api.Approval) bool {
	return pr.admin || (pr.token != nil && a.Actor == "token:"+pr.token.ID)
}

func (s *Server) handleApprovalsList(w http.ResponseWriter, r *http.Request, pr principal) {
	as, err := s.listApprovals(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	state := r.URL.Query().Get("state")
	out := []*api.Approval{}
	for _, a := range as {
		if mayView(pr, a) && (state == "" || a.State == state) && len(out) < maxApprovalsListed {
			out = append(out, a)
		}
	}
	writeJSON(w, 200, out)
}

func (s *Server) handleApprovalGet(w http.ResponseWriter, r *http.Request, pr principal) {
	a, err := s.getApproval(r.Context(), r.PathValue("id"))
	if err != nil || !mayView(pr, a) {
		writeError(w, apiErr(404, "no approval request %s", r.PathValue("id")))
		return
	}
	// One that cannot be recorded expired is shown as stored (pending);
	// expire logged why.
	_ = s.expire(r.Context(), a)
	writeJSON(w, 200, a)
}

// handleApprovalVote records an administrator's approval (approve) or
// rejection; the approval that reaches Required carries the operation
// out.
func (s *Server) handleApprovalVote(approve bool) func(http.ResponseWriter, *http.Request, principal) {
	return func(w http.ResponseWriter, r *http.Request, pr principal) {
		var req struct {
			Comment string `json:"comment"`
		}
		if r.ContentLength != 0 && !readJSON(w, r, &req) {
			return
		}
		if len(req.Comment) > maxComment {
			writeError(w, apiErr(400, "comment: %d characters, over the limit of %d", len(req.Comment), maxComment))
			return
		}
		ctx := r.Context()
		a, err := s.getApproval(ctx, r.PathValue("id"))
		if err != nil {
			writeError(w, apiErr(404, "no approval request %s", r.PathValue("id")))
			return
		}
		if err := s.expire(ctx, a); err != nil {
			writeError(w, err)
			return
		}
		s.approvalMu.Lock()
		a, aerr := s.vote(ctx, a.ID, pr, approve, req.Comment)
		s.approvalMu.Unlock()
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		if approve && a.State == api.ApprovalApproved {
			a.Result = s.carryOut(ctx, a)
			a.UpdatedAt = s.now()
			// The operation is carried out whether or not its result
			// is stored: the event says it happened, the answer says
			// what was not stored.
			err := s.putApproval(ctx, a)
			s.bus.publish(Event{Type: "approval.executed", Cal: a.Cal, Spawn: a.Spawn, Actor: a.Actor, State: a.State, Reason: a.ID + ": " + a.Result})
			if err != nil {
				s.unrecorded(err, "the result of an approved operation", "approval", a.ID, "cal", a.Cal, "result", a.Result)
				aerr := stateErr(err, "approval %s: carried out (%s), but its result", a.ID, a.Result)
				writeError(w, aerr)
				return
			}
		}
		writeJSON(w, 200, a)
	}
}

// vote adds one administrator's vote under approvalMu.
func (s *Server) vote(ctx context.Context, id string, pr principal, approve bool, comment string) (*api.Approval, *APIError) {
	a, err := s.getApproval(ctx, id)
	if err != nil {
		return nil, apiErr(404, "no approval request %s", id)
	}
	if a.State != api.ApprovalPending {
		return nil, apiErr(409, "approval %s is %s: %s", a.ID, a.State, a.Result)
	}
	if who, ok := requesterAdmin(a.Actor); ok && who == pr.name {
		return nil, apiErr(403, "administrator %s made this request and cannot approve or reject it", pr.name)
	}
	if a.Behind != "" && a.Behind == pr.name {
		return nil, apiErr(403, "administrator %s is behind this request (%s made it, acting for %s) and cannot approve or reject it", pr.name, a.Actor, pr.name)
	}
	if slices.ContainsFunc(a.Approvals, func(v api.Vote) bool { return v.Admin == pr.name }) {
		return nil, apiErr(409, "administrator %s has already approved %s (%d of %d)", pr.name, a.ID, len(a.Approvals), a.Required)
	}
	v := api.Vote{Admin: pr.name, At: s.now(), Comment: comment}
	a.UpdatedAt = v.At
	if !approve {
		a.State, a.Rejection = api.ApprovalRejected, &v
		a.Result = "rejected by " + pr.name
		if comment != "" {
			a.Result += ": " + comment
		}
		if err := s.putApproval(ctx, a); err != nil {
			return nil, stateErr(err, "approval %s: the rejection", a.ID)
		}
		s.bus.publish(Event{Type: "approval.rejected", Cal: a.Cal, Spawn: a.Spawn, Actor: pr.actor(), State: a.State, Reason: a.ID + ": " + a.Result})
		s.endHeldSpawn(ctx, a, "approval "+a.ID+" "+a.Result)
		return a, nil
	}
	a.Approvals = append(a.Approvals, v)
	if len(a.Approvals) >= a.Required {
		a.State = api.ApprovalApproved
	}
	if err := s.putApproval(ctx, a); err != nil {
		return nil, stateErr(err, "approval %s: the approval", a.ID)
	}
	s.bus.publish(Event{Type: "approval.approved", Cal: a.Cal, Spawn: a.Spawn, Actor: pr.actor(), State: a.State,
		Reason: fmt.Sprintf("%s: %d of %d approvals", a.ID, len(a.Approvals), a.Required)})
	return a, nil
}

// approvers lists the administrators who approved a.
func approvers(a *api.Approval) string {
	var names []string
	for _, v := range a.Approvals {
		names = append(names, v.Admin)
	}
	return strings.Join(names, ", ")
}

// carryOut runs an approved operation and says what it gave.
func (s *Server) carryOut(ctx context.Context, a *api.Approval) string {
	switch a.Operation {
	case rules.OpSpawn:
		sp, err := s.getSpawn(ctx, a.Spawn)
		if err != nil || a.Request == nil {
			return "the held spawn record is gone"
		}
		who, err := s.requesterOfActor(ctx, a.Actor, a.Request.Parent)
		if err != nil {
			s.unrecorded(s.finishSpawn(ctx, sp, SpawnRejected, "the requester: "+err.Error()), "the rejection of an approved spawn", "spawn", sp.ID, "approval", a.ID)
			return fmt.Sprintf("spawn %s rejected: the requester: %v", sp.ID, err)
		}
		rec, serr := s.spawn(ctx, *a.Request, who, sp)
		if serr != nil {
			return fmt.Sprintf("spawn %s rejected at admission: %v", sp.ID, serr)
		}
		return fmt.Sprintf("spawn %s %s", rec.ID, rec.State)
	case rules.OpRevoke:
		if len(a.Revocation) > 0 { // signed by the Cal that asked, or the Cal of the token that asked
			rev, err := trust.ParseRevocation(a.Revocation)
			if err != nil {
				return "the held revocation no longer parses: " + err.Error()
			}
			sub, aerr := s.revoke(ctx, rev, a.Actor)
			if aerr != nil {
				return "revocation refused: " + aerr.Msg
			}
			signer := strings.TrimPrefix(a.Actor, "cal:")
			if iss, ok := rev.Issuer(); ok {
				signer = iss.String()
				s.usePermission(ctx, signer, "revoke")
				s.note(signer, rev.Target().String(), "revoke", 0)
			}
			return fmt.Sprintf("revoked %s and %d descendants (as signed by %s)", a.Cal, max(len(sub)-1, 0), signer)
		}
		target, err := identity.ParseID(a.Cal)
		if err != nil {
			return "bad cal id"
		}
		suffix := "(approved by " + approvers(a) + ")"
		base := a.Reason
		if n := trust.MaxReasonLen - len(suffix) - 1; len(base) > n {
			base = strings.ToValidUTF8(base[:max(n, 0)], "")
		}
		reason := strings.TrimSpace(base + " " + suffix)
		rev, err := trust.Revoke(s.auth, trust.RevokeRequest{Network: s.net.Info.Network, Target: target, Authority: true, Reason: reason, IssuedAt: s.now()})
		if err != nil {
			return "the revocation could not be signed"
		}
		sub, aerr := s.revoke(ctx, rev, a.Actor)
		if aerr != nil {
			return "revocation refused: " + aerr.Msg
		}
		return fmt.Sprintf("revoked %s and %d descendants", a.Cal, max(len(sub)-1, 0))
	case OpPolicies:
		if a.Policies == nil {
			return "the held policy set is gone"
		}
		if aerr := s.setPolicies(ctx, *a.Policies, a.Actor+" (approved by "+approvers(a)+")"); aerr != nil {
			return "policies refused: " + aerr.Msg
		}
		return fmt.Sprintf("policies set: %d policies (approved by %s)", len(a.Policies.Policies), approvers(a))
	}
	return "unknown operation"
}

// revokeHold is a revocation a require_approval policy holds.
type revokeHold struct {
	policy  *rules.CompiledPolicy
	subtree int // live Cals the revocation would stop
}

// checkRevokePolicies applies the revoke policies to revoking rec. It
// returns a refusal, or the hold when a policy requires approval.
func (s *Server) checkRevokePolicies(ctx context.Context, rec *CalRecord, actor string) (*APIError, *revokeHold) {
	if msg := s.policyErr.Load(); msg != nil {
		return apiErr(403, "admission policies: the stored set does not compile (%s); an administrator must replace it", *msg), nil
	}
	ps := s.policies.Load()
	if ps == nil || len(*ps) == 0 {
		return nil, nil
	}
	recs, _ := s.listCals(ctx)
	live := 0
	var parent *CalRecord
	for _, c := range recs {
		if isLive(c.State) {
			live++
		}
		if c.ID == rec.Parent {
			parent = c
		}
	}
	subtree := len(subtreeOf(recs, rec.ID))
	req := &rules.Request{Name: rec.Name, Actor: actor, Permissions: rec.Permissions, CPUMillis: rec.Quota.CPUMillis,
		MemoryBytes: rec.Quota.MemoryBytes, Depth: rec.Depth, NetworkCals: live, SubtreeCals: subtree}
	if p := parent; p != nil {
		req.ParentName, req.ParentPermissions = p.Name, p.Permissions
		req.ParentChildren = len(s.runningChildren(ctx, p))
		req.ParentCPUPercent, req.ParentMemoryBytes = s.last(p.ID, "cpu_percent"), s.last(p.ID, "memory_bytes")
	}
	aerr, pol := verdict(rules.Evaluate(*ps, rules.OpRevoke, req))
	if pol == nil {
		return aerr, nil
	}
	return nil, &revokeHold{policy: pol, subtree: subtree}
}

// holdRevocation opens the approval request for a held revocation (a
// carries who asks, the Cal, the reason and, from a Cal, its signed
// revocation) and answers 202 with it.
func (s *Server) holdRevocation(w http.ResponseWriter, r *http.Request, h *revokeHold, a *api.Approval) {
	a.Operation, a.SubtreeCals = rules.OpRevoke, h.subtree
	if aerr := s.openApproval(r.Context(), a, h.policy); aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, 202, api.Revoked{Subtree: []string{}, Approval: a})
}

// subtreeOf lists the live Cals of the subtree rooted at id (id included).
func subtreeOf(recs []*CalRecord, id string) []*CalRecord {
	kids := map[string][]*CalRecord{}
	var root *CalRecord
	for _, c := range recs {
		kids[c.Parent] = append(kids[c.Parent], c)
		if c.ID == id {
			root = c
		}
	}
	var out []*CalRecord
	if root == nil {
		return nil
	}
	for q := []*CalRecord{root}; len(q) > 0; q = q[1:] {
		if isLive(q[0].State) {
			out = append(out, q[0])
		}
		q = append(q, kids[q[0].ID]...)
	}
	return out
}

// verdict turns a policy verdict into a refusal or an approval policy.
func verdict(v rules.Verdict) (*APIError, *rules.CompiledPolicy) {
	switch {
	case v.Err != nil:
		return apiErr(403, "policy %s: could not be evaluated for this request (%v): denied", v.Denied.Name, v.Err), nil
	case v.Denied != nil:
		return apiErr(403, "policy %s: %s", v.Denied.Name, v.Denied.Message), nil
	}
	return nil, v.Approval
}
