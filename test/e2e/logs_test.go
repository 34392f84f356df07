package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
)

// TestLogAggregation: the logs of every Cal merged by time, filtered by
// text, level and Cal, followed with a cursor, limited to a token's
// scope, and bad queries refused naming the parameter.
func TestLogAggregation(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	for _, name := range []string{"la", "lb"} {
		if sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: name, Permissions: []string{"read"}}, true); err != nil || sp.State != "running" {
			t.Fatalf("%s: %+v %v", name, sp, err)
		}
	}
	lb, err := n.c.Get(ctx, "lb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.Revoke(ctx, "lb", "log test"); err != nil {
		t.Fatal(err)
	}
	var page *client.LogPage
	waitFor(t, "lb's revocation in the merged log", 10*time.Second, func() bool {
		page, err = n.c.LogsAll(ctx, client.LogQuery{Level: "warn"})
		return err == nil && len(page.Entries) > 0
	})
	for _, e := range page.Entries {
		if e.Name != "lb" || (e.Level != "WARN" && e.Level != "ERROR") {
			t.Fatalf("level warn: %+v", e)
		}
	}
	all, err := n.c.LogsAll(ctx, client.LogQuery{Text: "BLESSED A CHILD"})
	if err != nil || len(all.Entries) != 2 {
		t.Fatalf("text filter: %+v %v", all, err)
	}
	for i, e := range all.Entries {
		if e.Cal != n.master() || (i > 0 && e.Time.Before(all.Entries[i-1].Time)) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	if only, err := n.c.LogsAll(ctx, client.LogQuery{Cals: []string{lb.ID}}); err != nil || len(only.Entries) == 0 || only.Entries[0].Name != "lb" {
		t.Fatalf("cal filter: %+v %v", only, err)
	}

	// Follow: the cursor returns only what was written since.
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "lc", Permissions: []string{"read"}}, true); err != nil {
		t.Fatal(err)
	}
	var next *client.LogPage
	waitFor(t, "the new blessing after the cursor", 10*time.Second, func() bool {
		next, err = n.c.LogsAll(ctx, client.LogQuery{Text: "blessed a child", Cursor: all.Cursor})
		return err == nil && len(next.Entries) > 0
	})
	if len(next.Entries) != 1 || !strings.Contains(next.Entries[0].Text, "blessed a child") {
		t.Fatalf("follow: %+v", next.Entries)
	}

	// A token sees the logs of its subtree only.
	la, _ := n.c.Get(ctx, "la")
	secret, _, err := n.c.CreateToken(ctx, "logs", la.ID, []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	tc := client.New(n.addr, secret).WithHTTPClient(validatingClient(t))
	if p, err := tc.LogsAll(ctx, client.LogQuery{}); err != nil {
		t.Fatal(err)
	} else {
		for _, e := range p.Entries {
			if e.Cal != la.ID {
				t.Fatalf("token saw %s", e.Cal)
			}
		}
	}
	if _, err := tc.LogsAll(ctx, client.LogQuery{Cals: []string{lb.ID}}); err == nil {
		t.Fatal("token read a Cal out of its scope")
	}

	for _, tt := range []struct {
		q    client.LogQuery
		want string
	}{
		{client.LogQuery{Level: "loud"}, "level:"},
		{client.LogQuery{Lines: 5000}, "lines:"},
		{client.LogQuery{Cursor: "!!!"}, "cursor:"},
		{client.LogQuery{Cals: []string{"nope"}}, "cals:"},
	} {
		if _, err := n.c.LogsAll(ctx, tt.q); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.q, err, tt.want)
		}
	}
	r := n.cli("logs", "--grep", "blessed a child", "-n", "10")
	if r.code != 0 || strings.Count(r.stdout, "blessed a child") != 3 || !strings.HasPrefix(r.stdout, "master") {
		t.Fatalf("calnet logs --grep: %+v", r)
	}
}
