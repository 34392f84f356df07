package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
)

// TestAuditTrail is reliability finding 13 end to end: the audit trail's
// sequence numbers go on after a restart (they used to start over at 1),
// it is queried through the API and the CLI (administrators only), its
// head is anchored in the ledger at shutdown, and `calnet audit verify`
// names an edited line and a trail cut back past an anchor.
func TestAuditTrail(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	n := up(t, data)
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "audited", Permissions: []string{"read"}}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("spawn: %+v %v", sp, err)
	}
	if _, err := n.c.Revoke(ctx, "audited", "audit test"); err != nil {
		t.Fatal(err)
	}
	cal := sp.Cal

	// The API, with filters (the validating client checks the answer
	// against the OpenAPI document).
	var page *client.AuditPage
	waitFor(t, "the revocation in the audit trail", 10*time.Second, func() bool {
		page, err = n.c.Audit(ctx, client.AuditQuery{Cal: cal[:8], Type: "cal.", Since: start})
		return err == nil && len(page.Records) > 0 && page.Records[len(page.Records)-1].Type == "cal.revoked"
	})
	last := page.Records[len(page.Records)-1]
	if last.Actor != "admin" || last.Reason != "audit test" || last.Cal != cal || len(last.Hash) != 64 {
		t.Fatalf("revocation record: %+v", last)
	}
	for _, r := range page.Records {
		if !strings.HasPrefix(r.Type, "cal.") || (r.Cal != cal && r.Parent != cal) {
			t.Fatalf("a record outside the filter: %+v", r)
		}
	}
	if _, err := n.c.Audit(ctx, client.AuditQuery{Limit: 5000}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("limit 5000: %v", err)
	}
	// A developer token may not read it.
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "team", Permissions: []string{"spawn", "read"}}, true); err != nil {
		t.Fatal(err)
	}
	secret, _, err := n.c.CreateToken(ctx, "dev", "team", []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	var ae *client.Error
	if _, err := client.New(n.addr, secret).Audit(ctx, client.AuditQuery{}); !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("a developer token read the audit trail: %v", err)
	}

	// The CLI: JSON Lines in -o json.
	r := n.cli("-o", "json", "audit", "--cal", cal[:8], "--type", "cal.revoked")
	if r.code != 0 {
		t.Fatalf("calnet audit: %d %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var rec client.AuditRecord
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil || rec.Seq != last.Seq {
		t.Fatalf("calnet audit -o json: %q", r.stdout)
	}

	// A restart: the trail and the event stream go on from the last
	// sequence number, and the shutdown anchored the head in the ledger.
	headBefore := page.HeadSeq
	n.stop(syscall.SIGTERM)
	verify := func() (result, map[string]any) {
		r := calnet(t, "", "-o", "json", "audit", "verify", "--data", data)
		var rep map[string]any
		must(t, json.Unmarshal([]byte(r.stdout), &rep))
		return r, rep
	}
	r, rep := verify()
	if r.code != 0 || rep["ok"] != true || rep["anchors_checked"].(float64) < 1 {
		t.Fatalf("audit verify after a clean stop: %d %s %s", r.code, r.stdout, r.stderr)
	}
	lastSeq := uint64(rep["last_seq"].(float64))
	if lastSeq < headBefore {
		t.Fatalf("trail ends at %d, the API said %d", lastSeq, headBefore)
	}
	n.start()
	if _, _, err := n.c.CreateToken(ctx, "after-restart", "team", []string{"read"}); err != nil {
		t.Fatal(err)
	}
	after, err := n.c.Audit(ctx, client.AuditQuery{After: lastSeq, Limit: 1})
	if err != nil || len(after.Records) != 1 || after.Records[0].Seq != lastSeq+1 {
		t.Fatalf("the first record after a restart: %+v %v (the trail ended at %d)", after, err, lastSeq)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	var first uint64
	werr := n.c.Watch(wctx, lastSeq, func(e client.Event) {
		if first == 0 {
			first = e.Seq
			cancel()
		}
	})
	cancel()
	if werr != nil || first != lastSeq+1 {
		t.Fatalf("the event stream after a restart starts at %d, want %d (watch: %v)", first, lastSeq+1, werr)
	}
	n.stop(syscall.SIGTERM)

	// Damage: an edited line is named; a trail cut back past the last
	// anchor is found through the ledger.
	segs, _ := filepath.Glob(filepath.Join(data, "audit", "audit-*.jsonl"))
	seg := segs[len(segs)-1]
	orig, _ := os.ReadFile(seg)
	edited := bytes.Replace(orig, []byte(`"reason":"audit test"`), []byte(`"reason":"nothing to see"`), 1)
	must(t, os.WriteFile(seg, edited, 0o600))
	r, rep = verify()
	if r.code != 1 || rep["ok"] != false || !strings.Contains(r.stdout, "it was edited") {
		t.Fatalf("an edited line: %d %s", r.code, r.stdout)
	}
	cut := orig[:bytes.Index(orig, []byte(`"reason":"audit test"`))]
	cut = cut[:bytes.LastIndexByte(cut, '\n')+1]
	must(t, os.WriteFile(seg, cut, 0o600))
	r, _ = verify()
	if r.code != 1 || !strings.Contains(r.stdout, "the ledger anchored seq") || !strings.Contains(r.stdout, "cut short or removed") {
		t.Fatalf("a trail cut back past its anchor: %d %s", r.code, r.stdout)
	}
	must(t, os.WriteFile(seg, orig, 0o600))
	if r, _ := verify(); r.code != 0 {
		t.Fatalf("restored trail: %s", r.stdout)
	}
}
