package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/calfs"
	"github.com/soulfra/calnet/internal/store"
)

// asCal runs a shell command with a Cal's uid and gid, as its workload
// would (the Cal's workload runs under the Cal's own uid).
func asCal(t *testing.T, uid int, dir, script string) error {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("as uid %d: %s: %v: %s", uid, script, err, out)
	}
	return err
}

// TestSocketRedirect is finding 1 of issue 10: a
// Cal owns its directory, so whatever sits there is the Cal's to replace.
// The Cal "evil" replaces every socket the router and the control plane
// could dial there with symlinks into the Master Cal's directory (its
// local API, which acts as the Master, and its console). Requests to evil
// through the router (by path and by Host), its console and its profile
// must still reach evil itself or fail: nothing is spawned, revoked or
// read or written in the Master's vault on its behalf.
func TestSocketRedirect(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	// Let other uids traverse the test's directories, as they can the
	// ancestors of a real data directory.
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	n := up(t, filepath.Join(tmp, "data"))
	ctx := context.Background()
	master := n.master()
	evil, err := n.c.Spawn(context.Background(), client.SpawnRequest{Name: "evil", Permissions: []string{"read"}}, true)
	if err != nil || evil.State != "running" {
		t.Fatalf("spawn evil: %+v %v", evil, err)
	}
	victim, err := n.c.Spawn(context.Background(), client.SpawnRequest{Name: "victim", Permissions: []string{"read"}}, true)
	if err != nil || victim.State != "running" {
		t.Fatalf("spawn victim: %+v %v", victim, err)
	}
	ev, err := n.c.Get(ctx, evil.Cal)
	if err != nil {
		t.Fatal(err)
	}
	before, err := n.c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refsBefore, err := n.c.Reflections(ctx, master, 0)
	if err != nil {
		t.Fatal(err)
	}

	// The attack, with evil's uid on evil's own directory.
	dir := filepath.Join(n.data, "cals", evil.Cal)
	m := "../" + master + "/"
	plant := "rm -f gateway.sock gateway.handoff.sock console.sock api.sock && " +
		"ln -s " + m + "local.sock gateway.sock && ln -s " + m + "console.sock console.sock && ln -s " + m + "api.sock api.sock"
	if err := asCal(t, ev.UID, dir, plant); err != nil {
		t.Fatalf("evil could not write its own directory: %v", err)
	}

	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	do := func(method, path, host, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+n.router+path, strings.NewReader(body))
		if host != "" {
			req.Host = host
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := fresh.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, route := range []struct{ prefix, host string }{
		{"/evil.master", ""},       // routed by path
		{"", "evil.master.calnet"}, // routed by Host: pinned, no handoff socket, so spliced
	} {
		for _, rq := range []struct{ method, path, body string }{
			{"POST", "/v1/children", `{"name":"pwned","permissions":["read"]}`},
			{"DELETE", "/v1/children/" + victim.Cal, ""},
			{"POST", "/v1/reflections", `{"kind":"note","text":"pwned"}`},
			{"GET", "/v1/reflections", ""},
		} {
			code, body := do(rq.method, route.prefix+rq.path, route.host, rq.body)
			if code/100 == 2 {
				t.Errorf("%s %s%s (Host %q) through the router: %d %s, want a refusal", rq.method, route.prefix, rq.path, route.host, code, body)
			}
		}
	}
	// The router still reaches evil's real gateway: its own card.
	if code, body := do("GET", "/evil.master/", "", ""); code != 200 || !strings.Contains(body, evil.Cal) {
		t.Errorf("evil's gateway through the router: %d %s, want evil's card", code, body)
	}
	// The console the control plane attaches is evil's, not the Master's.
	r := n.cli("console", evil.Cal, "-c", "status")
	if strings.Contains(r.stdout, "cal "+master+" depth") {
		t.Errorf("console of evil attached to the Master:\n%s", r.stdout)
	}
	if r.code != 0 || !strings.Contains(r.stdout, "cal "+evil.Cal+" depth") {
		t.Errorf("console of evil: %+v", r)
	}
	// A profile of evil is evil's own (or refused), never another Cal's.
	if _, err := n.c.Profile(ctx, evil.Cal, "heap", 0, 1); err != nil {
		t.Errorf("profile of evil: %v", err)
	}

	after, err := n.c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("%d cals before the attack, %d after: something was spawned", len(before), len(after))
	}
	if v, err := n.c.Get(ctx, victim.Cal); err != nil || v.State != "running" {
		t.Errorf("victim after the attack: %+v %v", v, err)
	}
	refsAfter, err := n.c.Reflections(ctx, master, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(refsAfter) != len(refsBefore) {
		t.Errorf("the Master's vault had %d reflections, now %d", len(refsBefore), len(refsAfter))
	}
	// The sockets the control plane dials are in a directory evil cannot
	// write.
	hostDir := filepath.Join(n.data, "host", evil.Cal)
	if st, err := os.Lstat(filepath.Join(hostDir, "gateway.sock")); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Errorf("evil's gateway socket is not in %s: %v", hostDir, err)
	}
	if err := asCal(t, ev.UID, "/", "ln -s "+filepath.Join(n.data, "cals", master, "local.sock")+" "+filepath.Join(hostDir, "planted")); err == nil {
		t.Errorf("evil planted a symlink in %s", hostDir)
	}
}

// getChain fetches a Cal's soul chain as the control plane holds it.
func (n *network) getChain(id string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+n.addr+"/v1/cals/"+id+"/chain", nil)
	req.Header.Set("Authorization", "Bearer "+readToken(n.t, n.data))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestChainsKeptAcrossRestart: the control plane answers with its own copy
// of each Cal's soul chain, after a restart too, never with the Cal's
// file. A network recorded before the copies were kept has them taken
// once from each Cal's directory, but a Cal's file is kept only if it is
// a regular file (not a link) ending in the blessing the ledger holds for
// that Cal: a Cal cannot pass another's chain off as its own.
func TestChainsKeptAcrossRestart(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	n := up(t, filepath.Join(tmp, "data"))
	master := n.master()
	ids := map[string]string{}
	for _, name := range []string{"honest", "linker", "copier"} {
		sp, err := n.c.Spawn(context.Background(), client.SpawnRequest{Name: name, Permissions: []string{"spawn", "read"}}, true)
		if err != nil || sp.State != "running" {
			t.Fatalf("spawn %s: %+v %v", name, sp, err)
		}
		ids[name] = sp.Cal
	}
	_, honestChain := n.getChain(ids["honest"])
	_, masterChain := n.getChain(master)
	n.stop(syscall.SIGTERM)

	// As a network from before: no chain in the store.
	st, err := store.OpenBolt(filepath.Join(n.data, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(context.Background(), func(tx store.Tx) error {
		for _, id := range []string{master, ids["honest"], ids["linker"], ids["copier"]} {
			if err := tx.Delete("chains", id); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, st.Close())
	if err != nil {
		t.Fatal(err)
	}
	// The Cals' filesystem is unmounted with the control plane: mount it
	// for the planting, as a Cal's own writes would have been made.
	pool, err := calfs.Open(context.Background(), filepath.Join(n.data, "cals.img"), filepath.Join(n.data, "cals"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two Cals rewrite their soul-chain.sig with their own uids: one links
	// it to another Cal's, one copies the Master's (a chain is public).
	uidOf := func(id string) int {
		var s syscall.Stat_t
		if err := syscall.Stat(filepath.Join(n.data, "cals", id), &s); err != nil {
			t.Fatal(err)
		}
		return int(s.Uid)
	}
	if err := asCal(t, uidOf(ids["linker"]), filepath.Join(n.data, "cals", ids["linker"]), "rm -f soul-chain.sig && ln -s ../"+ids["honest"]+"/soul-chain.sig soul-chain.sig"); err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(n.data, "cals", ids["copier"], "soul-chain.sig")
	os.Remove(copied)
	if err := os.WriteFile(copied, []byte(masterChain), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(copied, uidOf(ids["copier"]), uidOf(ids["copier"])); err != nil {
		t.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}

	n.start()
	if code, got := n.getChain(ids["honest"]); code != 200 || got != honestChain {
		t.Errorf("honest's chain after the restart: %d %s", code, got)
	}
	if code, got := n.getChain(master); code != 200 || got != masterChain {
		t.Errorf("the Master's chain after the restart: %d %s", code, got)
	}
	for _, name := range []string{"linker", "copier"} {
		if code, got := n.getChain(ids[name]); code == 200 {
			t.Errorf("%s's planted chain was kept: %s", name, got)
		}
	}
	// The kept chain works: honest spawns after the restart.
	waitFor(t, "honest to run again", 60*time.Second, func() bool {
		c, err := n.c.Get(context.Background(), ids["honest"])
		return err == nil && c.State == "running"
	})
	sp, err := n.c.Spawn(context.Background(), client.SpawnRequest{Parent: ids["honest"], Name: "later", Permissions: []string{"read"}}, true)
	if err != nil || sp.State != "running" {
		calLog, _ := os.ReadFile(filepath.Join(n.data, "logs", ids["honest"]+".log"))
		upLog, _ := os.ReadFile(n.log.Name())
		t.Fatalf("spawn under honest after the restart: %+v %v\nhonest's log:\n%s\ncalnet up's log:\n%s", sp, err, calLog, upLog)
	}
}
