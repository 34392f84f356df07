package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/template"
	"github.com/soulfra/calnet/rules"
)

// powerfulTemplate is the default template asking for every permission.
func powerfulTemplate(name string) string {
	y := strings.Replace(string(template.DefaultYAML()), "name: default", "name: "+name, 1)
	return strings.Replace(y, "permissions: [read]", "permissions: [admin, spawn, revoke, read, talk, share]", 1)
}

// TestSpawnAuthorizedOnExpandedRequest (security issue, finding 2): a
// developer token's bounds hold for what a spawn finally grants, whatever
// filled it in: an inline template, a stored template, the rules a token
// sets (their spawns act within the token's bounds, not the Cal's) and the
// rules a template brings.
func TestSpawnAuthorizedOnExpandedRequest(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	if err := os.WriteFile(filepath.Join(n.data, "templates", "powerful.yaml"), []byte(powerfulTemplate("powerful")), 0o644); err != nil {
		t.Fatal(err)
	}
	// team holds everything; the token only spawn and read in its subtree.
	team, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "team", Permissions: []string{"admin", "spawn", "revoke", "read", "talk", "share"},
		CPUMillis: 1000, MemoryBytes: 1 << 30, PIDs: 1024}, true)
	if err != nil || team.State != "running" {
		t.Fatalf("team: %+v %v", team, err)
	}
	secret, tok, err := n.c.CreateToken(ctx, "dev", "team", []string{"spawn", "read"})
	if err != nil {
		t.Fatal(err)
	}
	dev := client.New(n.addr, secret).WithHTTPClient(validatingClient(t))

	refused := []struct {
		name string
		req  client.SpawnRequest
		want string
	}{
		{"inline template with more permissions", client.SpawnRequest{TemplateYAML: powerfulTemplate("default")}, "permissions: may not grant"},
		{"stored template with more permissions", client.SpawnRequest{Template: "powerful"}, "permissions: may not grant"},
		{"least privilege does not widen", client.SpawnRequest{Template: "powerful", LeastPrivilege: true}, "permissions: may not grant"},
		{"isolation lowered", client.SpawnRequest{Permissions: []string{"read"}, Without: []string{"seccomp"}}, "without: only an administrator"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			sp, err := dev.Spawn(ctx, c.req, true)
			var ae *client.Error
			if !asAPIError(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, c.want) {
				t.Fatalf("got %+v %v, want 403 %q", sp, err, c.want)
			}
		})
	}
	// What the token holds it may still grant, through a template too.
	inline := strings.Replace(powerfulTemplate("mine"), "permissions: [admin, spawn, revoke, read, talk, share]", "permissions: [read]", 1)
	if sp, err := dev.Spawn(ctx, client.SpawnRequest{TemplateYAML: inline}, true); err != nil || sp.State != "running" {
		t.Fatalf("an inline template within the token's bounds: %+v %v", sp, err)
	}

	// Rules the token sets act within the token's bounds: team holds admin,
	// the token does not, so the rule's spawn of the powerful template is
	// refused (and recorded as suppressed with the reason).
	grab := rules.Rule{Name: "grab", When: "children < 5", Cooldown: rules.Duration(time.Hour),
		Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "powerful"}}
	if err := dev.SetRules(ctx, team.Cal, []rules.Rule{grab}); err != nil {
		t.Fatal(err)
	}
	var reason string
	waitFor(t, "the rule to fire and be refused", 60*time.Second, func() bool {
		v, err := n.c.Rules(ctx, team.Cal)
		if err != nil {
			return false
		}
		for _, d := range v.Decisions {
			if d.Rule == "grab" && d.Outcome != rules.Pending && d.Outcome != rules.Idle {
				reason = d.Outcome + ": " + d.Reason
				return true
			}
		}
		return false
	})
	if !strings.Contains(reason, "rule:grab (acting for token:"+tok.ID+"): permissions: may not grant") {
		t.Fatalf("the token's rule: %s", reason)
	}
	cals, err := n.c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cals {
		if c.Parent == team.Cal && strings.Contains(strings.Join(c.Permissions, ","), "admin") {
			t.Fatalf("cal %s under team holds %v", c.ID, c.Permissions)
		}
	}
	// The same rule set by an administrator spawns what team may grant.
	grab.Name = "grab-as-admin"
	if err := n.c.SetRules(ctx, team.Cal, []rules.Rule{grab}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the administrator's rule to spawn an admin cal", 60*time.Second, func() bool {
		cals, _ := n.c.List(ctx)
		for _, c := range cals {
			if c.Parent == team.Cal && c.State == "running" && strings.Contains(strings.Join(c.Permissions, ","), "admin") {
				return true
			}
		}
		return false
	})
}
