package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
)

// TestPermissionMatrix: the matrix of a subtree shows what each Cal holds
// and used; administrators limit what a Cal may grant to new children, the
// spawn engine enforces it, the limit survives a restart, and bad rows are
// refused naming the row.
func TestPermissionMatrix(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	team, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "mteam", Permissions: []string{"spawn", "revoke", "read"}, CPUMillis: 800, MemoryBytes: 512 << 20, PIDs: 300}, true)
	if err != nil || team.State != "running" {
		t.Fatalf("team: %+v %v", team, err)
	}
	w, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "mteam", Name: "mworker", Permissions: []string{"spawn", "read"}, CPUMillis: 300, MemoryBytes: 128 << 20, PIDs: 100}, true)
	if err != nil || w.State != "running" {
		t.Fatalf("worker: %+v %v", w, err)
	}
	m, err := n.c.Matrix(ctx, "mteam")
	if err != nil || len(m.Rows) != 2 || m.Rows[0].Name != "mteam" || m.Rows[0].Used["spawn"] != 1 || m.Rows[0].Grantable != nil || len(m.Permissions) != 6 {
		t.Fatalf("matrix: %+v %v", m, err)
	}

	// mteam may grant only read from now on.
	m, err = n.c.SetMatrix(ctx, "mteam", []client.MatrixChange{{Cal: team.Cal, Grantable: []string{"read"}}})
	if err != nil || len(m.Rows[0].Grantable) != 1 {
		t.Fatalf("set: %+v %v", m, err)
	}
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "mteam", Permissions: []string{"spawn", "read"}}, true); err == nil || !strings.Contains(err.Error(), "spawn may not be granted by cal "+team.Cal+" (permission matrix: it may grant read)") {
		t.Fatalf("spawn beyond the matrix: %v", err)
	}
	if sp, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "mteam", Permissions: []string{"read"}, CPUMillis: 100}, true); err != nil || sp.State != "running" {
		t.Fatalf("spawn within the matrix: %+v %v", sp, err)
	}

	// The limit survives a restart of the control plane.
	n.stop(syscall.SIGTERM)
	n.start()
	waitFor(t, "mteam running again", 30*time.Second, func() bool {
		c, err := n.c.Get(ctx, "mteam")
		return err == nil && c.State == "running"
	})
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "mteam", Permissions: []string{"spawn"}}, false); err == nil || !strings.Contains(err.Error(), "permission matrix") {
		t.Fatalf("after a restart: %v", err)
	}

	// The CLI shows and edits it; bad rows change nothing.
	r := n.cli("matrix", "mteam", "--grant", "mworker=", "--lift", "mteam")
	if r.code != 0 || !strings.Contains(r.stdout, "mworker") || !strings.Contains(r.stdout, "held 1 +") {
		t.Fatalf("calnet matrix: %+v", r)
	}
	m, _ = n.c.Matrix(ctx, "mteam")
	for _, row := range m.Rows {
		if row.Name == "mworker" && (row.Grantable == nil || len(row.Grantable) != 0) {
			t.Fatalf("mworker may grant nothing: %+v", row)
		}
		if row.Name == "mteam" && row.Grantable != nil {
			t.Fatalf("mteam's limit lifted: %+v", row)
		}
	}
	for _, tt := range []struct {
		rows []client.MatrixChange
		want string
	}{
		{[]client.MatrixChange{{Cal: w.Cal, Grantable: []string{"admin"}}}, "rows[0].grantable: admin is not held by cal"},
		{[]client.MatrixChange{{Cal: n.master(), Grantable: []string{}}}, "rows[0].cal:"},
		{[]client.MatrixChange{{Cal: w.Cal, Grantable: []string{"fly"}}}, "rows[0].grantable:"},
		{[]client.MatrixChange{{Cal: w.Cal}, {Cal: w.Cal}}, "rows[1].cal:"},
	} {
		if _, err := n.c.SetMatrix(ctx, "mteam", tt.rows); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.rows, err, tt.want)
		}
	}
	secret, _, _ := n.c.CreateToken(ctx, "m", team.Cal, []string{"spawn", "read"})
	if _, err := client.New(n.addr, secret).SetMatrix(ctx, "mteam", nil); err == nil {
		t.Fatal("a token edited the matrix")
	}
}
