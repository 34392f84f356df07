package calrt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/soulfra/calnet/api"

	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/connlimit"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/router"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/internal/template"
)

// Component states.
const (
	compPending  = "pending"
	compStarting = "starting"
	compReady    = "ready"
	compFailed   = "failed"
	compStopped  = "stopped"
)

// TierState is one tier and CompState one of its components, as `calnet
// show` reports them (the API's wire types).
type (
	TierState = api.Tier
	CompState = api.Component
)

// tierSet tracks the platform's tiers.
type tierSet struct {
	mu       sync.Mutex
	tmpl     *template.Template
	states   map[int]*TierState
	degraded string // why the Cal is degraded, if it is
	stops    map[int][]func()
}

func newTierSet(t *template.Template) *tierSet {
	ts := &tierSet{tmpl: t, states: map[int]*TierState{}, stops: map[int][]func(){}}
	for _, n := range t.TierNumbers() {
		st := &TierState{Tier: n, State: compPending, Components: []CompState{}}
		for _, c := range t.Tiers[strconv.Itoa(n)] {
			kind := "builtin"
			if c.Builtin == "" {
				kind = "program"
			}
			st.Components = append(st.Components, CompState{Name: c.Name, Kind: kind, State: compPending})
		}
		if len(st.Components) == 0 {
			st.State = compReady
		}
		ts.states[n] = st
	}
	return ts
}

func (ts *tierSet) set(tier int, name, state, note, errMsg string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	st := ts.states[tier]
	for i := range st.Components {
		if st.Components[i].Name == name {
			c := &st.Components[i]
			c.State, c.Note, c.Error = state, note, errMsg
		}
	}
	st.State = compReady
	for _, c := range st.Components {
		if c.State != compReady {
			st.State = c.State
			if c.State == compFailed {
				break
			}
		}
	}
}

func (ts *tierSet) update(tier int, name string, fn func(*CompState)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for i := range ts.states[tier].Components {
		if ts.states[tier].Components[i].Name == name {
			fn(&ts.states[tier].Components[i])
		}
	}
}

// snapshot returns the tiers, top (0) first, as `calnet show` lists them.
func (ts *tierSet) snapshot() ([]TierState, string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []TierState
	for _, st := range ts.states {
		c := *st
		c.Components = make([]CompState, len(st.Components))
		copy(c.Components, st.Components)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tier > out[j].Tier })
	return out, ts.degraded
}

// onStop registers what stops a tier's component.
func (ts *tierSet) onStop(tier int, f func()) {
	ts.mu.Lock()
	ts.stops[tier] = append(ts.stops[tier], f)
	ts.mu.Unlock()
}

// failFrom marks the Cal degraded and stops every tier above tier, top
// first, as the PRD's platform does when a component cannot recover.
func (ts *tierSet) failFrom(tier int, why string) {
	ts.mu.Lock()
	ts.degraded = why
	var above []int
	for n := range ts.states {
		if n > tier {
			above = append(above, n)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(above)))
	var stops []func()
	for _, n := range above {
		stops = append(stops, ts.stops[n]...)
		delete(ts.stops, n)
		for i := range ts.states[n].Components {
			if c := &ts.states[n].Components[i]; c.State != compFailed {
				c.State = compStopped
			}
		}
		ts.states[n].State = compStopped
	}
	ts.mu.Unlock()
	for _, f := range stops {
		f()
	}
}

// loadTemplate reads the Cal's template (written by the control plane);
// without one the Cal runs the default template.
func loadTemplate(dir string) (*template.Template, error) {
	b, err := limitedfile.Read(filepath.Join(dir, calproto.TemplateFile), maxTemplateJSON)
	if errors.Is(err, os.ErrNotExist) {
		return template.Default(), nil
	}
	if err != nil {
		return nil, err
	}
	var t template.Template
	if err := strictjson.Unmarshal(b, maxTemplateJSON, &t); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return &t, nil
}

// startTiers brings the platform up from tier -10 to tier 0, each tier only
// once the one below is ready. It returns the first tier that failed, or 1.
func (rt *Runtime) startTiers(ctx context.Context, cancel context.CancelCauseFunc) (failed int) {
	ts := rt.tiers
	for _, n := range ts.tmpl.TierNumbers() {
		for _, c := range ts.tmpl.Tiers[strconv.Itoa(n)] {
			ts.set(n, c.Name, compStarting, "", "")
			var err error
			note := ""
			if c.Builtin != "" {
				note, err = rt.startBuiltin(ctx, n, c.Builtin)
			} else {
				err = rt.startProgram(ctx, n, c)
			}
			if err != nil {
				ts.set(n, c.Name, compFailed, note, err.Error())
				ts.failFrom(n, fmt.Sprintf("tier %d component %s: %v", n, c.Name, err))
				return n
			}
			ts.set(n, c.Name, compReady, note, "")
		}
	}
	return 1
}

func (rt *Runtime) startBuiltin(ctx context.Context, tier int, name string) (note string, err error) {
	switch name {
	case "identity":
		return "soul chain verified, identity key open", nil
	case "vault", "reflection":
		if rt.vaultErr != nil {
			return "", rt.vaultErr
		}
		return "encrypted to the Cal's hybrid post-quantum recipient", nil
	case "telemetry":
		return "metrics at /metrics on the Cal API", nil
	case "discovery":
		var ch calproto.Challenge
		if err := rt.call(ctx, http.MethodPost, calproto.PathChallenge, nil, &ch); err != nil {
			var ce *CPError
			if errors.As(err, &ce) {
				return "", fmt.Errorf("control plane refused: %w", err)
			}
			// Away (restarting or crashed): registration waits for it.
			return "control plane away; registers when it is back", nil
		}
		rt.challenge = ch.Challenge // answered at activation, once every tier is up
		return "control plane reachable; registers once every tier is up", nil
	case "mesh":
		return "mutual TLS (SPIFFE ID, X25519MLKEM768)", rt.serve(tier, calproto.APISocket, rt.apiHandler(), true, apiConns)
	case "autonomy":
		return "no spawn rules yet", nil
	case "console":
		if err := rt.serveLocal(tier, rt.localHandler()); err != nil {
			return "", err
		}
		return "CLI server (calnet console), local API on /data/local.sock", rt.listenConsole(tier)
	case "api":
		return "served with the mesh tier's mutual TLS", nil
	case "gateway":
		h := rt.gatewayHandler()
		if err := rt.serve(tier, calproto.GatewaySocket, h, false, gatewayConns); err != nil {
			return "", err
		}
		return "Infinity Router entry (connections routed by Host are handed over)", rt.serveHandoff(tier, h)
	}
	return "", fmt.Errorf("unknown builtin %q", name)
}

// serve starts an HTTP server on one of the sockets the control plane
// bound for the Cal, its connections bounded by lim; stopping the tier
// closes it.
func (rt *Runtime) serve(tier int, sock string, h http.Handler, mtls bool, lim connlimit.Limits) error {
	ln, err := rt.listen(sock)
	if err != nil {
		return err
	}
	rt.serveOn(tier, sock, ln, h, mtls, lim)
	return nil
}

// serveLocal serves the local API on /data/local.sock (0600), for the
// Cal's own workload: the control plane never dials it.
func (rt *Runtime) serveLocal(tier int, h http.Handler) error {
	ln, err := listenUnix(filepath.Join(rt.dir, calproto.LocalSocket), 0o600)
	if err != nil {
		return err
	}
	rt.serveOn(tier, calproto.LocalSocket, ln, h, false, localConns)
	return nil
}

func (rt *Runtime) serveOn(tier int, name string, ln net.Listener, h http.Handler, mtls bool, lim connlimit.Limits) {
	cl := connlimit.New(ln, connlimit.Config{Limits: lim, Budget: rt.conns, HTTP: !mtls, Name: name, Logger: rt.log})
	// Idle connections close after two minutes: the router's pinned
	// connections end with them.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout, ConnContext: router.ConnContext, ConnState: cl.ConnState}
	if mtls {
		srv.TLSConfig = caltls.Config(rt.certs, rt.isControlPlane, true)
		rt.serveLoop(name, func() error { return srv.ServeTLS(cl, "", "") })
	} else {
		rt.serveLoop(name, func() error { return srv.Serve(cl) })
	}
	rt.tiers.onStop(tier, func() { srv.Close() })
	rt.closers = append(rt.closers, func() { srv.Close() })
}

// serveHandoff serves h on the connections the router hands over to the
// gateway (its socket is in the Cal's host directory, which only root
// reaches).
func (rt *Runtime) serveHandoff(tier int, h http.Handler) error {
	ln, err := rt.listen(calproto.GatewayHandoffSocket)
	if err != nil {
		return err
	}
	hl := router.ListenHandoff(ln)
	// Handed-over connections are the router's clients: once handed over
	// they no longer count against the router, so they are bounded here,
	// per client IP.
	cl := connlimit.New(hl, connlimit.Config{Limits: handoffConns, Budget: rt.conns, HTTP: true, Name: "handoff", Logger: rt.log})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout, ConnContext: router.ConnContext, ConnState: cl.ConnState}
	rt.serveLoop("handoff", func() error { return srv.Serve(cl) })
	rt.tiers.onStop(tier, func() { srv.Close() })
	rt.closers = append(rt.closers, func() { srv.Close() })
	return nil
}

// serveLoop runs an HTTP server's serve loop in the background and logs how
// it ended, unless it was closed (its tier stopped, or the Cal).
func (rt *Runtime) serveLoop(name string, serve func() error) {
	go func() {
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			rt.log.Error("server stopped", "server", name, "err", err)
		}
	}()
}

// startProgram runs a workload program under supervision and waits until
// it is ready (its health check passes, or it is running if it has none).
func (rt *Runtime) startProgram(ctx context.Context, tier int, c template.Component) error {
	work := filepath.Join(rt.dir, "work")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("component %s: work directory: %w", c.Name, err)
	}
	if err := rt.serveWorkloadAPI(ctx); err != nil {
		return fmt.Errorf("component %s: workload api: %w", c.Name, err)
	}
	p := &program{rt: rt, tier: tier, c: c, work: work}
	if err := p.start(); err != nil {
		return err
	}
	rt.tiers.onStop(tier, p.stop)
	rt.closers = append(rt.closers, p.stop)
	ready := template.DefaultReadyWait
	if c.Health != nil && c.Health.Ready > 0 {
		ready = c.Health.Ready
	}
	deadline := time.Now().Add(ready)
	for {
		if p.healthy(ctx) {
			// Ready means healthy and still running a moment later: a
			// program that passes one check on its way out is not ready.
			time.Sleep(min(p.interval(), 200*time.Millisecond))
			if !p.exited() {
				go p.supervise(ctx)
				return nil
			}
		}
		if p.exited() && (c.Restart == "never") {
			return errors.New("exited before it was ready")
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("not ready within %v", ready)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.interval() / 4):
		}
		if p.exited() {
			if err := p.restart(); err != nil {
				return err
			}
		}
	}
}

// program is one supervised workload process.
type program struct {
	rt       *Runtime
	tier     int
	c        template.Component
	work     string
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	stopped  bool
	restarts []time.Time
}

func (p *program) interval() time.Duration {
	if p.c.Health != nil && p.c.Health.Interval > 0 {
		return p.c.Health.Interval
	}
	return time.Second
}

func (p *program) start() error {
	cmd := exec.Command(p.c.Command[0], p.c.Command[1:]...)
	cmd.Dir = p.work
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + p.work,
		"CALNET_CAL_ID=" + p.rt.ID().String(), "CALNET_LOCAL_API=" + filepath.Join(p.rt.dir, calproto.LocalSocket),
		"SPIFFE_ENDPOINT_SOCKET=unix://" + filepath.Join(p.rt.dir, WorkloadSocket)}
	for k, v := range p.c.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // how it ended is read from cmd.ProcessState (exitCode)
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	p.rt.tiers.update(p.tier, p.c.Name, func(s *CompState) { s.PID = cmd.Process.Pid })
	return nil
}

func (p *program) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (p *program) stop() {
	p.mu.Lock()
	p.stopped = true
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		p.kill(cmd, done) // not asked to exit (or exited already)
		return
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		p.kill(cmd, done)
	}
}

// kill kills the program and waits for it. One that has exited is done;
// a kill that fails otherwise is logged, and not waited for, as its exit
// may never come.
func (p *program) kill(cmd *exec.Cmd, done chan struct{}) {
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.rt.log.Error("killing a component", "tier", p.tier, "component", p.c.Name, "pid", cmd.Process.Pid, "err", err)
		return
	}
	<-done
}

// restart starts the program again, within the intensity limit.
func (p *program) restart() error {
	now := time.Now()
	p.mu.Lock()
	var recent []time.Time
	for _, t := range p.restarts {
		if now.Sub(t) < 30*time.Second {
			recent = append(recent, t)
		}
	}
	p.restarts = append(recent, now)
	n := len(p.restarts)
	p.mu.Unlock()
	if n > 5 {
		return fmt.Errorf("restarted %d times in 30s; giving up", n-1)
	}
	time.Sleep(min(time.Duration(50<<n)*time.Millisecond, 2*time.Second))
	p.rt.tiers.update(p.tier, p.c.Name, func(s *CompState) { s.Restarts++ })
	return p.start()
}

// healthy runs the health check once.
func (p *program) healthy(ctx context.Context) bool {
	if p.exited() {
		return false
	}
	h := p.c.Health
	if h == nil {
		return true
	}
	timeout := h.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if len(h.Exec) > 0 {
		cmd := exec.CommandContext(cctx, h.Exec[0], h.Exec[1:]...)
		cmd.Dir = p.work
		return cmd.Run() == nil
	}
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, h.HTTP, nil)
	resp, err := (&http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{}).DialContext}}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// supervise restarts the program when it exits (per its policy) or fails
// its health check three times running; if it cannot recover, the tiers
// above are stopped and the Cal reports itself degraded.
func (p *program) supervise(ctx context.Context) {
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.interval()):
		}
		p.mu.Lock()
		stopped := p.stopped
		p.mu.Unlock()
		if stopped {
			return
		}
		exited := p.exited()
		if !exited && p.healthy(ctx) {
			fails = 0
			p.rt.tiers.set(p.tier, p.c.Name, compReady, "", "")
			continue
		}
		if !exited {
			if fails++; fails < 3 {
				continue
			}
			p.rt.log.Warn("workload failed its health check 3 times; restarting", "component", p.c.Name)
			p.stopProcess()
		} else if p.c.Restart == "never" || (p.c.Restart == "on-failure" && p.exitCode() == 0) {
			p.rt.tiers.set(p.tier, p.c.Name, compStopped, "exited", "")
			return
		}
		fails = 0
		p.rt.tiers.set(p.tier, p.c.Name, compStarting, "restarting", "")
		if err := p.restart(); err != nil {
			p.rt.tiers.set(p.tier, p.c.Name, compFailed, "", err.Error())
			why := fmt.Sprintf("tier %d component %s: %v", p.tier, p.c.Name, err)
			p.rt.tiers.failFrom(p.tier, why)
			p.rt.reportDegraded(ctx, why)
			return
		}
	}
}

func (p *program) stopProcess() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	p.kill(cmd, done)
}

func (p *program) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}
