package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/soulfra/calnet/client"
)

// TestTrafficMatrix: spawns, shared reflections, HTTP through the router
// and revocations are counted per pair of endpoints.
func TestTrafficMatrix(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	ta, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "ta", Permissions: []string{"spawn", "share", "read"}, CPUMillis: 600, MemoryBytes: 256 << 20, PIDs: 150}, true)
	if err != nil || ta.State != "running" {
		t.Fatalf("ta: %+v %v", ta, err)
	}
	tb, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "ta", Name: "tb", Permissions: []string{"read"}}, true)
	if err != nil || tb.State != "running" {
		t.Fatalf("tb: %+v %v", tb, err)
	}
	if _, err := n.c.Reflect(ctx, "ta", "note", "for tb", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.Share(ctx, "ta", "tb", []uint64{0}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, err := http.Get("http://" + n.router + "/ta.master/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if _, err := n.c.Revoke(ctx, tb.Cal, "done"); err != nil {
		t.Fatal(err)
	}
	tr, err := n.c.Traffic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[[3]string]int64{}
	for _, p := range tr.Pairs {
		got[[3]string{p.From, p.To, p.Kind}] = p.Count
	}
	master := n.master()
	for _, want := range []struct {
		from, to, kind string
		n              int64
	}{
		{master, ta.Cal, "spawn", 1},
		{ta.Cal, tb.Cal, "spawn", 1},
		{ta.Cal, tb.Cal, "share", 1},
		{"outside", ta.Cal, "http", 3},
		{"authority", tb.Cal, "revoke", 1},
	} {
		if got[[3]string{want.from, want.to, want.kind}] != want.n {
			t.Errorf("%s -> %s %s: %d, want %d (all: %+v)", want.from, want.to, want.kind, got[[3]string{want.from, want.to, want.kind}], want.n, tr.Pairs)
		}
	}
	// A token scoped to tb's parent sees the pairs with an end in ta's subtree only.
	secret, _, err := n.c.CreateToken(ctx, "t", ta.Cal, []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	scoped, err := client.New(n.addr, secret).WithHTTPClient(validatingClient(t)).Traffic(ctx)
	if err != nil || len(scoped.Pairs) == 0 {
		t.Fatalf("scoped: %+v %v", scoped, err)
	}
}
