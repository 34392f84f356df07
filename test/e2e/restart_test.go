package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
)

// upLog is what `calnet up` has printed so far (stdout and stderr, every
// run on this data directory).
func (n *network) upLog() string {
	b, _ := os.ReadFile(n.log.Name())
	return string(b)
}

// TestMasterFailureIsLoudAndRestartable: a Master Cal the supervisor gave
// up on is said loudly by `calnet up` (on stderr, and in the banner of the
// next `up` instead of "calnet is up") and by `calnet status`;
// `calnet restart` runs it again, and any failed or running Cal too; a
// revoked Cal is refused.
func TestMasterFailureIsLoudAndRestartable(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	n := up(t, data)
	ctx := t.Context()
	master := n.master()
	if !strings.Contains(n.upLog(), "calnet is up: network") {
		t.Fatalf("no banner for a running Master:\n%s", n.upLog())
	}
	by, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "bystander", Permissions: []string{"read"}, CPUMillis: 200, MemoryBytes: 32 << 20, PIDs: 32}, true)
	if err != nil || by.State != "running" {
		t.Fatalf("spawn: %v %+v", err, by)
	}

	// A running Cal restarted by hand runs as a new process.
	before, _ := n.c.Get(ctx, by.Cal)
	r := n.cli("restart", "bystander")
	if r.code != 0 || !strings.Contains(r.stdout, "Restarted cal "+by.Cal+": running as pid") {
		t.Fatalf("restart a running cal: %+v", r)
	}
	after, _ := n.c.Get(ctx, by.Cal)
	if after.State != "running" || after.PID == before.PID || !pidAlive(after.PID) || pidAlive(before.PID) {
		t.Fatalf("restart: before pid %d, after %+v", before.PID, after)
	}

	// Break the Master so that every restart of the supervisor fails, and
	// kill it: it fails for good.
	chainFile := filepath.Join(data, "cals", master, "soul-chain.sig")
	good, err := os.ReadFile(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(chainFile, []byte("not a soul chain"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := n.c.Get(ctx, master)
	if err != nil {
		t.Fatal(err)
	}
	killPID(t, m.PID)
	loud := "calnet up: THE MASTER CAL " + master + " HAS FAILED"
	waitFor(t, "up to say the Master failed", 60*time.Second, func() bool { return strings.Contains(n.upLog(), loud) })
	st, err := n.c.Status(ctx)
	if err != nil || st.MasterState != "failed" || !strings.Contains(st.MasterError, "giving up") {
		t.Fatalf("status after the Master failed: %+v %v", st, err)
	}
	if r := n.cli("status"); r.code != 0 || !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, "calnet restart "+master) {
		t.Fatalf("calnet status does not say the Master failed: %+v", r)
	}
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}}, true); err == nil {
		t.Fatal("a spawn under a failed Master was admitted")
	}

	// The next `calnet up` does not say the network is up: its banner and
	// stderr say the Master failed.
	n.stop(syscall.SIGTERM)
	mark := len(n.upLog())
	n.start()
	waitFor(t, "the banner of the next up", 30*time.Second, func() bool {
		return strings.Contains(n.upLog()[mark:], "calnet is up, but its MASTER CAL HAS FAILED")
	}, func() { t.Logf("calnet up:\n%s", n.upLog()[mark:]) })
	if out := n.upLog()[mark:]; strings.Contains(out, "calnet is up: network") || !strings.Contains(out, loud) {
		t.Fatalf("the next up's output:\n%s", out)
	}

	// Restarted unmended, it fails again, and `calnet restart` says so.
	if r := n.cli("restart", master); r.code == 0 || !strings.Contains(r.stdout, "did not come up: failed") {
		t.Fatalf("restart of a Master that still cannot start: %+v", r)
	}

	// Mended, the Master runs again with `calnet restart`.
	if err := os.WriteFile(chainFile, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := n.cli("restart", master); r.code != 0 || !strings.Contains(r.stdout, "running as pid") {
		t.Fatalf("restart the Master: %+v", r)
	}
	waitFor(t, "up to say the Master runs again", 10*time.Second, func() bool {
		return strings.Contains(n.upLog()[mark:], "calnet up: the Master Cal "+master+" runs again")
	})
	if st, err := n.c.Status(ctx); err != nil || st.MasterState != "running" || st.MasterError != "" {
		t.Fatalf("status after the restart: %+v %v", st, err)
	}
	if sp, err := n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}, CPUMillis: 10, MemoryBytes: 16 << 20, PIDs: 16}, true); err != nil || sp.State != "running" {
		t.Fatalf("spawn under the restarted Master: %v %+v", err, sp)
	}

	// A revoked Cal never runs again.
	if _, err := n.c.Revoke(ctx, by.Cal, "test"); err != nil {
		t.Fatal(err)
	}
	r = n.cli("restart", by.Cal)
	if r.code == 0 || !strings.Contains(r.stderr, "never runs again") || !strings.Contains(r.stderr, "409") {
		t.Fatalf("restart a revoked cal: %+v", r)
	}
	waitFor(t, "the revoked cal to stop", 15*time.Second, func() bool {
		for _, p := range calProcesses(t, calnetBin) {
			if p.Cal == by.Cal {
				return false
			}
		}
		return len(calGroups(map[string]bool{by.Cal: true})) == 0
	})
	n.hostCheck(calnetBin)
}
