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

// spawnBusy spawns and waits, retrying while the host refuses with 429
// because other work saturates this shared machine.
func spawnBusy(t *testing.T, n *network, req client.SpawnRequest) (*client.Spawn, error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sp, err := n.c.Spawn(context.Background(), req, true)
		var ae *client.Error
		if err == nil || !asAPIError(err, &ae) || ae.Status != 429 || time.Now().After(deadline) {
			return sp, err
		}
		time.Sleep(max(ae.RetryAfter, 500*time.Millisecond))
	}
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
	evil, err := spawnBusy(t, n, client.SpawnRequest{Name: "evil", Permissions: []string{"read"}})
	if err != nil || evil.State != "running" {
		t.Fatalf("spawn evil: %+v %v", evil, err)
	}
	victim, err := spawnBusy(t, n, client.SpawnRequest{Name: "victim", Permissions: []string{"read"}})
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
