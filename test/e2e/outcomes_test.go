package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulfra/calnet/client"
)

// TestTemplateBackOff (FR-5.5, learning from outcomes): a template whose
// Cals never register fails its deploys; after three failed spawns the
// spawn engine backs it off with 429 and Retry-After, the template's
// outcomes say why, and other templates and other parents are unaffected.
func TestTemplateBackOff(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"), "--deploy-timeout", "2s", "--zone", "rack-a")
	ctx := context.Background()
	// Its workload takes 60 s to report ready: the Cal cannot register in 2 s
	// (its 500m start in well under that: a smaller CPU limit would be
	// given longer).
	slow := strings.Replace(agentTemplate, "health: {exec: [/bin/true], interval: 200ms}", "health: {exec: [/bin/false], interval: 200ms, ready: 60s}", 1)
	slow = strings.Replace(slow, "name: agent", "name: stuck", 1)
	for i := range 3 {
		sp, err := n.c.Spawn(ctx, client.SpawnRequest{TemplateYAML: slow, CPUMillis: 500}, true)
		if err != nil || sp.State != "failed" || sp.Attempts != 3 || !strings.Contains(sp.Reason, "did not register within 2s") {
			t.Fatalf("spawn %d of the stuck template: %+v %v", i, sp, err)
		}
	}
	_, err := n.c.Spawn(ctx, client.SpawnRequest{TemplateYAML: slow, CPUMillis: 500}, false)
	var ae *client.Error
	if !asAPIError(err, &ae) || ae.Status != 429 || !strings.Contains(ae.Message, "template stuck: 3 failed deploys") {
		t.Fatalf("a fourth spawn: %v", err)
	}
	// Back-off is per parent: the failures under the Master do not back the
	// template off under another parent (one tenant's failing spawns do not
	// deny the template to others).
	other, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "other", Permissions: []string{"spawn", "read"}, CPUMillis: 500, MemoryBytes: 256 << 20}, true)
	if err != nil || other.State != "running" {
		t.Fatalf("another parent: %+v %v", other, err)
	}
	if sp, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "other", TemplateYAML: slow, CPUMillis: 500}, false); err != nil || sp.State == "rejected" {
		t.Fatalf("the stuck template under another parent: %+v %v", sp, err)
	}
	tr, err := n.c.TemplateRecommendations(ctx, "stuck")
	if err != nil || tr.Outcomes.Failed != 3 || tr.Outcomes.Rejected != 1 || tr.Outcomes.BackedOff == "" || len(tr.Outcomes.LastFailures) != 3 {
		t.Fatalf("outcomes: %+v %v", tr.Outcomes, err)
	}
	// Other templates spawn as before; placement labels the host with
	// its zone.
	if sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "fine", CPUMillis: 100}, true); err != nil || sp.State != "running" || !strings.Contains(sp.Placement, "(zone rack-a)") {
		t.Fatalf("default template: %+v %v", sp, err)
	}
}
