package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/sandbox"
)

// network is a `calnet up` process under test.
type network struct {
	t      *testing.T
	data   string
	addr   string
	dns    string
	router string
	cmd    *exec.Cmd
	log    *os.File
	c      *client.Client
	// bin runs `calnet up` when set (an upgraded binary); else calnetBin.
	bin string
	// exited is closed when cmd has been waited for.
	exited chan struct{}
	// flags are the extra flags of `up`, kept for restarts.
	flags []string
	// inherit are files `calnet up` is started with beyond 0, 1 and 2,
	// open and not close-on-exec, as a shell or a supervisor may leave
	// them.
	inherit []*os.File
	// wrap, when set, runs calnet under a command (prlimit ...).
	wrap []string
	// sealed: start returns once the process runs, without waiting for
	// the network (started sealed, it waits for `calnet unseal`); waitUp
	// waits.
	sealed bool
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolated Cals need root (namespaces, cgroups)")
	}
}

// up starts `calnet up` on data (reusing it if it exists) and waits until
// the Master Cal runs.
func up(t *testing.T, data string, extra ...string) *network {
	t.Helper()
	return upInheriting(t, data, nil, extra...)
}

// upInheriting is up with files `calnet up` inherits as descriptors 3, 4,
// ... (open, not close-on-exec).
func upInheriting(t *testing.T, data string, inherit []*os.File, extra ...string) *network {
	t.Helper()
	n := &network{t: t, data: data, addr: freeAddr(t), dns: freeAddr(t), router: freeAddr(t), flags: extra, inherit: inherit}
	n.start()
	t.Cleanup(func() {
		n.stop(syscall.SIGTERM)
		n.reap()
		if t.Failed() { // the control plane's last words, for the reader of the failure
			b, _ := os.ReadFile(n.log.Name())
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("calnet up's log (last lines):\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	return n
}

// start starts `calnet up` with extra flags, or with those it was started
// with before.
func (n *network) start(extra ...string) {
	if len(extra) > 0 {
		n.flags = extra
	}
	t := n.t
	var err error
	n.log, err = os.OpenFile(filepath.Join(filepath.Dir(n.data), filepath.Base(n.data)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	bin := calnetBin
	if n.bin != "" {
		bin = n.bin
	}
	// The tests share a loaded machine: the CPU-pressure admission check
	// (its own test is TestCPUPressureRefusesSpawns) is off unless a test's
	// flags, which come after and win, turn it on.
	args := append([]string{bin, "up", "--data", n.data, "--addr", n.addr, "--dns", n.dns, "--router", n.router, "--max-cpu-pressure", "101"}, n.flags...)
	if len(n.wrap) > 0 {
		args = append(append([]string{}, n.wrap...), args...)
	}
	n.cmd = exec.Command(args[0], args[1:]...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.cmd.ExtraFiles = n.inherit
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, exited := n.cmd, make(chan struct{})
	n.exited = exited
	go func() {
		_ = cmd.Wait() // how it ended is in its log; wait and stop check what matters
		close(exited)
	}()
	if !n.sealed {
		n.waitUp()
	}
}

// waitUp waits until the network answers and its Master Cal runs.
func (n *network) waitUp() {
	t := n.t
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if tok, err := client.ReadTokenFile(filepath.Join(n.data, "admin.token")); err == nil {
			n.c = client.New(n.addr, tok).WithHTTPClient(validatingClient(t))
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := n.c.Status(ctx)
			cancel()
			if err == nil && st.Cals["running"] >= 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(n.log.Name())
			t.Fatalf("calnet up did not come up:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *network) stop(sig syscall.Signal) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	if err := n.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		n.t.Errorf("signalling calnet up: %v", err)
	}
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		if err := n.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			n.t.Fatalf("calnet up did not exit on %v and cannot be killed: %v", sig, err)
		}
		<-n.exited
	}
	n.cmd = nil
	n.log.Close()
}

// wait waits for `calnet up` to exit by itself (after `calnet down`).
func (n *network) wait() {
	n.t.Helper()
	if n.cmd == nil {
		return
	}
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.t.Fatal("calnet up did not exit")
	}
	n.cmd = nil
	n.log.Close()
}

func (n *network) cli(args ...string) result {
	n.t.Helper()
	return n.cliAs(readToken(n.t, n.data), args...)
}

// cliAs runs the CLI against the network with the credential tok.
func (n *network) cliAs(tok string, args ...string) result {
	n.t.Helper()
	cmd := exec.Command(calnetBin, args...)
	cmd.Env = append(os.Environ(), "CALNET_ADDR="+n.addr, "CALNET_TOKEN="+tok)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return result{code, out.String(), errb.String()}
}

func readToken(t *testing.T, data string) string {
	tok, err := client.ReadTokenFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (n *network) master() string {
	st, err := n.c.Status(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return st.Master
}

// waitFor polls cond until it holds or the deadline passes; then it runs
// explain, if given, and fails.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool, explain ...func()) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			for _, f := range explain {
				f()
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// local calls a Cal's local API on its unix socket, as its workload would.
func (n *network) local(id, method, path string, body any) (int, map[string]any) {
	n.t.Helper()
	sock := filepath.Join(n.data, "cals", id, "local.sock")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, "http://cal"+path, r)
	resp, err := hc.Do(req)
	if err != nil {
		n.t.Fatalf("local API of %s: %v", id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatalf("local API of %s: %v", id, err)
	}
	// A success answers JSON; an error page from outside the API may not.
	var v any
	if err := json.Unmarshal(b, &v); err != nil && resp.StatusCode/100 == 2 && len(b) > 0 {
		n.t.Fatalf("local API of %s: %d %q: %v", id, resp.StatusCode, b, err)
	}
	m, _ := v.(map[string]any) // a list has no fields to return
	return resp.StatusCode, m
}

func pidAlive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

func TestSpawnShowRevoke(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	a, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "alpha", Permissions: []string{"spawn", "read", "revoke"}}, true)
	if err != nil || a.State != "running" {
		t.Fatalf("spawn alpha: %+v %v", a, err)
	}
	b, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "alpha", Name: "beta", Permissions: []string{"read"}}, true)
	if err != nil || b.State != "running" {
		t.Fatalf("spawn beta: %+v %v", b, err)
	}
	cal, err := n.c.Get(ctx, "beta")
	if err != nil {
		t.Fatal(err)
	}
	if cal.Parent != a.Cal || cal.Depth != 3 || len(cal.Isolation) != len(sandbox.AllFeatures) {
		t.Fatalf("beta: %+v", cal)
	}
	for f, on := range cal.Isolation {
		if !on {
			t.Errorf("isolation %s is off for beta", f)
		}
	}
	parent, _ := n.c.Get(ctx, "alpha")
	if len(parent.Children) != 1 || parent.Children[0] != b.Cal {
		t.Fatalf("alpha's registry record lists children %v", parent.Children)
	}
	pids := []int{parent.PID, cal.PID}
	rv, err := n.c.Revoke(ctx, "alpha", "test")
	if err != nil || len(rv.Subtree) != 2 {
		t.Fatalf("revoke: %+v %v", rv, err)
	}
	waitFor(t, "the revoked subtree's processes to end", 2*time.Second, func() bool { return !pidAlive(pids[0]) && !pidAlive(pids[1]) })
	for _, id := range []string{a.Cal, b.Cal} {
		c, _ := n.c.Get(ctx, id)
		if c.State != "revoked" {
			t.Fatalf("%s is %s", id, c.State)
		}
	}
	// A revoked parent cannot spawn.
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: a.Cal, Permissions: []string{"read"}}, true); err == nil {
		t.Fatal("a revoked cal spawned")
	}
	// The ledger holds every step and verifies.
	r := calnet(t, "", "ledger", "verify", "--dir", filepath.Join(n.data, "network"))
	if r.code != 0 || !strings.Contains(r.stdout, "3 blessings and 1 revocations verified") {
		t.Fatalf("ledger verify: %+v", r)
	}
	r = calnet(t, "", "verify", "--dir", filepath.Join(n.data, "network"), filepath.Join(n.data, "cals", b.Cal))
	if r.code != 1 || !strings.Contains(r.stdout, "revoked-ancestor") {
		t.Fatalf("offline verify of a revoked cal: %+v", r)
	}
}

func TestRecursiveGrowthThroughLocalAPI(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	parent := n.master()
	for level := 2; level <= 6; level++ {
		code, m := n.local(parent, "POST", "/v1/children", map[string]any{"permissions": []string{"spawn", "read"}, "memory_bytes": 32 << 20, "cpu_millis": 100})
		if code != 202 || m["state"] != "running" {
			t.Fatalf("level %d: %d %v", level, code, m)
		}
		child := m["cal"].(string)
		_, self := n.local(child, "GET", "/v1/self", nil)
		if self["id"] != child || int(self["depth"].(float64)) != level || self["parent"] != parent {
			t.Fatalf("level %d self: %v", level, self)
		}
		parent = child
	}
	// A Cal without spawn is refused.
	code, m := n.local(parent, "POST", "/v1/children", map[string]any{"permissions": []string{"read"}, "memory_bytes": 16 << 20, "cpu_millis": 50})
	if code != 202 {
		t.Fatalf("leaf without spawn: %d %v", code, m)
	}
	leaf := m["cal"].(string)
	code, m = n.local(leaf, "POST", "/v1/children", map[string]any{"permissions": []string{"read"}})
	if code != 403 || !strings.Contains(fmt.Sprint(m["error"]), "does not hold spawn") {
		t.Fatalf("spawn by a cal without spawn: %d %v", code, m)
	}
	// The parent lists and revokes its child through its local API.
	code, list := n.local(parent, "GET", "/v1/children", nil)
	_ = list
	if code != 200 {
		t.Fatalf("list children: %d", code)
	}
	code, m = n.local(parent, "DELETE", "/v1/children/"+leaf, nil)
	if code != 403 || !strings.Contains(fmt.Sprint(m["error"]), "does not hold revoke") {
		t.Fatalf("revoke without the revoke permission: %d %v", code, m)
	}
}

func TestSelfHealingAfterSIGKILL(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "victim", Permissions: []string{"read"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		c, err := n.c.Get(ctx, sp.Cal)
		if err != nil {
			t.Fatal(err)
		}
		killPID(t, c.PID)
		waitFor(t, "the cal to be operational again", 5*time.Second, func() bool {
			c2, err := n.c.Get(ctx, sp.Cal)
			return err == nil && c2.State == "running" && c2.Healthy && c2.PID != c.PID && c2.Restarts == round
		})
	}
}

func TestAPIBadInput(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	before, _ := n.c.List(context.Background())
	post := func(token, body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+n.addr+"/v1/cals", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := validatingClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tok := readToken(t, n.data)
	tests := []struct {
		name, token, body string
		status            int
		want              string
	}{
		{"bad token", "nope", `{"permissions":["read"]}`, 401, "credential"},
		{"malformed", tok, `{"permissions":`, 400, "body"},
		{"unknown field", tok, `{"permissions":["read"],"colour":"red"}`, 400, "unknown field"},
		{"case-variant key", tok, `{"Permissions":["read"]}`, 400, `unknown field \"Permissions\"`},
		{"case-variant duplicate", tok, `{"permissions":["read"],"PERMISSIONS":["admin"]}`, 400, `unknown field \"PERMISSIONS\"`},
		{"duplicated key", tok, `{"permissions":["read"],"permissions":["admin"]}`, 400, `duplicated field \"permissions\"`},
		{"trailing document", tok, `{"permissions":["read"]} {"permissions":["read"]}`, 400, "data after the document"},
		{"oversized", tok, `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "over the limit"},
		{"unknown permission", tok, `{"permissions":["fly"]}`, 400, `unknown permission`},
		{"escalation", tok, `{"parent":"` + n.master() + `","permissions":["read"],"memory_bytes":2251799813685248}`, 400, "memory_bytes"},
		{"quota over the parent's", tok, `{"permissions":["read"],"memory_bytes":1099511627776}`, 403, "quota memory_bytes"},
		{"bad name", tok, `{"name":"Bad Name","permissions":["read"]}`, 400, "name"},
		{"unknown parent", tok, `{"parent":"zzzzzzzz","permissions":["read"]}`, 404, "parent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(tt.token, tt.body)
			if code != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("got %d %s, want %d containing %q", code, body, tt.status, tt.want)
			}
		})
	}
	// A revocation with a second document after the first was carried out
	// before the body was decoded strictly.
	req, _ := http.NewRequest("POST", "http://"+n.addr+"/v1/cals/"+n.master()+"/revoke", strings.NewReader(`{"reason":"x"} {"reason":"y"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "data after the document") {
		t.Fatalf("revoke with trailing data: %d %s", resp.StatusCode, b)
	}
	after, _ := n.c.List(context.Background())
	if len(after) != len(before) {
		t.Fatalf("bad requests changed the registry: %d -> %d cals", len(before), len(after))
	}
	for _, c := range after {
		if c.State == "revoked" {
			t.Fatalf("a bad request revoked cal %s", c.ID)
		}
	}
}

func TestKillSwitchAndBurst(t *testing.T) {
	needRoot(t)
	// --max-cals bounds the work a slow machine is given: when the burst
	// lasts long enough for the token bucket to admit more, the rest is
	// refused with 429 too.
	n := up(t, filepath.Join(t.TempDir(), "data"), "--spawn-rate", "20", "--spawn-burst", "40", "--parent-spawn-burst", "40", "--max-cals", "201")
	ctx := context.Background()
	if r := n.cli("spawning", "pause"); r.code != 0 {
		t.Fatalf("pause: %+v", r)
	}
	_, err := n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}}, false)
	var ae *client.Error
	if !asAPIError(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "kill switch") {
		t.Fatalf("spawn while paused: %v", err)
	}
	n.cli("spawning", "resume")

	// 1,000 requests at once: the rate limits answer 429 with Retry-After,
	// nothing crashes, every accepted spawn runs.
	var mu sync.Mutex
	var accepted []string
	counts := map[int]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range 1000 {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sp, err := n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}, MemoryBytes: 16 << 20, CPUMillis: 10, IdempotencyKey: fmt.Sprint("burst-", i)}, false)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				counts[202]++
				accepted = append(accepted, sp.ID)
				return
			}
			var ae *client.Error
			if asAPIError(err, &ae) {
				counts[ae.Status]++
				if ae.Status == 429 && ae.RetryAfter <= 0 {
					t.Errorf("429 without Retry-After")
				}
				// On a slow machine the burst lasts long enough for the
				// token bucket to admit more than the Master Cal's CPU
				// quota holds (200 children of 10m): those are refused
				// by the quota, which is a limit doing its job too.
				if ae.Status == 403 && !strings.Contains(ae.Message, "quota cpu_millis") {
					t.Errorf("request %d: %v", i, err)
				}
				return
			}
			t.Errorf("request %d: %v", i, err)
		})
	}
	wg.Wait()
	if counts[202] == 0 || counts[429] == 0 || counts[202]+counts[429]+counts[403] != 1000 {
		t.Fatalf("status counts %v", counts)
	}
	t.Logf("burst of 1000: %v", counts)
	waitFor(t, "every accepted spawn to end", 120*time.Second, func() bool {
		for _, id := range accepted {
			sp, err := n.c.GetSpawn(ctx, id)
			if err != nil || (sp.State != "running" && sp.State != "failed") {
				return false
			}
		}
		return true
	})
	for _, id := range accepted {
		if sp, _ := n.c.GetSpawn(ctx, id); sp.State != "running" {
			t.Errorf("accepted spawn %s: %s: %s", id, sp.State, sp.Reason)
		}
	}
	if _, err := n.c.Status(ctx); err != nil {
		t.Fatal(err)
	}
}

func asAPIError(err error, target **client.Error) bool {
	e, ok := err.(*client.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestControlPlaneKilledMidSpawns(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	n := up(t, data)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			// Cut short by the kill or not: what the network recorded
			// is checked below.
			_, _ = n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}, MemoryBytes: 16 << 20, CPUMillis: 10, IdempotencyKey: fmt.Sprint("k", i)}, false)
		})
	}
	time.Sleep(30 * time.Millisecond)
	n.stop(syscall.SIGKILL)
	wg.Wait()
	n.start()
	spawns, err := n.c.Spawns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every spawn to end", 60*time.Second, func() bool {
		spawns, _ = n.c.Spawns(ctx)
		for _, s := range spawns {
			if s.State != "running" && s.State != "failed" && s.State != "rejected" {
				return false
			}
		}
		return true
	})
	cals, _ := n.c.List(ctx)
	byID := map[string]client.Cal{}
	for _, c := range cals {
		byID[c.ID] = c
	}
	for _, s := range spawns {
		if s.State == "running" {
			if c, ok := byID[s.Cal]; !ok || c.State != "running" {
				t.Errorf("spawn %s says running but cal %s is %+v", s.ID, s.Cal, c)
			}
		}
	}
	for _, c := range cals {
		if c.State != "running" {
			t.Errorf("cal %s half-registered: %s (%s)", c.ID, c.State, c.LastError)
		}
	}
	r := calnet(t, "", "ledger", "verify", "--dir", filepath.Join(data, "network"))
	if r.code != 0 {
		t.Fatalf("ledger verify after the crash: %+v", r)
	}
	// The host agrees: one process and one group per running Cal (the
	// Master adopted, not started twice), nothing of any other.
	n.hostCheck(calnetBin)
	// Retrying a request with its idempotency key never makes a second cal.
	before := len(cals)
	for i := range 30 {
		// A retry may fail (its first attempt failed); what it made is
		// counted below.
		_, _ = n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}, MemoryBytes: 16 << 20, CPUMillis: 10, IdempotencyKey: fmt.Sprint("k", i)}, true)
	}
	cals, _ = n.c.List(ctx)
	grew := len(cals) - before
	completed := 0
	for _, s := range spawns {
		if s.State == "running" && s.IdempotencyKey != "" {
			completed++
		}
	}
	// Requests that completed before the crash must not make a second
	// Cal; the others (failed, or never received) may make one each.
	if grew > 30-completed {
		t.Fatalf("retries created %d cals; only %d of 30 requests had not completed", grew, 30-completed)
	}
	again, _ := n.c.Spawns(ctx)
	perKey := map[string]int{}
	for _, s := range again {
		if s.IdempotencyKey != "" {
			perKey[s.IdempotencyKey]++
		}
	}
	for k, c := range perKey {
		if c > 1 {
			t.Errorf("idempotency key %s has %d spawn records", k, c)
		}
	}
}

func TestDeveloperTokens(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	team, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "team", Permissions: []string{"spawn", "read", "talk"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.c.CreateToken(ctx, "too-much", "team", []string{"admin"}); err == nil {
		t.Fatal("a token with a permission the cal lacks was created")
	}
	secret, rec, err := n.c.CreateToken(ctx, "dev", "team", []string{"spawn", "read"})
	if err != nil {
		t.Fatal(err)
	}
	dev := client.New(n.addr, secret).WithHTTPClient(validatingClient(t))
	// Spawning under its Cal, with permissions it holds, works; the parent
	// defaults to the token's Cal.
	sp, err := dev.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}}, true)
	if err != nil || sp.State != "running" || sp.Parent != team.Cal || sp.Actor != "token:"+rec.ID {
		t.Fatalf("dev spawn: %+v %v", sp, err)
	}
	cals, _ := dev.List(ctx)
	if len(cals) != 2 {
		t.Fatalf("the token sees %d cals, want its subtree of 2", len(cals))
	}
	checks := []struct {
		name   string
		call   func() error
		status int
	}{
		{"spawn outside its subtree", func() error {
			_, err := dev.Spawn(ctx, client.SpawnRequest{Parent: n.master(), Permissions: []string{"read"}}, false)
			return err
		}, 404},
		{"permission beyond the token", func() error {
			_, err := dev.Spawn(ctx, client.SpawnRequest{Permissions: []string{"talk"}}, false)
			return err
		}, 403},
		{"revoke without revoke", func() error { _, err := dev.Revoke(ctx, sp.Cal, ""); return err }, 403},
		{"kill switch", func() error { return dev.SetSpawning(ctx, true) }, 403},
		{"shutdown", func() error { return dev.Shutdown(ctx) }, 403},
		{"tokens", func() error { _, err := dev.Tokens(ctx); return err }, 403},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			var ae *client.Error
			if err := c.call(); !asAPIError(err, &ae) || ae.Status != c.status {
				t.Fatalf("got %v, want HTTP %d", err, c.status)
			}
		})
	}
	if err := n.c.DeleteToken(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	var ae *client.Error
	if _, err := dev.List(ctx); !asAPIError(err, &ae) || ae.Status != 401 {
		t.Fatalf("a deleted token still works: %v", err)
	}
	// The store keeps only the hash of the secret.
	db, _ := os.ReadFile(filepath.Join(n.data, "state.db"))
	if strings.Contains(string(db), secret) {
		t.Fatal("the token secret is stored in clear")
	}
}

func TestEventsPoliciesActivationAndAudit(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var events []client.Event
	watch(t, n.c, 0, func(e client.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})
	// A never-restart Cal with lowered isolation.
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "once", Permissions: []string{"read"}, RestartPolicy: "never", Without: []string{"seccomp"}}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("spawn: %+v %v", sp, err)
	}
	c, _ := n.c.Get(ctx, "once")
	if c.Isolation["seccomp"] || !c.Isolation["pid-namespace"] || c.ActivatedAt.IsZero() {
		t.Fatalf("isolation %v, activated %v", c.Isolation, c.ActivatedAt)
	}
	m, err := n.c.Metrics(ctx, "once")
	if err != nil || !strings.Contains(m, "# HELP go_goroutines") || !strings.Contains(m, `go_goroutines{cal="`+c.ID+`"}`) ||
		!strings.Contains(m, `calnet_cal_component_ready{cal="`+c.ID+`",component="identity"`) {
		t.Fatalf("metrics: %q %v", m, err)
	}
	killPID(t, c.PID)
	waitFor(t, "the never-restart cal to stay stopped", 5*time.Second, func() bool {
		c2, _ := n.c.Get(ctx, "once")
		return c2.State == "stopped"
	})
	waitFor(t, "the event stream to report the spawn", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for _, e := range events {
			seen[e.Type] = true
		}
		return seen["spawn.requested"] && seen["spawn.admitted"] && seen["spawn.running"] && seen["cal.running"] && seen["cal.stopped"]
	})
	// Every event is also in the audit trail, and the activation in the ledger.
	ap, err := n.c.Audit(ctx, client.AuditQuery{Type: "spawn.admitted", Actor: "admin"})
	if err != nil || len(ap.Records) == 0 {
		t.Fatalf("audit trail: %v %+v", err, ap)
	}
	r := calnet(t, "", "ledger", "log", "--dir", filepath.Join(n.data, "network"))
	if !strings.Contains(r.stdout, "activation") {
		t.Fatalf("ledger has no activation entry:\n%s", r.stdout)
	}
}

func TestReflectionsVaultAndSharing(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	a, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "thinker", Permissions: []string{"spawn", "read", "share"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "thinker", Name: "listener", Permissions: []string{"read"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, kind := range []string{"observation", "decision", "spawn-outcome"} {
		if _, err := n.c.Reflect(ctx, "thinker", kind, fmt.Sprint("thought ", i), json.RawMessage(`{"i":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := n.c.Reflections(ctx, "thinker", 0)
	if err != nil || len(rs) != 3 || rs[1].Kind != "decision" || rs[2].Prev == "" {
		t.Fatalf("reflections %+v %v", rs, err)
	}
	// The workload writes through the local API too.
	if code, _ := n.local(a.Cal, "POST", "/v1/reflections", map[string]any{"kind": "note", "text": "from the workload"}); code != 201 {
		t.Fatalf("local reflect: %d", code)
	}
	// The vault holds no clear text.
	raw, _ := os.ReadFile(filepath.Join(n.data, "cals", a.Cal, "vault", "reflections.log"))
	if len(raw) == 0 || strings.Contains(string(raw), "thought") {
		t.Fatal("the reflection log is missing or in clear")
	}
	// Share with the child; the child records who shared.
	got, err := n.c.Share(ctx, "thinker", "listener", []uint64{0, 2})
	if err != nil || got.Kind != "shared" || !strings.Contains(got.Text, a.Cal) {
		t.Fatalf("share: %+v %v", got, err)
	}
	brs, _ := n.c.Reflections(ctx, b.Cal, 0)
	if len(brs) != 1 || !strings.Contains(string(brs[0].Data), "thought 2") {
		t.Fatalf("listener's log: %+v", brs)
	}
	// The child lacks share: it cannot share back.
	var ae *client.Error
	if _, err := n.c.Share(ctx, "listener", "thinker", []uint64{0}); !asAPIError(err, &ae) || ae.Status != 403 {
		t.Fatalf("share without the permission: %v", err)
	}
	// Tampering with the stored bytes is detected and reported.
	p := filepath.Join(n.data, "cals", a.Cal, "vault", "reflections.log")
	raw[len(raw)/2] ^= 0xff
	must(t, os.WriteFile(p, raw, 0o600))
	if _, err := n.c.Reflections(ctx, "thinker", 0); !asAPIError(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "entry") {
		t.Fatalf("read after tampering: %v", err)
	}
	// The rest of the network keeps working.
	if _, err := n.c.Reflections(ctx, b.Cal, 0); err != nil {
		t.Fatal(err)
	}
}

func TestDNSDiscovery(t *testing.T) {
	needRoot(t)
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (scripts/test.sh installs dnsutils)")
	}
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "web", Permissions: []string{"spawn", "read", "talk"}}, true); err != nil {
		t.Fatal(err)
	}
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "web", Permissions: []string{"read"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := n.c.Get(ctx, sp.Cal)
	if child.Namespace != sp.Cal[:8]+".web.master" {
		t.Fatalf("namespace %q", child.Namespace)
	}
	host, port, _ := net.SplitHostPort(n.dns)
	q := func(name, typ string) string {
		out, _ := exec.Command(dig, "@"+host, "-p", port, "+short", name, typ).CombinedOutput()
		return string(out)
	}
	if out := q(child.Namespace+".calnet", "TXT"); !strings.Contains(out, "id="+sp.Cal) || !strings.Contains(out, "capabilities=read") {
		t.Fatalf("TXT: %s", out)
	}
	if out := q("web.master.calnet", "A"); strings.TrimSpace(out) != "127.0.0.1" {
		t.Fatalf("A: %q", out)
	}
	apiPort := n.router[strings.LastIndex(n.router, ":")+1:] // DNS points at the Infinity Router
	if out := q("_calnet._tcp.web.master.calnet", "SRV"); !strings.Contains(out, apiPort+" web.master.calnet.") {
		t.Fatalf("SRV: %q", out)
	}
	// A revoked Cal disappears from DNS.
	if _, err := n.c.Revoke(ctx, "web", ""); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(dig, "@"+host, "-p", port, "web.master.calnet", "A").CombinedOutput()
	if !strings.Contains(string(out), "NXDOMAIN") {
		t.Fatalf("revoked cal still resolves: %s", out)
	}
}

func TestInfinityRouterAndQR(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "shop", Permissions: []string{"read"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	card, err := n.c.Card(ctx, "shop")
	if err != nil || card.Namespace != "shop.master" || !strings.HasPrefix(card.Fingerprint, "SHA256:") || card.URL != "http://"+n.router+"/shop.master/" {
		t.Fatalf("card %+v %v", card, err)
	}
	// A connection per request: one routed by Host is pinned to its Cal.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url, host string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil && resp.StatusCode == 200 {
			t.Fatalf("%s: a 200 without its JSON: %v", url, err) // an error page may be text
		}
		return resp.StatusCode, m
	}
	// Path and Host routing both reach the Cal's gateway, which answers
	// with its own card: the same fingerprint the control plane computed.
	for _, c := range []struct{ url, host string }{{card.URL, ""}, {"http://" + n.router + "/", "shop.master.calnet"}} {
		code, m := get(c.url, c.host)
		if code != 200 || m["cal"] != sp.Cal || m["fingerprint"] != card.Fingerprint || m["namespace"] != "shop.master" {
			t.Fatalf("routed %v (host %q): %d %v", c.url, c.host, code, m)
		}
	}
	if code, _ := get("http://"+n.router+"/nobody.master/", ""); code != 404 {
		t.Fatalf("unknown namespace: %d", code)
	}
	// A connection routed by Host is pinned to the Cal: a later request on
	// it for another namespace gets 421 from the Cal's gateway, which knows
	// the network's domain, and the connection is closed.
	conn, err := net.Dial("tcp", n.router)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i, host := range []string{"shop.master.calnet", "shop.master.calnet", "other.master.calnet"} {
		if i == 2 {
			// The router handed the client's socket to the Cal: the Cal's
			// process holds it and the control plane no longer does. The
			// router closes its copy once the Cal acknowledged the handoff,
			// which can be after the Cal answered: poll.
			var holders []int
			deadline := time.Now().Add(10 * time.Second)
			for {
				holders = socketHolders(t, conn)
				if len(holders) == 1 && holders[0] != n.cmd.Process.Pid {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the routed connection's socket is held by %v (control plane %d), want the Cal alone", holders, n.cmd.Process.Pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 421, false: 200}[i == 2]; resp.StatusCode != want {
			t.Fatalf("pinned request %d (host %s): %d, want %d", i, host, resp.StatusCode, want)
		}
	}
	// The QR code decodes back to the card, with a real decoder.
	png, err := n.c.CardQR(ctx, "shop", "png")
	if err != nil {
		t.Fatal(err)
	}
	text := decodeQR(t, png)
	var got client.Card
	if err := json.Unmarshal([]byte(text), &got); err != nil || got != *card {
		t.Fatalf("QR decodes to %q", text)
	}
	svg, err := n.c.CardQR(ctx, "shop", "svg")
	if err != nil || !strings.HasPrefix(string(svg), "<svg") {
		t.Fatalf("svg: %v", err)
	}
	r := n.cli("qr", "shop")
	if r.code != 0 || !strings.Contains(r.stdout, card.Fingerprint) {
		t.Fatalf("calnet qr: %+v", r)
	}
	// Siblings spawned at once with the same name: a name belongs to one
	// live Cal, so a spawn either gets it or is refused with 409 naming the
	// name (which of them wins is a race); every Cal that runs has its own
	// namespace, "twin.master" is the one named twin, and each routes to
	// its own Cal.
	var wg sync.WaitGroup
	ids := make([]string, 4)
	errs := make([]error, 4)
	for i := range ids {
		wg.Go(func() {
			sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "twin", Permissions: []string{"read"}}, true)
			if err == nil && sp.State != "running" {
				err = fmt.Errorf("spawn %s: %s", sp.State, sp.Reason)
			}
			if err != nil {
				errs[i] = err
				return
			}
			ids[i] = sp.Cal
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for i, id := range ids {
		if err := errs[i]; err != nil {
			var ae *client.Error
			if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, `name: "twin" is taken`) {
				t.Fatalf("twin spawn %d: %v, want success or 409 naming the name", i, err)
			}
			continue
		}
		c, err := n.c.Card(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.Namespace] != "" || (c.Namespace != "twin.master" && c.Namespace != id[:16]+".master") {
			t.Fatalf("twin %s got namespace %q (seen %v)", id, c.Namespace, seen)
		}
		seen[c.Namespace] = id
		if code, m := get(c.URL, ""); code != 200 || m["cal"] != id {
			t.Fatalf("twin %s routed to %v (%d)", id, m["cal"], code)
		}
	}
	if seen["twin.master"] == "" {
		t.Fatalf("no twin got the name: %v (errors %v)", seen, errs)
	}
	if c, err := n.c.Get(ctx, seen["twin.master"]); err != nil || c.Name != "twin" {
		t.Fatalf("the Cal at twin.master: %+v %v, want the one named twin", c, err)
	}

	// A revoked Cal is no longer routed.
	if _, err := n.c.Revoke(ctx, "shop", ""); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(card.URL, ""); code != 404 {
		t.Fatalf("revoked cal still routed: %d", code)
	}
}

// socketHolders lists the processes holding the far end (the server's
// socket) of a loopback TCP connection, from /proc.
func socketHolders(t *testing.T, c net.Conn) []int {
	t.Helper()
	local, remote := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
	// The server's socket has the router's address as local and ours as
	// remote; /proc/net/tcp writes ports in hex.
	want := fmt.Sprintf(":%04X %s:%04X", remote.Port, "0100007F", local.Port)
	b, err := os.ReadFile("/proc/self/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	inode := ""
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 9 && strings.Contains(f[1]+" "+f[2], want) {
			inode = f[9]
		}
	}
	if inode == "" {
		t.Fatalf("no socket %s in /proc/net/tcp", want)
	}
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); l == "socket:["+inode+"]" {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

const agentTemplate = `name: agent
description: a shell loop as the workload
permissions: [read]
tiers:
  "-10": [{name: identity, builtin: identity}]
  "-9": [{name: vault, builtin: vault}]
  "-6": [{name: discovery, builtin: discovery}]
  "-5": [{name: mesh, builtin: mesh}]
  "-3":
    - name: loop
      command: [/bin/sh, -c, "while true; do sleep 1; done"]
      health: {exec: [/bin/true], interval: 200ms}
  "-2": [{name: console, builtin: console}]
  "0": [{name: gateway, builtin: gateway}]
`

func tierOf(c *client.Cal, name string) (client.Tier, client.Component) {
	for _, t := range c.Tiers {
		for _, comp := range t.Components {
			if comp.Name == name {
				return t, comp
			}
		}
	}
	return client.Tier{}, client.Component{}
}

func TestTemplatesAndTiers(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	// The default template: all eleven tiers, bottom to top, all ready.
	d, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "plain"}, true)
	if err != nil || d.State != "running" {
		t.Fatalf("default spawn: %+v %v", d, err)
	}
	c, _ := n.c.Get(ctx, "plain")
	if len(c.Tiers) != 11 || c.Template != "default" || c.Tiers[0].Tier != 0 || c.Tiers[10].Tier != -10 {
		t.Fatalf("default tiers: %+v", c.Tiers)
	}
	for _, tier := range c.Tiers {
		if tier.State != "ready" {
			t.Errorf("tier %d is %s", tier.Tier, tier.State)
		}
	}
	// A user workload in tier -3, restarted alone when it dies.
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "agent", TemplateYAML: agentTemplate}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("template spawn: %+v %v", sp, err)
	}
	c, _ = n.c.Get(ctx, "agent")
	if _, loop := tierOf(c, "loop"); loop.State != "ready" || loop.PID == 0 {
		t.Fatalf("workload: %+v", loop)
	}
	kids, err := exec.Command("pgrep", "-P", fmt.Sprint(c.PID)).Output()
	if err != nil || len(strings.Fields(string(kids))) == 0 {
		t.Fatalf("the cal %d has no workload process: %v", c.PID, err)
	}
	for _, f := range strings.Fields(string(kids)) {
		pid, err := strconv.Atoi(f)
		must(t, err)
		killPID(t, pid)
	}
	waitFor(t, "the workload to be restarted alone", 10*time.Second, func() bool {
		c2, err := n.c.Get(ctx, "agent")
		if err != nil {
			return false
		}
		_, loop := tierOf(c2, "loop")
		return loop.Restarts >= 1 && loop.State == "ready" && c2.PID == c.PID
	})
	// A workload that can never become ready: tiers above it stop, and
	// the Cal reports itself degraded; the rest of the network works.
	broken := strings.Replace(agentTemplate, `"while true; do sleep 1; done"`, `"exit 3"`, 1)
	broken = strings.Replace(broken, "name: agent", "name: broken", 1)
	sp, err = n.c.Spawn(ctx, client.SpawnRequest{Name: "broken", TemplateYAML: broken}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("broken spawn: %+v %v", sp, err)
	}
	var b *client.Cal
	waitFor(t, "the broken Cal to report itself degraded", 20*time.Second, func() bool {
		b, _ = n.c.Get(ctx, "broken")
		return b != nil && b.Degraded != "" && !b.Healthy
	})
	if tier, _ := tierOf(b, "identity"); tier.State != "ready" {
		t.Fatalf("identity tier: %+v", tier)
	}
	if _, loop := tierOf(b, "loop"); loop.State != "failed" {
		t.Fatalf("failed workload: %+v", loop)
	}
	if _, err := n.c.Get(ctx, "agent"); err != nil {
		t.Fatal(err)
	}
	// A workload whose health check never passes: not ready in time, so
	// the tiers above stay down and the Cal is degraded.
	sick := strings.Replace(agentTemplate, "exec: [/bin/true], interval: 200ms", "exec: [/bin/false], interval: 200ms, ready: 1s", 1)
	sick = strings.Replace(sick, "name: agent", "name: sick", 1)
	if sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "sick", TemplateYAML: sick}, true); err != nil || sp.State != "running" {
		t.Fatalf("sick spawn: %+v %v", sp, err)
	}
	s, _ := n.c.Get(ctx, "sick")
	if _, loop := tierOf(s, "loop"); loop.State != "failed" || !strings.Contains(loop.Error, "not ready within 1s") || s.Degraded == "" {
		t.Fatalf("sick workload: %+v degraded %q", loop, s.Degraded)
	}
	if _, gw := tierOf(s, "gateway"); gw.State != "stopped" && gw.State != "pending" {
		t.Fatalf("the gateway above a failed tier is %s", gw.State)
	}
	// Invalid templates are refused before anything is signed.
	var ae *client.Error
	_, err = n.c.Spawn(ctx, client.SpawnRequest{TemplateYAML: strings.Replace(agentTemplate, "/bin/sh", "sh", 1)}, false)
	if !asAPIError(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "line 11") {
		t.Fatalf("invalid template: %v", err)
	}
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Template: "nosuch"}, false); !asAPIError(err, &ae) || ae.Status != 404 {
		t.Fatalf("unknown template: %v", err)
	}
}

// TestExampleAgent runs examples/agent as a Cal's workload: it reflects
// on its queue and spawns helpers through the local API as it grows.
func TestExampleAgent(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	buildAgent(t, data)
	tmpl, err := os.ReadFile("../../examples/agent/template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := up(t, data)
	ctx := context.Background()
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "agent", TemplateYAML: string(tmpl)}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("spawn the agent: %+v %v", sp, err)
	}
	must(t, os.WriteFile(filepath.Join(data, "cals", sp.Cal, "work", "queue"), []byte("25\n"), 0o644))
	waitFor(t, "the agent to spawn 3 helpers for 25 queued items", 30*time.Second, func() bool {
		c, err := n.c.Get(ctx, "agent")
		return err == nil && len(c.Children) == 3
	})
	kinds := map[string]int{}
	waitFor(t, "the agent to reflect on its decision and the three outcomes", 10*time.Second, func() bool {
		rs, err := n.c.Reflections(ctx, "agent", 0)
		if err != nil {
			return false
		}
		kinds = map[string]int{}
		for _, r := range rs {
			kinds[r.Kind]++
		}
		return kinds["observation"] > 0 && kinds["decision"] > 0 && kinds["spawn-outcome"] == 3
	})
	// Its cgroups are sampled, and its queue gauge is in its series.
	waitFor(t, "metric series for the agent", 20*time.Second, func() bool {
		series, err := n.c.Series(ctx, "agent", time.Now().Add(-time.Minute))
		return err == nil && len(series["memory_bytes"]) > 0 && len(series["cpu_percent"]) > 0 && len(series["gauge:queue"]) > 0
	})
	// The workload's gauge is in the control plane's Prometheus metrics.
	if _, fams := scrape(t, n, readToken(t, n.data)); fams == nil {
		t.Fatal("/metrics refused the admin credential")
	} else if _, ok := sample(fams, "calnet_cal_workload_gauge", map[string]string{"name": "agent", "gauge": "queue"}); !ok {
		t.Fatal("calnet_cal_workload_gauge{name=agent,gauge=queue} is not in /metrics")
	}
	if host, err := n.c.Series(ctx, "host", time.Now().Add(-time.Minute)); err != nil || len(host["free_memory_bytes"]) == 0 {
		t.Fatalf("host series: %v %v", host, err)
	}
	h, err := n.c.Health(ctx, "agent")
	if err != nil || !h.Healthy || len(h.History) == 0 {
		t.Fatalf("health: %+v %v", h, err)
	}
}

func TestConsole(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	r := n.cli("console", "master", "-c", "status", "-c", "tiers", "-c", "reflect from the console", "-c", "reflections", "-c", "spawn read", "-c", "children", "-c", "nonsense")
	if r.code != 0 {
		t.Fatalf("console: %+v", r)
	}
	for _, want := range []string{"platform: every tier ready", "-10  identity", "reflection 0 written", "from the console", "spawn running: cal", `unknown command "nonsense"`, "bye"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("console output lacks %q:\n%s", want, r.stdout)
		}
	}
	// A developer token may not attach to a console.
	secret, _, err := n.c.CreateToken(context.Background(), "dev", "", []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(n.addr, secret).Console(context.Background(), "master"); err == nil {
		t.Fatal("a developer token attached to a console")
	}
}

func TestLimitsAtRunTime(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	l, err := n.c.Limits(ctx)
	if err != nil || l.MaxCals == 0 {
		t.Fatalf("limits: %+v %v", l, err)
	}
	bad := *l
	bad.SpawnBurst = 0
	var ae *client.Error
	if _, err := n.c.SetLimits(ctx, bad); !asAPIError(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "spawn_burst") {
		t.Fatalf("bad limits: %v", err)
	}
	// One spawn a minute, burst 1: the second spawn is rate limited.
	l.SpawnRate, l.SpawnBurst = 1.0/60, 1
	if _, err := n.c.SetLimits(ctx, *l); err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}}, false); !asAPIError(err, &ae) || ae.Status != 429 || ae.RetryAfter <= 0 {
		t.Fatalf("second spawn under a one-a-minute limit: %v", err)
	}
	r := n.cli("limits", "--max-cals", "5")
	if r.code != 0 || !strings.Contains(r.stdout, "max cals            5") {
		t.Fatalf("calnet limits: %+v", r)
	}
}

// buildAgent builds examples/agent (static) into data's programs
// directory, where a template's workload command finds it.
func buildAgent(t *testing.T, data string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(data, "programs"), 0o755))
	build := exec.Command("go", "build", "-o", filepath.Join(data, "programs", "agent"), "github.com/soulfra/calnet/examples/agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example agent: %v\n%s", err, out)
	}
}
