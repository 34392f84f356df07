package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/rules"
)

// TestApprovals: require_approval policies hold a spawn granting admin
// until two distinct named administrators approve it, and a revocation of
// a large subtree until one does; the requester cannot approve its own
// request; a rejection rejects the held spawn; requests survive a
// control-plane restart; the CLI drives all of it.
func TestApprovals(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	n := up(t, data)
	ctx := context.Background()
	grant := rules.Policy{Name: "grant-admin", RequireApproval: `"admin" in request_permissions`, Approvals: 2, Message: "granting admin takes two administrators"}

	// Two approvals need two administrators besides the root.
	if err := n.c.SetPolicies(ctx, []rules.Policy{grant}); err == nil || !strings.Contains(err.Error(), "policies[0].approvals: 2 approvals needed, but there are 1 administrators") {
		t.Fatalf("policy needing more administrators than exist: %v", err)
	}
	dir := t.TempDir()
	if r := n.cli("admin", "add", "alice", "--out", filepath.Join(dir, "alice.token")); r.code != 0 {
		t.Fatalf("admin add: %+v", r)
	}
	if st, err := os.Stat(filepath.Join(dir, "alice.token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("alice.token: %v %v", st, err)
	}
	aliceTok, _ := client.ReadTokenFile(filepath.Join(dir, "alice.token"))
	bobTok, _, err := n.c.AddAdmin(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	alice := client.New(n.addr, aliceTok).WithHTTPClient(validatingClient(t))
	bob := client.New(n.addr, bobTok).WithHTTPClient(validatingClient(t))
	if me, err := alice.WhoAmI(ctx); err != nil || !me.Admin || me.Root || me.Name != "alice" || me.Actor != "admin:alice" {
		t.Fatalf("whoami alice: %+v %v", me, err)
	}
	if me, err := n.c.WhoAmI(ctx); err != nil || !me.Root || me.Actor != "admin" {
		t.Fatalf("whoami root: %+v %v", me, err)
	}
	if _, _, err := alice.AddAdmin(ctx, "mallory"); err == nil || !strings.Contains(err.Error(), "only the root administrator") {
		t.Fatalf("a named administrator adding another: %v", err)
	}
	if r := n.cli("admin", "ls"); r.code != 0 || !strings.Contains(r.stdout, "admin (root") || !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "bob") {
		t.Fatalf("admin ls: %+v", r)
	}
	if _, _, err := n.c.AddAdmin(ctx, "Bad Name"); err == nil || !strings.Contains(err.Error(), "name:") {
		t.Fatalf("bad admin name: %v", err)
	}

	bigRevoke := rules.Policy{Name: "big-revoke", On: rules.OpRevoke, RequireApproval: `subtree_cals >= 3`, Message: "revoking three or more Cals takes an administrator's approval"}
	keep := rules.Policy{Name: "keep", On: rules.OpRevoke, Deny: `request_name == "keep"`, Message: "keep stays"}
	if err := n.c.SetPolicies(ctx, []rules.Policy{grant, bigRevoke, keep}); err != nil {
		t.Fatal(err)
	}

	// A spawn granting admin is held, with its approval request.
	r := n.cli("spawn", "--name", "ops", "--perm", "admin,spawn,read,revoke", "--wait")
	if r.code != 0 || !strings.Contains(r.stdout, "held") || !strings.Contains(r.stdout, "calnet approve apr_") {
		t.Fatalf("held spawn: %+v", r)
	}
	sps, _ := n.c.Spawns(ctx)
	var held *client.Spawn
	for i := range sps {
		if sps[i].Name == "ops" {
			held = &sps[i]
		}
	}
	if held == nil || held.State != "awaiting_approval" || !strings.HasPrefix(held.Approval, "apr_") {
		t.Fatalf("held spawn record: %+v", held)
	}
	id := held.Approval

	// The root asked, so the root cannot approve; alice can, once.
	if _, err := n.c.Approve(ctx, id, ""); err == nil || !strings.Contains(err.Error(), "made this request") {
		t.Fatalf("requester approving: %v", err)
	}
	if r := n.cliAs(aliceTok, "approve", id, "--comment", "checked"); r.code != 0 || !strings.Contains(r.stdout, "1 of 2 approvals (alice)") {
		t.Fatalf("alice approves: %+v", r)
	}
	if _, err := alice.Approve(ctx, id, ""); err == nil || !strings.Contains(err.Error(), "already approved") {
		t.Fatalf("alice twice: %v", err)
	}
	if sp, _ := n.c.GetSpawn(ctx, held.ID); sp.State != "awaiting_approval" {
		t.Fatalf("after one approval: %+v", sp)
	}

	// Pending requests survive a restart of the control plane.
	n.stop(syscall.SIGTERM)
	n.start()
	ap, err := bob.Approve(ctx, id, "")
	if err != nil || ap.State != "approved" || len(ap.Approvals) != 2 || !strings.Contains(ap.Result, held.ID) {
		t.Fatalf("bob approves: %+v %v", ap, err)
	}
	waitFor(t, "the approved spawn running", 60*time.Second, func() bool {
		sp, err := n.c.GetSpawn(ctx, held.ID)
		return err == nil && sp.State == "running"
	})
	ops, err := n.c.Get(ctx, "ops")
	if err != nil || !slices.Contains(ops.Permissions, "admin") {
		t.Fatalf("ops: %+v %v", ops, err)
	}

	// A rejection ends the request and rejects the held spawn.
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "ops2", Permissions: []string{"admin"}}, false)
	if err != nil || sp.State != "awaiting_approval" {
		t.Fatalf("second held spawn: %+v %v", sp, err)
	}
	if ap, err := bob.Reject(ctx, sp.Approval, "not today"); err != nil || ap.State != "rejected" {
		t.Fatalf("reject: %+v %v", ap, err)
	}
	if got, _ := n.c.GetSpawn(ctx, sp.ID); got.State != "rejected" || !strings.Contains(got.Reason, "rejected by bob: not today") {
		t.Fatalf("rejected spawn: %+v", got)
	}
	if _, err := alice.Approve(ctx, sp.Approval, ""); err == nil || !strings.Contains(err.Error(), "is rejected") {
		t.Fatalf("approving a rejected request: %v", err)
	}

	// Revoking a subtree of three is held; one approval carries it out.
	team, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "team", Permissions: []string{"spawn", "read"}, CPUMillis: 1000, MemoryBytes: 512 << 20, PIDs: 200}, true)
	if err != nil || team.State != "running" {
		t.Fatalf("team: %+v %v", team, err)
	}
	for _, name := range []string{"w1", "w2"} {
		if sp, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: team.Cal, Name: name, Permissions: []string{"read"}}, true); err != nil || sp.State != "running" {
			t.Fatalf("%s: %+v %v", name, sp, err)
		}
	}
	rv, err := n.c.Revoke(ctx, "team", "cleanup")
	if err != nil || rv.Approval == nil || rv.Revoked != "" || rv.Approval.SubtreeCals != 3 || rv.Approval.Operation != "revoke" {
		t.Fatalf("held revocation: %+v %v", rv, err)
	}
	if tc, _ := n.c.Get(ctx, "team"); tc.State != "running" {
		t.Fatalf("team revoked before approval: %s", tc.State)
	}
	r = n.cliAs(aliceTok, "approvals", "--state", "pending")
	if r.code != 0 || !strings.Contains(r.stdout, rv.Approval.ID) || !strings.Contains(r.stdout, "big-revoke") {
		t.Fatalf("approvals list: %+v", r)
	}
	ap, err = alice.Approve(ctx, rv.Approval.ID, "")
	if err != nil || ap.State != "approved" || !strings.Contains(ap.Result, "2 descendants") {
		t.Fatalf("revocation approved: %+v %v", ap, err)
	}
	if tc, _ := n.c.Get(ctx, team.Cal); tc.State != "revoked" {
		t.Fatalf("team after approval: %s", tc.State)
	}

	// A small revocation goes through; a denied one is refused.
	keepSp, _ := n.c.Spawn(ctx, client.SpawnRequest{Name: "keep", Permissions: []string{"read"}}, true)
	if _, err := n.c.Revoke(ctx, keepSp.Cal, ""); err == nil || !strings.Contains(err.Error(), "policy keep: keep stays") {
		t.Fatalf("denied revocation: %v", err)
	}

	// A Cal revoking its own child is held too, and carried out as the
	// Cal signed it once approved.
	calRevoke := rules.Policy{Name: "cal-revokes", On: rules.OpRevoke, RequireApproval: `actor.startsWith("cal:")`, Message: "Cals revoke with an administrator's approval"}
	if err := n.c.SetPolicies(ctx, []rules.Policy{grant, bigRevoke, keep, calRevoke}); err != nil {
		t.Fatal(err)
	}
	lead, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "lead", Permissions: []string{"spawn", "revoke", "read"}, CPUMillis: 500, MemoryBytes: 256 << 20, PIDs: 150}, true)
	if err != nil || lead.State != "running" {
		t.Fatalf("lead: %+v %v", lead, err)
	}
	kid, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: lead.Cal, Name: "kid", Permissions: []string{"read"}}, true)
	if err != nil || kid.State != "running" {
		t.Fatalf("kid: %+v %v", kid, err)
	}
	status, body := n.local(lead.Cal, http.MethodDelete, "/v1/children/"+kid.Cal+"?reason=cleanup", nil)
	heldRev, _ := body["approval"].(map[string]any)
	if status != 200 || heldRev == nil || heldRev["actor"] != "cal:"+lead.Cal || heldRev["revocation"] == nil {
		t.Fatalf("a Cal's revocation: %d %v", status, body)
	}
	if k, _ := n.c.Get(ctx, kid.Cal); k.State != "running" {
		t.Fatalf("kid revoked before approval: %s", k.State)
	}
	ap, err = bob.Approve(ctx, heldRev["id"].(string), "")
	if err != nil || !strings.Contains(ap.Result, "as signed by "+lead.Cal) {
		t.Fatalf("approving the Cal's revocation: %+v %v", ap, err)
	}
	if k, _ := n.c.Get(ctx, kid.Cal); k.State != "revoked" {
		t.Fatalf("kid after approval: %s", k.State)
	}
	if err := n.c.SetPolicies(ctx, []rules.Policy{grant, bigRevoke, keep}); err != nil {
		t.Fatal(err)
	}

	// The CLI lists everything as JSON; events carry each step.
	var all []client.Approval
	r = n.cli("-o", "json", "approvals")
	if err := json.Unmarshal([]byte(r.stdout), &all); err != nil || len(all) != 4 {
		t.Fatalf("approvals -o json: %v %s", err, r.stdout)
	}
	// The audit trail holds each step, across a restart.
	n.stop(syscall.SIGTERM)
	n.start()
	trail, err := n.c.Audit(ctx, client.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range trail.Records {
		seen[r.Type] = true
	}
	for _, want := range []string{"admin.added", "approval.requested", "approval.approved", "approval.executed", "approval.rejected", "spawn.awaiting_approval"} {
		if !seen[want] {
			t.Errorf("no %s event", want)
		}
	}

	// Removing an administrator is refused while a policy needs more
	// approvals than would remain.
	if err := n.c.RemoveAdmin(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := n.c.RemoveAdmin(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "policy grant-admin requires 2 approvals") {
		t.Fatalf("removing the last needed administrator: %v", err)
	}
	if _, err := bob.Approvals(ctx, ""); err == nil {
		t.Fatal("a removed administrator's credential still works")
	}
}
