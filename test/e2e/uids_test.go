package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/hostuid"
)

// calUIDs lists the uid of every Cal of n.
func calUIDs(t *testing.T, n *network) map[string]int {
	t.Helper()
	cals, err := n.c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range cals {
		out[c.ID] = c.UID
	}
	return out
}

// spawnRetry spawns and waits for the Cal to run, retrying while a loaded
// machine makes admission answer 429.
func spawnRetry(t *testing.T, n *network, req client.SpawnRequest) *client.Spawn {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		sp, err := n.c.Spawn(context.Background(), req, true)
		var ae *client.Error
		if err == nil || !asAPIError(err, &ae) || ae.Status != 429 || time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("spawn: %v", err)
			}
			if sp.State != "running" {
				t.Fatalf("spawn %s: %s", sp.State, sp.Reason)
			}
			return sp
		}
		time.Sleep(max(ae.RetryAfter, 100*time.Millisecond))
	}
}

// hostClaim returns the host-wide claim of the network in data.
func hostClaim(t *testing.T, data string) hostuid.Claim {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(hostuid.DefaultDir, "uids.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Claims []hostuid.Claim }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Claims {
		if c.DataDir == data {
			return c
		}
	}
	t.Fatalf("no host-wide uid claim for %s in %s", data, hostuid.DefaultDir)
	return hostuid.Claim{}
}

// TestNetworksNeverShareUIDs starts two networks at once on different
// data directories: before host-wide allocation both Master Cals ran as
// uid 200000. Their Cals' uids must lie in disjoint blocks recorded in
// the host-wide file; a copy of a network's data directory (a restored
// backup) started beside the original gets blocks of its own and its
// Cals are moved onto them.
func TestNetworksNeverShareUIDs(t *testing.T) {
	needRoot(t)
	dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
	nets := make([]*network, 2)
	var wg sync.WaitGroup
	for i := range nets {
		wg.Go(func() { nets[i] = up(t, dirs[i]) })
	}
	wg.Wait()
	ctx := context.Background()
	if a, b := calUIDs(t, nets[0]), calUIDs(t, nets[1]); a[nets[0].master()] == b[nets[1].master()] {
		t.Fatalf("both Master Cals run as uid %d", a[nets[0].master()])
	}
	for _, n := range nets {
		spawnRetry(t, n, client.SpawnRequest{Permissions: []string{"read"}, MemoryBytes: 16 << 20, CPUMillis: 10})
	}
	owner := map[int]string{}
	for _, n := range nets {
		for id, uid := range calUIDs(t, n) {
			if other, dup := owner[uid]; dup {
				t.Errorf("uid %d is both %s and %s", uid, other, id)
			}
			owner[uid] = id
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	h := hostuid.New("")
	for i, n := range nets {
		claim := hostClaim(t, dirs[i])
		if st, err := n.c.Status(ctx); err != nil || claim.Network != st.Network {
			t.Errorf("claim of %s names network %s, want %+v (%v)", dirs[i], claim.Network, st, err)
		}
		for id, uid := range calUIDs(t, n) {
			in := false
			for _, b := range claim.Blocks {
				in = in || h.Block(b).Contains(uid)
			}
			if !in {
				t.Errorf("cal %s of %s runs as uid %d, outside its network's blocks %v", id, dirs[i], uid, claim.Blocks)
			}
		}
	}
	a, b := hostClaim(t, dirs[0]), hostClaim(t, dirs[1])
	for _, x := range a.Blocks {
		for _, y := range b.Blocks {
			if x == y {
				t.Fatalf("both networks hold uid block %d", x)
			}
		}
	}

	// A copy of network a, started while a runs, must not reuse a's uids.
	nets[0].stop(syscall.SIGTERM)
	cp := filepath.Join(t.TempDir(), "a-copy")
	if out, err := exec.Command("cp", "-a", dirs[0], cp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	nets[0].start()
	c := up(t, cp)
	orig, copied := calUIDs(t, nets[0]), calUIDs(t, c)
	for id, uid := range copied {
		if orig[id] == uid {
			t.Errorf("cal %s runs as uid %d in the network and in its copy", id, uid)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(cp, "cals", id), &st); err != nil || int(st.Uid) != uid {
			t.Errorf("cal %s of the copy: its directory is owned by %d (%v), want its new uid %d", id, st.Uid, err, uid)
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		cals, _ := c.c.List(ctx)
		if len(cals) == 2 && cals[0].State == "running" && cals[1].State == "running" {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(c.log.Name())
			t.Fatalf("the copy's cals did not run on their new uids: %+v\n%s", cals, log)
		}
	}
}
