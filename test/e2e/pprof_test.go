package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulfra/calnet/client"
)

// TestProfiles: runtime profiles of a Cal's process and of the control
// plane, readable by go tool pprof; text goroutine dumps; bad names and
// lengths refused; administrators only.
func TestProfiles(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "prof", Permissions: []string{"read"}}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("%+v %v", sp, err)
	}
	dir := t.TempDir()
	heap := filepath.Join(dir, "heap.pb.gz")
	if r := n.cli("pprof", "prof", "heap", "--out", heap); r.code != 0 {
		t.Fatalf("calnet pprof: %+v", r)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", heap).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: inuse_space") {
		t.Fatalf("go tool pprof on the Cal's heap: %v\n%s", err, out)
	}
	g, err := n.c.Profile(ctx, "prof", "goroutine", 0, 1)
	if err != nil || !strings.Contains(string(g), "goroutine profile:") || !strings.Contains(string(g), "calrt") {
		t.Fatalf("goroutine dump: %v\n%.500s", err, g)
	}
	cpu, err := n.c.Profile(ctx, "prof", "profile", 1, 0)
	if err != nil || len(cpu) < 2 || cpu[0] != 0x1f || cpu[1] != 0x8b {
		t.Fatalf("CPU profile: %v (%d bytes)", err, len(cpu))
	}
	own, err := n.c.Profile(ctx, "", "heap", 0, 0)
	if err != nil || len(own) < 2 || own[0] != 0x1f {
		t.Fatalf("control plane heap: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "cp.pb.gz"), own, 0o600))
	if out, err := exec.Command("go", "tool", "pprof", "-top", filepath.Join(dir, "cp.pb.gz")).CombinedOutput(); err != nil {
		t.Fatalf("go tool pprof on the control plane's heap: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		name         string
		seconds, dbg int
		status       int
		want         string
	}{
		{"secrets", 0, 0, 404, "profile:"},
		{"profile", 31, 0, 400, "seconds:"},
		{"heap", 5, 0, 400, "seconds:"},
		{"heap", 0, 7, 400, "debug:"},
	} {
		_, err := n.c.Profile(ctx, "prof", tt.name, tt.seconds, tt.dbg)
		var e *client.Error
		if !asAPIError(err, &e) || e.Status != tt.status || !strings.Contains(e.Message, tt.want) {
			t.Errorf("%+v: %v", tt, err)
		}
	}
	secret, _, err := n.c.CreateToken(ctx, "p", sp.Cal, []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(n.addr, secret).Profile(ctx, "prof", "heap", 0, 0); err == nil {
		t.Fatal("a developer token fetched a profile")
	}
}
