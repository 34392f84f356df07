package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
)

// TestLeastPrivilege: the control plane counts the permissions a Cal
// uses; recommendations per Cal and per template name the unused ones;
// a spawn asking for least privilege is cut to what the template's Cals
// used, with the reason on the spawn record; the template's outcomes
// (time to operational, the learned deploy timeout) are reported.
func TestLeastPrivilege(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"), "--observe-window", "1s")
	ctx := context.Background()
	def, err := os.ReadFile("../../internal/template/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(string(def), "name: default", "name: lp-worker", 1)
	yaml = strings.Replace(yaml, "restart: always", "resources:\n  cpu: 800m\n  memory: 512Mi\n  pids: 300\nrestart: always", 1)
	asked := []string{"spawn", "revoke", "read", "share"}
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "lp1", TemplateYAML: yaml, Permissions: asked}, true)
	if err != nil || sp.State != "running" || sp.Template != "lp-worker" {
		t.Fatalf("lp1: %+v %v", sp, err)
	}
	// lp1 uses spawn (a child is spawned under it), never revoke or share.
	if c, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "lp1", Name: "lp1-child", Permissions: []string{"read"}}, true); err != nil || c.State != "running" {
		t.Fatalf("child: %+v %v", c, err)
	}
	time.Sleep(1500 * time.Millisecond) // the observation window
	rec, err := n.c.Recommendations(ctx, "lp1")
	if err != nil || rec.Permissions == nil {
		t.Fatal(rec, err)
	}
	p := rec.Permissions
	if !slices.Contains(p.Used, "spawn") || !slices.Contains(p.Unused, "revoke") || !slices.Contains(p.Unused, "share") ||
		slices.Contains(p.Recommended, "revoke") || !strings.Contains(p.Reason, "never used") {
		t.Fatalf("lp1 permissions: %+v", p)
	}
	lp1, _ := n.c.Get(ctx, "lp1")
	if lp1.PermissionUse["spawn"] < 1 {
		t.Fatalf("permission use on the record: %+v", lp1.PermissionUse)
	}

	// The next Cal of the template asks for the same, with least
	// privilege: revoke and share are cut.
	sp2, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "lp2", TemplateYAML: yaml, Permissions: asked, LeastPrivilege: true}, true)
	if err != nil || sp2.State != "running" || !strings.Contains(sp2.Privilege, "least privilege: cut") || !strings.Contains(sp2.Privilege, "revoke") {
		t.Fatalf("lp2: %+v %v", sp2, err)
	}
	lp2, _ := n.c.Get(ctx, "lp2")
	if !slices.Contains(lp2.Permissions, "spawn") || slices.Contains(lp2.Permissions, "revoke") || slices.Contains(lp2.Permissions, "share") {
		t.Fatalf("lp2 permissions: %v", lp2.Permissions)
	}
	// With nothing observed yet for a template, least privilege keeps all.
	other := strings.Replace(strings.Replace(yaml, "name: lp-worker", "name: fresh", 1), "cpu: 800m\n  memory: 512Mi\n  pids: 300", "cpu: 100m\n  memory: 64Mi\n  pids: 48", 1)
	sp3, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "fresh1", TemplateYAML: other, Permissions: asked, LeastPrivilege: true}, true)
	if err != nil || !strings.Contains(sp3.Privilege, "permissions kept") || len(sp3.Permissions) != len(asked) {
		t.Fatalf("fresh template: %+v %v", sp3, err)
	}

	tr, err := n.c.TemplateRecommendations(ctx, "lp-worker")
	if err != nil || tr.Cals != 2 || tr.Outcomes.Running != 2 || tr.Outcomes.OperationalP50 <= 0 || tr.Outcomes.DeployTimeout != "15s" || tr.Permissions == nil {
		t.Fatalf("template recommendations: %+v %v", tr, err)
	}
	r := n.cli("recommend", "--template", "lp-worker")
	if r.code != 0 || !strings.Contains(r.stdout, "time to operational p50") || !strings.Contains(r.stdout, "permissions") {
		t.Fatalf("recommend --template: %+v", r)
	}
	if r := n.cli("recommend", "--template", "nope"); r.code == 0 {
		t.Fatalf("unknown template: %+v", r)
	}
	r = n.cli("spawn", "--name", "lp3", "--template", "default", "--perm", "read", "--cpu", "100m", "--least-privilege")
	if r.code != 0 {
		t.Fatalf("spawn --least-privilege: %+v", r)
	}
}
