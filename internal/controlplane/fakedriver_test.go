package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/caldir"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/calrt"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/driver/fake"
	"github.com/soulfra/calnet/internal/hostuid"
)

// The control plane's logic over the fake driver (package driver/fake):
// each Cal is the real Cal runtime run in this test's process (its own
// key, chain and mutual TLS, registration and watch stream), so spawning,
// healing, revocation and adoption go through the real pipeline, without
// namespaces, cgroups or uid switches. What the host did is the fake
// driver's record: which Cals run, how often each started, whether one
// ever ran twice.

// inProcessCal runs the real Cal runtime for spec, until ctx ends or the
// Cal is revoked.
func inProcessCal(ctx context.Context, spec driver.Spec) error {
	rt, err := calrt.Open(spec.Dir, spec.RunDir, spec.Secret, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	rt.ListenWith(func(name string) (*net.UnixListener, error) {
		f := spec.Sockets[name]
		if f == nil {
			return nil, fmt.Errorf("no socket %q was passed to this cal", name)
		}
		return caldir.Listen(f)
	})
	return rt.Run(ctx)
}

// fakeNet is a running control plane over a fake driver.
type fakeNet struct {
	t      *testing.T
	s      *Server
	d      *fake.Driver
	data   string
	cancel context.CancelFunc
	done   chan error
}

// runFake opens and runs a control plane on data over d and waits until
// its Master Cal runs. cfg adjusts the configuration.
func runFake(t *testing.T, d *fake.Driver, data string, cfg func(*Config)) *fakeNet {
	t.Helper()
	lim := DefaultLimits
	lim.MaxCPUPressure = 101 // a loaded test machine must not refuse spawns
	c := Config{DataDir: data, Driver: d, Addr: "127.0.0.1:0", RouterAddr: "127.0.0.1:0", Limits: lim, DeployTimeout: time.Minute,
		UIDs: hostuid.New(filepath.Join(data, "..", "uids"))}
	if cfg != nil {
		cfg(&c)
	}
	s, err := Open(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &fakeNet{t: t, s: s, d: d, data: data, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- s.Run(ctx) }()
	t.Cleanup(n.stop)
	n.waitState(s.net.Info.Master.String(), StateRunning)
	return n
}

// stop stops the control plane as `calnet down` does (every Cal stops).
func (n *fakeNet) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		n.t.Errorf("run: %v", err)
	}
	n.cancel = nil
}

// crash ends the control plane as a SIGKILL would: its Cals run on,
// nothing it holds reaches them any more.
func (n *fakeNet) crash() {
	release := n.d.Orphan()
	n.cancel()
	release()
	if err := <-n.done; err != nil {
		n.t.Errorf("run: %v", err)
	}
	n.cancel = nil
}

// call calls the operator API as the administrator.
func (n *fakeNet) call(method, path string, body any, out any) int {
	n.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req := httptest.NewRequest(method, path, strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+n.s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rr := httptest.NewRecorder()
	n.s.apiHandler().ServeHTTP(rr, req)
	if out != nil && rr.Code/100 == 2 {
		if err := json.Unmarshal(rr.Body.Bytes(), out); err != nil {
			n.t.Fatalf("%s %s: %v: %s", method, path, err, rr.Body)
		}
	}
	if rr.Code/100 != 2 {
		n.t.Logf("%s %s: %d %s", method, path, rr.Code, rr.Body)
	}
	return rr.Code
}

// spawn spawns a child of the Master and waits for it to run.
func (n *fakeNet) spawn(req SpawnParams) *SpawnRecord {
	n.t.Helper()
	var sp SpawnRecord
	if code := n.call(http.MethodPost, "/v1/cals?wait=true", req, &sp); code/100 != 2 {
		n.t.Fatalf("spawn %+v: status %d", req, code)
	}
	if sp.State != SpawnRunning {
		n.t.Fatalf("spawn %s ended %s: %s", sp.ID, sp.State, sp.Reason)
	}
	return &sp
}

// waitState polls the registry until the Cal is in state.
func (n *fakeNet) waitState(id, state string) *CalRecord {
	n.t.Helper()
	var rec *CalRecord
	n.waitFor(fmt.Sprintf("cal %s to be %s", id, state), func() bool {
		var err error
		rec, err = n.s.getCal(n.t.Context(), id)
		return err == nil && rec.State == state && (state != StateRunning || rec.Healthy)
	})
	return rec
}

// waitFor polls cond (after every change on the host, and every 20 ms
// for changes elsewhere) until it holds, for at most a minute.
func (n *fakeNet) waitFor(what string, cond func() bool) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(n.t.Context(), time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			n.t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// noneTwice fails the test if any Cal ever ran twice at once.
func noneTwice(t *testing.T, d *fake.Driver) {
	t.Helper()
	if tw := d.Twice(); len(tw) > 0 {
		t.Errorf("cals that ran twice at once: %v", tw)
	}
}

// TestFakeRestartPolicies: how a Cal's process ends and its restart
// policy decide whether the supervisor starts it again.
func TestFakeRestartPolicies(t *testing.T) {
	d := fake.New()
	d.Run = inProcessCal
	n := runFake(t, d, t.TempDir(), nil)
	for i, tc := range []struct {
		policy    string
		exit      error // nil: a clean exit
		restarted bool
		state     string
	}{
		{RestartAlways, fake.ErrKilled, true, StateRunning},
		{RestartAlways, nil, true, StateRunning},
		{RestartOnFailure, fake.ErrKilled, true, StateRunning},
		{RestartOnFailure, nil, false, StateStopped},
		{RestartNever, fake.ErrKilled, false, StateStopped},
		{RestartNever, nil, false, StateStopped},
	} {
		t.Run(fmt.Sprintf("%s/%v", tc.policy, tc.exit), func(t *testing.T) {
			sp := n.spawn(SpawnParams{Name: fmt.Sprint("p", i), Permissions: []string{"read"}, RestartPolicy: tc.policy})
			pid, _ := d.Running(sp.Cal)
			d.Exit(sp.Cal, tc.exit)
			starts := 1
			if tc.restarted {
				starts = 2
				n.waitFor("the restart", func() bool { return d.Starts(sp.Cal) == 2 })
			}
			rec := n.waitState(sp.Cal, tc.state)
			if tc.restarted {
				if newPID, ok := d.Running(sp.Cal); !ok || newPID == pid || rec.PID != newPID {
					t.Errorf("restarted: host pid %d (running %v), before %d, registry %d", newPID, ok, pid, rec.PID)
				}
			} else if _, ok := d.Running(sp.Cal); ok {
				t.Error("runs again, against its restart policy")
			}
			if got := d.Starts(sp.Cal); got != starts {
				t.Errorf("started %d times, want %d", got, starts)
			}
		})
	}
	n.stop()
	noneTwice(t, d)
	if live := d.Live(); len(live) > 0 {
		t.Errorf("cals still run after the control plane stopped: %v", live)
	}
}

// TestFakeRestartIntensity: a Cal that keeps crashing is restarted
// RestartIntensity times within RestartPeriod, then marked failed and
// left alone.
func TestFakeRestartIntensity(t *testing.T) {
	d := fake.New()
	d.Run = inProcessCal
	n := runFake(t, d, t.TempDir(), func(c *Config) { c.Limits.RestartIntensity, c.Limits.RestartPeriod = 2, time.Hour })
	sp := n.spawn(SpawnParams{Name: "crashy", Permissions: []string{"read"}})
	for crash := 1; crash <= 3; crash++ {
		n.waitFor(fmt.Sprintf("start %d", crash), func() bool { _, ok := d.Running(sp.Cal); return ok && d.Starts(sp.Cal) == crash })
		d.Crash(sp.Cal)
	}
	rec := n.waitState(sp.Cal, StateFailed)
	if !strings.Contains(rec.LastError, "giving up") {
		t.Errorf("last error %q does not say the supervisor gave up", rec.LastError)
	}
	if got := d.Starts(sp.Cal); got != 3 {
		t.Errorf("started %d times, want 3 (the first and 2 restarts)", got)
	}
	if _, ok := d.Running(sp.Cal); ok {
		t.Error("a failed cal runs")
	}
	noneTwice(t, d)
}

// TestFakeRevokeSubtree: revoking a Cal stops it and its children, and no
// crash or restart of the control plane starts them again.
func TestFakeRevokeSubtree(t *testing.T) {
	d := fake.New()
	d.Run = inProcessCal
	data := t.TempDir()
	n := runFake(t, d, data, nil)
	a := n.spawn(SpawnParams{Name: "a", Permissions: []string{"read", "spawn"}})
	b := n.spawn(SpawnParams{Parent: a.Cal, Name: "b", Permissions: []string{"read"}})
	keep := n.spawn(SpawnParams{Name: "keep", Permissions: []string{"read"}})
	if code := n.call(http.MethodPost, "/v1/cals/"+a.Cal+"/revoke", map[string]string{"reason": "test"}, nil); code != 200 {
		t.Fatalf("revoke: status %d", code)
	}
	for _, id := range []string{a.Cal, b.Cal} {
		n.waitState(id, StateRevoked)
		n.waitFor("revoked cal "+id+" to end", func() bool { _, ok := d.Running(id); return !ok })
	}
	// A crash of the control plane, then a start: recovery must not start
	// what is revoked, and adopts what runs.
	n.crash()
	n = runFake(t, d, data, nil)
	n.waitState(keep.Cal, StateRunning)
	for _, id := range []string{a.Cal, b.Cal} {
		if _, ok := d.Running(id); ok || d.Starts(id) != 1 {
			t.Errorf("revoked cal %s: running %v, started %d times", id, ok, d.Starts(id))
		}
	}
	if got := d.Starts(keep.Cal); got != 1 {
		t.Errorf("the cal that was kept started %d times across the crash, want 1 (adopted)", got)
	}
	noneTwice(t, d)
}

// TestFakeAdoptAfterCrash: a control plane SIGKILLed mid-life leaves its
// Cals running; the next one adopts them (no second start), they register
// again, and a later crash of an adopted Cal is healed.
func TestFakeAdoptAfterCrash(t *testing.T) {
	d := fake.New()
	d.Run = inProcessCal
	data := t.TempDir()
	n := runFake(t, d, data, nil)
	master := n.s.net.Info.Master.String()
	var kids []string
	for i := range 3 {
		kids = append(kids, n.spawn(SpawnParams{Name: fmt.Sprint("k", i), Permissions: []string{"read"}}).Cal)
	}
	pids := map[string]int{}
	for _, id := range append([]string{master}, kids...) {
		pids[id], _ = d.Running(id)
	}
	for round := range 2 {
		n.crash()
		n = runFake(t, d, data, nil)
		for id, pid := range pids {
			rec := n.waitState(id, StateRunning)
			if got, ok := d.Running(id); !ok || got != pid || rec.PID != pid {
				t.Errorf("round %d: cal %s runs as %d (%v), registry %d, before the crash %d", round, id, got, ok, rec.PID, pid)
			}
			if d.Starts(id) != 1 {
				t.Errorf("round %d: cal %s started %d times, want 1 (adopted)", round, id, d.Starts(id))
			}
		}
	}
	// The adopted Cal's exit status is unknown; it is healed all the same.
	d.Crash(kids[0])
	n.waitFor("the adopted cal's restart", func() bool { return d.Starts(kids[0]) == 2 })
	n.waitState(kids[0], StateRunning)
	n.stop()
	noneTwice(t, d)
}

// TestFakeDeployFailures: a driver that cannot start the Cal fails its
// spawn after the deploy's attempts, and the limits the driver is given
// are the spawn's quota.
func TestFakeDeployFailures(t *testing.T) {
	d := fake.New()
	d.Run = inProcessCal
	n := runFake(t, d, t.TempDir(), nil)
	for _, tc := range []struct {
		name     string
		failures int
		state    string
	}{
		{"two failures then a start", 2, SpawnRunning},
		{"every attempt fails", 3, SpawnFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range tc.failures {
				d.FailStart("", errors.New("injected start failure"))
			}
			req := SpawnParams{Name: strings.ReplaceAll(tc.name, " ", "-"), Permissions: []string{"read"}, CPUMillis: 120, MemoryBytes: 40 << 20, PIDs: 64}
			var sp SpawnRecord
			if code := n.call(http.MethodPost, "/v1/cals?wait=true", req, &sp); code/100 != 2 {
				t.Fatalf("spawn: status %d", code)
			}
			if sp.State != tc.state || sp.Attempts != tc.failures+1 && tc.state == SpawnRunning {
				t.Fatalf("spawn %s after %d failures: %s (%s), %d attempts", sp.ID, tc.failures, sp.State, sp.Reason, sp.Attempts)
			}
			if tc.state == SpawnFailed {
				if !strings.Contains(sp.Reason, "injected start failure") {
					t.Errorf("reason %q does not name the driver's error", sp.Reason)
				}
				if _, ok := d.Running(sp.Cal); ok {
					t.Error("the cal of a failed spawn runs")
				}
				return
			}
			spec, ok := d.Spec(sp.Cal)
			if !ok {
				t.Fatal("the cal does not run")
			}
			want := driver.Limits{CPUMillis: 120, MemoryBytes: 40 << 20, PIDs: 64, DiskBytes: spec.Limits.DiskBytes}
			if spec.Limits != want {
				t.Errorf("driver limits %+v, want %+v", spec.Limits, want)
			}
		})
	}
	n.stop()
	noneTwice(t, d)
	if live := d.Live(); !slices.Equal(live, []string{}) && len(live) > 0 {
		t.Errorf("cals still run after the control plane stopped: %v", live)
	}
}

// TestWatchTellsARevokedCalAtOnce: a Cal whose stream was down when it was
// revoked (or that reconnects to a restarted control plane) is told as it
// reconnects, and its stream ends; before, the stream stayed open and said
// nothing until the supervisor's signal (seen failing: no event in 5 s).
func TestWatchTellsARevokedCalAtOnce(t *testing.T) {
	d := fake.New()
	d.Run = inProcessCal
	n := runFake(t, d, t.TempDir(), nil)
	a := n.spawn(SpawnParams{Name: "a", Permissions: []string{"read"}})
	if code := n.call(http.MethodPost, "/v1/cals/"+a.Cal+"/revoke", map[string]string{"reason": "test"}, nil); code != 200 {
		t.Fatalf("revoke: status %d", code)
	}
	id, err := identity.ParseID(a.Cal)
	if err != nil {
		t.Fatal(err)
	}
	// The Cal's stream again, as it reconnects.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	rr := httptest.NewRecorder()
	n.s.handleWatch(rr, httptest.NewRequestWithContext(ctx, http.MethodGet, calproto.PathWatch, nil), id)
	if ctx.Err() != nil {
		t.Fatal("the stream of a revoked cal stayed open")
	}
	want := `"type":"` + calproto.EventRevoked + `"`
	if !strings.Contains(rr.Body.String(), want) {
		t.Fatalf("stream said %q, want an event with %s", rr.Body, want)
	}
}
