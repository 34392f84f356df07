package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/rules"
)

// TestNoQuorumThroughProxies: a named administrator cannot approve a
// request it is behind, whoever made it for it. Before, alice (with a
// policy needing one approval from an administrator other than the
// requester) created a developer token with spawn and admin, spawned an
// admin Cal through it, and approved the held spawn herself; the same
// through rules she set and through a Cal she spawned.
func TestNoQuorumThroughProxies(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	n := up(t, data)
	ctx := context.Background()
	admin := map[string]*client.Client{}
	for _, name := range []string{"alice", "bob"} {
		tok, _, err := n.c.AddAdmin(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		admin[name] = client.New(n.addr, tok).WithHTTPClient(validatingClient(t))
	}
	alice, bob := admin["alice"], admin["bob"]
	grant := rules.Policy{Name: "grant-admin", RequireApproval: `"admin" in request_permissions`, Approvals: 1, Message: "granting admin takes another administrator"}
	calRevoke := rules.Policy{Name: "cal-revokes", On: rules.OpRevoke, RequireApproval: `actor.startsWith("cal:")`, Approvals: 1, Message: "Cals revoke with another administrator's approval"}
	if err := n.c.SetPolicies(ctx, []rules.Policy{grant, calRevoke}); err != nil {
		t.Fatal(err)
	}
	refusedAs := func(c *client.Client, who, id string) {
		t.Helper()
		var ae *client.Error
		if a, err := c.Approve(ctx, id, ""); !asAPIError(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "is behind this request") {
			t.Fatalf("%s approving a request it is behind: %+v %v", who, a, err)
		}
		if a, err := c.Reject(ctx, id, ""); !asAPIError(err, &ae) || ae.Status != 403 {
			t.Fatalf("%s rejecting a request it is behind: %+v %v", who, a, err)
		}
	}

	// Through a token alice created: its record names her, the held
	// spawn says she is behind it, and only bob decides.
	secret, tok, err := alice.CreateToken(ctx, "proxy", "", []string{"spawn", "admin"})
	if err != nil || tok.CreatedBy != "admin:alice" {
		t.Fatalf("alice's token: %+v %v", tok, err)
	}
	proxy := client.New(n.addr, secret).WithHTTPClient(validatingClient(t))
	sp, err := proxy.Spawn(ctx, client.SpawnRequest{Name: "adm1", Permissions: []string{"spawn", "admin"}}, false)
	if err != nil || sp.State != "awaiting_approval" {
		t.Fatalf("the token's admin spawn: %+v %v", sp, err)
	}
	ap, err := n.c.GetApproval(ctx, sp.Approval)
	if err != nil || ap.Actor != "token:"+tok.ID || ap.Behind != "alice" {
		t.Fatalf("the held spawn's request: %+v %v", ap, err)
	}
	refusedAs(alice, "alice", sp.Approval)
	if a, err := bob.Approve(ctx, sp.Approval, ""); err != nil || a.State != "approved" {
		t.Fatalf("bob approves: %+v %v", a, err)
	}

	// Through rules alice set on the Master Cal: a rule's spawn of an
	// admin template is held, and she is behind it.
	if err := os.WriteFile(filepath.Join(data, "templates", "ops.yaml"), []byte(strings.Replace(defaultTemplateYAML(t, n), "permissions: [read]", "permissions: [spawn, admin]", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	rule := rules.Rule{Name: "grow", When: "true", Cooldown: rules.Duration(time.Hour), Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "ops"}}
	if err := alice.SetRules(ctx, "master", []rules.Rule{rule}); err != nil {
		t.Fatalf("alice sets rules: %v", err)
	}
	var ruled *client.Approval
	waitFor(t, "the rule's held spawn", 60*time.Second, func() bool {
		as, err := n.c.Approvals(ctx, "pending")
		for i := range as {
			if as[i].Actor == "rule:grow" {
				ruled = &as[i]
			}
		}
		return err == nil && ruled != nil
	})
	if ruled.Behind != "alice" {
		t.Fatalf("the rule's held spawn: behind %q, want alice", ruled.Behind)
	}
	refusedAs(alice, "alice", ruled.ID)
	if err := n.c.SetRules(ctx, "master", nil); err != nil {
		t.Fatal(err)
	}

	// Through a Cal alice spawned: its revocation of its child is held,
	// and she is behind it.
	lead, err := alice.Spawn(ctx, client.SpawnRequest{Name: "lead", Permissions: []string{"spawn", "revoke", "read"}, CPUMillis: 500, MemoryBytes: 256 << 20, PIDs: 150}, true)
	if err != nil || lead.State != "running" {
		t.Fatalf("lead: %+v %v", lead, err)
	}
	kid, err := alice.Spawn(ctx, client.SpawnRequest{Parent: lead.Cal, Name: "kid", Permissions: []string{"read"}}, true)
	if err != nil || kid.State != "running" {
		t.Fatalf("kid: %+v %v", kid, err)
	}
	status, body := n.local(lead.Cal, http.MethodDelete, "/v1/children/"+kid.Cal, nil)
	held, _ := body["approval"].(map[string]any)
	if status != 200 || held == nil || held["behind"] != "alice" {
		t.Fatalf("the Cal's held revocation: %d %v", status, body)
	}
	refusedAs(alice, "alice", held["id"].(string))
	if a, err := bob.Approve(ctx, held["id"].(string), ""); err != nil || a.State != "approved" {
		t.Fatalf("bob approves the Cal's revocation: %+v %v", a, err)
	}

	// A request nobody but the root is behind stays alice's to decide: a
	// token the root created.
	rootSecret, rootTok, err := n.c.CreateToken(ctx, "ops", "", []string{"spawn", "admin"})
	if err != nil || rootTok.CreatedBy != "admin" {
		t.Fatalf("the root's token: %+v %v", rootTok, err)
	}
	sp, err = client.New(n.addr, rootSecret).WithHTTPClient(validatingClient(t)).Spawn(ctx, client.SpawnRequest{Name: "adm2", Permissions: []string{"admin"}}, false)
	if err != nil || sp.State != "awaiting_approval" {
		t.Fatalf("the root's token's admin spawn: %+v %v", sp, err)
	}
	if a, err := alice.Approve(ctx, sp.Approval, ""); err != nil || a.State != "approved" || a.Behind != "" {
		t.Fatalf("alice approving the root's token's request: %+v %v", a, err)
	}
}

// defaultTemplateYAML is the built-in template as the network serves it.
func defaultTemplateYAML(t *testing.T, n *network) string {
	t.Helper()
	r := n.cli("template", "show", "default")
	if r.code != 0 {
		t.Fatalf("template show default: %+v", r)
	}
	return r.stdout
}
