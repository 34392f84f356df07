package controlplane

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/ledger"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/sandbox"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/internal/template"
	"github.com/soulfra/calnet/trust"
)

// proc is the supervisor's view of one Cal process.
type proc struct {
	id       string
	inst     driver.Instance
	stopping bool
	restarts []time.Time
	// registered is closed when the current instance registers with this
	// control plane; an adopted instance is asked to register again.
	registered chan struct{}
	regOnce    *sync.Once
	adopted    bool // the instance was started by an earlier control plane
	// gen counts the instances tracked for the Cal: a monitor whose
	// instance was superseded (a restart asked for meanwhile) does not
	// start another.
	gen uint64
}

// adoptMaster gives the Master Cal created by netdir.Init its sandbox and
// registry record.
func (s *Server) adoptMaster(ctx context.Context) error {
	masterDir := filepath.Join(s.networkDir(), "master")
	key, err := s.net.LoadKey(masterDir)
	if err != nil {
		return err
	}
	chain, err := netdir.ReadChain(masterDir)
	if err != nil {
		return err
	}
	id := key.Public().ID().String()
	kek, err := s.newKEK(ctx, id)
	if err != nil {
		return err
	}
	sealed, err := identity.Seal(key, kek.Recipient())
	if err != nil {
		return err
	}
	uid, err := s.nextUID(ctx)
	if err != nil {
		return err
	}
	if err := s.sandboxFiles(ctx, id, uid, sealed, chain.Leaf(), chain, template.Default()); err != nil {
		return err
	}
	s.chains[chain.Leaf().Child()] = chain
	rec := s.newRecord(chain.Leaf(), "master", uid, "")
	rec.Namespace = "master"
	rec.Template = "default"
	return s.putCal(ctx, rec)
}

func (s *Server) newRecord(b *trust.Blessing, name string, uid int, spawn string) *CalRecord {
	parent := trust.GenesisParent
	if !b.IsGenesis() {
		parent = b.Parent().String()
	}
	feats := make([]string, len(s.cfg.Features))
	for i, f := range s.cfg.Features {
		feats[i] = string(f)
	}
	return &CalRecord{
		ID: b.Child().String(), Name: name, Parent: parent, Depth: b.Depth(), Permissions: b.Permissions().Names(),
		Quota: api.Quota(b.Constraints().Quota), State: StateDeploying, Children: []string{}, UID: uid, Features: feats,
		RestartPolicy: RestartAlways, CreatedAt: s.now(), Spawn: spawn,
	}
}

// errShuttingDown refuses to start a Cal while the control plane stops.
var errShuttingDown = errors.New("the control plane is stopping")

// track makes p the supervisor's process for its Cal with a fresh
// registration, creating it if needed, and returns that registration's
// channel: p.registered is replaced (under procMu) by the next track, a
// restart that may come before the caller reads it.
func (s *Server) track(id string) (*proc, <-chan struct{}) {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	p := s.procs[id]
	if p == nil {
		p = &proc{id: id}
		s.procs[id] = p
	}
	p.registered, p.regOnce, p.stopping, p.adopted = make(chan struct{}), new(sync.Once), false, false
	p.gen++
	return p, p.registered
}

// install makes inst the Cal's running instance and supervises it, unless
// the control plane is stopping (then it stops inst: a Cal started while
// stopAll ran must not outlive `calnet down`).
func (s *Server) install(ctx context.Context, p *proc, inst driver.Instance, adopted bool) error {
	s.procMu.Lock()
	if s.shuttingDown {
		s.procMu.Unlock()
		if err := inst.Stop(context.Background(), 2*time.Second); err != nil {
			s.log.Error("stopping a cal started while the control plane stops", "cal", p.id, "err", err)
		}
		return errShuttingDown
	}
	p.inst, p.adopted = inst, adopted
	gen := p.gen
	s.procMu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.monitor(p, inst, gen)
	}()
	return nil
}

// A Cal starts with a CPU limit of one core (it runs with GOMAXPROCS=1)
// for startWindow, then its quota applies (driver.Spec.StartCPUMillis): a
// start costs tens of milliseconds of CPU, and under a 100m quota the
// kernel ran it 10 ms per 100 ms period, so a SIGKILLed Cal took ten times
// longer to come back than its start costs. A Cal on a quota of a core or
// more starts under its quota.
const (
	startCPUMillis = 1000
	startWindow    = 3 * time.Second
)

// start launches a Cal's process and supervises it. The channel it
// returns is closed when that instance registers.
func (s *Server) start(ctx context.Context, rec *CalRecord) (<-chan struct{}, error) {
	kek, err := s.kekSecret(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	logf, err := os.OpenFile(s.logPath(rec.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// The Cal holds its own descriptor of the log from here on: it keeps
	// writing to it when this control plane is gone.
	defer logf.Close()
	p, registered := s.track(rec.ID)

	// The sockets the control plane and the router dial, bound where the
	// Cal cannot write; the Cal's process listens on its copies (and keeps
	// them when this control plane is gone: the next one dials the same
	// paths).
	host := s.dirs.Host(rec.ID)
	socks, err := host.Bind(calproto.APISocket, calproto.GatewaySocket, calproto.GatewayHandoffSocket, calproto.ConsoleSocket)
	if err != nil {
		return nil, fmt.Errorf("sockets of %s: %w", rec.ID, err)
	}
	defer func() {
		for _, f := range socks {
			f.Close()
		}
	}()
	inst, err := s.cfg.Driver.Start(ctx, driver.Spec{
		CalID: rec.ID, Dir: s.dirs.Sandbox(rec.ID).MountSource(), RootMount: host.RootMount(), Sockets: socks,
		RunDir: s.runDir(), ProgramsDir: s.programsDir(), Binary: s.cfg.Binary, Args: []string{"cal"},
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "GOMAXPROCS=1", "GOGC=50"}, UID: rec.UID, GID: rec.UID,
		Features: features(rec.Features), Limits: driver.Limits{CPUMillis: rec.Quota.CPUMillis, MemoryBytes: rec.Quota.MemoryBytes, PIDs: rec.Quota.PIDs, DiskBytes: rec.Quota.DiskBytes},
		StartCPUMillis: startCPUMillis, StartWindow: startWindow,
		Secret: strings.TrimSpace(string(kek)), Log: logf,
	})
	if err != nil {
		return nil, err
	}
	if err := s.install(ctx, p, inst, false); err != nil {
		return nil, err
	}
	// The PID is for operators (calnet cals); adoption finds the process
	// through the driver's own record, so the Cal runs on without it.
	_, err = s.updateCal(ctx, rec.ID, func(r *CalRecord) { r.PID = inst.PID() })
	s.unrecorded(err, "the pid of a started cal", "cal", rec.ID, "pid", inst.PID())
	return registered, nil
}

// adopt supervises a Cal's process that an earlier control plane started.
// The Cal keeps its state; it is asked to register again when its watch
// stream reconnects, which proves it still holds its key. (recover marks
// the adopted Cals unhealthy until then, in one transaction.)
func (s *Server) adopt(ctx context.Context, rec *CalRecord, inst driver.Instance) (*proc, error) {
	p, _ := s.track(rec.ID)
	if err := s.install(ctx, p, inst, true); err != nil {
		return nil, err
	}
	s.log.Debug("adopted a running cal", "cal", rec.ID, "pid", inst.PID())
	s.bus.publish(Event{Type: "cal.adopted", Cal: rec.ID, Parent: rec.Parent, State: rec.State, Actor: "supervisor"})
	return p, nil
}

// markAdopted records the adopted Cals' PIDs and that they are unhealthy
// until they reconnect, in one transaction.
func (s *Server) markAdopted(ctx context.Context, pids map[string]int) {
	if len(pids) == 0 {
		return
	}
	now := s.now()
	var updated []*CalRecord
	err := s.store.Update(ctx, func(tx store.Tx) error {
		updated = updated[:0]
		for id, pid := range pids {
			var c CalRecord
			if store.GetJSON(tx, bucketCals, id, &c) != nil {
				continue
			}
			c.PID, c.Healthy, c.UpdatedAt = pid, false, now
			if err := store.PutJSON(tx, bucketCals, id, &c); err != nil {
				return err
			}
			updated = append(updated, &c)
		}
		return nil
	})
	if err != nil {
		s.log.Error("recording adopted cals", "err", err)
		return
	}
	for _, c := range updated {
		s.index(c)
	}
}

// monitor waits for a Cal's process and applies its restart policy, with
// exponential backoff and an intensity limit as OTP supervisors do.
func (s *Server) monitor(p *proc, inst driver.Instance, gen uint64) {
	err := inst.Wait()
	superseded := func() bool {
		s.procMu.Lock()
		defer s.procMu.Unlock()
		return p.stopping || p.inst != inst || p.gen != gen
	}
	if superseded() || s.ctx.Err() != nil {
		return
	}
	if id, err := identity.ParseID(p.id); err == nil {
		s.trustMu.RLock()
		_, revoked := s.state.RevokedThrough(id)
		s.trustMu.RUnlock()
		if revoked {
			return // told of its revocation, it exited: nothing to heal
		}
	}
	ctx := s.ctx
	reason := "exited"
	if err != nil {
		reason = err.Error()
	}
	rec, gerr := s.getCal(ctx, p.id)
	if gerr != nil || rec.State == StateRevoked || rec.State == StateStopped {
		return
	}
	if rec.RestartPolicy == RestartNever || (rec.RestartPolicy == RestartOnFailure && err == nil) {
		s.setState(ctx, p.id, StateStopped, "process "+reason)
		return
	}
	now := s.now()
	s.procMu.Lock()
	p.restarts = append(p.restarts, now)
	cut := 0
	for cut < len(p.restarts) && now.Sub(p.restarts[cut]) > s.cfg.Limits.RestartPeriod {
		cut++
	}
	p.restarts = p.restarts[cut:]
	n := len(p.restarts)
	s.procMu.Unlock()
	if n > s.cfg.Limits.RestartIntensity {
		msg := fmt.Sprintf("restarted %d times in %v (last: %s); giving up", n-1, s.cfg.Limits.RestartPeriod, reason)
		s.setState(ctx, p.id, StateFailed, msg)
		s.bus.publish(Event{Type: "child.failed", Cal: p.id, Parent: rec.Parent, Reason: msg, Actor: "supervisor"})
		s.watchers.notify(rec.Parent, calproto.Event{Type: "child-failed", Cal: p.id})
		return
	}
	backoff := time.Duration(0)
	if n > 1 {
		backoff = min(25*time.Millisecond<<(n-2), 5*time.Second)
	}
	if _, err := s.updateCal(ctx, p.id, func(r *CalRecord) { r.Healthy = false; r.LastError = "process " + reason }); err != nil {
		s.unrecorded(err, "a cal's exit (unhealthy, last error); it is restarted all the same", "cal", p.id, "reason", reason)
	}
	s.bus.publish(Event{Type: "cal.restarting", Cal: p.id, Reason: "process " + reason, Actor: "supervisor"})
	select {
	case <-ctx.Done():
		return
	case <-time.After(backoff):
	}
	if superseded() { // stopped, or restarted by hand, meanwhile
		return
	}
	s.prom.restarts.Inc()
	rec, err = s.updateCal(ctx, p.id, func(r *CalRecord) { r.Restarts++ })
	if err != nil {
		// Not restarted: a restart the registry cannot count would
		// escape the restart intensity limit at the next start.
		s.unrecorded(err, "a restart of a cal; it is not restarted", "cal", p.id)
		return
	}
	if _, err := s.start(ctx, rec); err != nil {
		s.setState(ctx, p.id, StateFailed, "restart: "+err.Error())
	}
}

// setState records a Cal's new state for the supervisor, which has
// nobody to tell when the store refuses: that is logged, and neither the
// index nor the event stream claims the state.
func (s *Server) setState(ctx context.Context, id, state, reason string) {
	rec, err := s.updateCal(ctx, id, func(r *CalRecord) {
		r.State = state
		r.Healthy = state == StateRunning
		if reason != "" {
			r.LastError = reason
		}
	})
	if err != nil {
		s.unrecorded(err, "a cal's state "+state, "cal", id, "reason", reason)
		return
	}
	s.bus.publish(Event{Type: "cal." + state, Cal: id, Parent: rec.Parent, State: state, Reason: reason, Actor: "supervisor"})
	// A Cal that ends before it ever ran ends its spawn too.
	if state == StateFailed && rec.Spawn != "" {
		if sp, err := s.getSpawn(ctx, rec.Spawn); err == nil && !sp.Terminal() {
			s.unrecorded(s.finishSpawn(ctx, sp, SpawnFailed, reason), "the failure of a spawn", "spawn", sp.ID, "cal", id)
		}
	}
}

// stop ends a Cal's process without restarting it.
func (s *Server) stop(ctx context.Context, id string) {
	s.procMu.Lock()
	p := s.procs[id]
	var inst driver.Instance
	if p != nil {
		p.stopping = true
		inst = p.inst
	}
	s.procMu.Unlock()
	if inst != nil {
		if err := inst.Stop(ctx, 2*time.Second); err != nil {
			s.log.Error("stopping a cal: what is left of it on the host", "cal", id, "err", err)
		}
	}
}

// stopAll stops every Cal this control plane supervises (started or
// adopted), deepest first, each depth in parallel. From here on no Cal
// starts: one whose start is under way is stopped as soon as it runs.
func (s *Server) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s.procMu.Lock()
	s.shuttingDown = true
	ids := make([]string, 0, len(s.procs))
	for id := range s.procs {
		ids = append(ids, id)
	}
	s.procMu.Unlock()
	depth := map[string]int{}
	if recs, err := s.listCals(ctx); err == nil {
		for _, r := range recs {
			depth[r.ID] = r.Depth
		}
	}
	byDepth := map[int][]string{}
	var depths []int
	for _, id := range ids {
		d, ok := depth[id]
		if !ok {
			d = math.MaxInt // unknown to the registry: first
		}
		if _, ok := byDepth[d]; !ok {
			depths = append(depths, d)
		}
		byDepth[d] = append(byDepth[d], id)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(depths)))
	for _, d := range depths {
		var wg sync.WaitGroup
		for _, id := range byDepth[d] {
			wg.Go(func() { s.stop(ctx, id) })
		}
		wg.Wait()
	}
}

// recover runs at start. The previous control plane's Cals outlived it:
// each one that still runs is adopted (its uptime goes on), each one that
// should run and does not is started, and each one that runs but should
// not (revoked, failed, stopped, unknown) is stopped; nothing of a Cal is
// left on the host twice. Spawns that were cut short are completed or
// recorded as failed.
func (s *Server) recover(ctx context.Context) error {
	recs, err := s.listCals(ctx)
	if err != nil {
		return err
	}
	t0 := time.Now()
	insts := s.adoptAll(ctx, recs)
	byID := map[string]*CalRecord{}
	bySpawn := map[string]*CalRecord{}
	var toStart []*CalRecord
	adopted := map[string]int{}
	for _, r := range recs {
		byID[r.ID] = r
		if r.Spawn != "" {
			bySpawn[r.Spawn] = r
		}
		inst := insts[r.ID]
		delete(insts, r.ID)
		id, err := identity.ParseID(r.ID)
		if err != nil {
			continue
		}
		if through, ok := s.state.RevokedThrough(id); ok && r.State != StateRevoked {
			// The ledger's revocation rules whatever the record says:
			// the Cal is not started either way.
			_, err := s.updateCal(ctx, r.ID, func(c *CalRecord) { c.State = StateRevoked; c.LastError = "revoked through " + through.String() })
			s.unrecorded(err, "a revoked cal's state revoked; it is not started", "cal", r.ID)
			r.State = StateRevoked
		}
		if !isLive(r.State) {
			if inst != nil {
				s.log.Warn("stopping a cal that runs but should not", "cal", r.ID, "state", r.State)
				s.stopInstance(inst)
			}
			continue
		}
		if inst != nil {
			if _, err := s.adopt(ctx, r, inst); err == nil {
				adopted[r.ID] = inst.PID()
			}
			continue
		}
		toStart = append(toStart, r)
	}
	for id, inst := range insts {
		s.log.Warn("stopping a process of a cal the registry does not hold", "cal", id)
		s.stopInstance(inst)
	}
	s.markAdopted(ctx, adopted)
	s.startAll(ctx, toStart)
	s.log.Info("recovered cals", "adopted", len(adopted), "started", len(toStart), "took", time.Since(t0).Round(time.Millisecond))
	s.revokeOrphans(ctx)
	spawns, err := s.listSpawns(ctx)
	if err != nil {
		return err
	}
	for _, sp := range spawns {
		if sp.Terminal() || sp.State == SpawnAwaitingApproval {
			continue // a held spawn waits for its approval across restarts
		}
		// The Cal is recorded before its spawn learns its ID.
		r := byID[sp.Cal]
		if r == nil {
			r = bySpawn[sp.ID]
		}
		if r == nil {
			s.unrecorded(s.finishSpawn(ctx, sp, SpawnFailed, "the control plane restarted before the Cal was deployed"), "the failure of a spawn cut short", "spawn", sp.ID)
			continue
		}
		sp.Cal = r.ID
		cur, err := s.getCal(ctx, r.ID)
		if err != nil {
			cur = r
		}
		switch {
		case cur.State == StateRunning:
			s.unrecorded(s.finishSpawn(ctx, sp, SpawnRunning, ""), "the end of a spawn whose cal runs", "spawn", sp.ID, "cal", r.ID)
		case isLive(cur.State):
			// Started or adopted above: its registration ends the spawn,
			// or its deadline fails it.
			sp.State = SpawnDeploying
			s.unrecorded(s.putSpawn(ctx, sp), "a spawn's state deploying", "spawn", sp.ID, "cal", r.ID)
			s.awaitDeploy(r.ID)
		default:
			s.unrecorded(s.finishSpawn(ctx, sp, SpawnFailed, "cal "+cur.State+": "+cur.LastError), "the failure of a spawn", "spawn", sp.ID, "cal", r.ID)
		}
	}
	return nil
}

// adoptAll asks the driver for the running instance of every Cal it may
// have started: those of the registry, those the ledger blessed (a spawn
// cut short) and those the driver has a record of.
func (s *Server) adoptAll(ctx context.Context, recs []*CalRecord) map[string]driver.Instance {
	ids := map[string]bool{}
	live := map[string]bool{}
	for _, r := range recs {
		ids[r.ID] = true
		live[r.ID] = isLive(r.State)
	}
	s.trustMu.RLock()
	for id, b := range s.state.Blessings {
		if !b.IsGenesis() {
			ids[id.String()] = true
		}
	}
	s.trustMu.RUnlock()
	recorded, err := s.cfg.Driver.Recorded()
	if err != nil {
		s.log.Error("listing the driver's records", "err", err)
	}
	for _, id := range recorded {
		ids[id] = true
	}
	var mu sync.Mutex
	out := map[string]driver.Instance{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			inst, err := s.cfg.Driver.Adopt(ctx, id)
			switch {
			case err == nil:
				mu.Lock()
				out[id] = inst
				mu.Unlock()
			case errors.Is(err, driver.ErrNotRunning):
				if live[id] {
					s.log.Info("cal not running; starting it", "cal", id, "why", err)
				}
			default:
				s.log.Error("adopting a cal", "cal", id, "err", err)
			}
		})
	}
	wg.Wait()
	return out
}

// startAll starts Cals that should run and do not, a few at a time.
func (s *Server) startAll(ctx context.Context, recs []*CalRecord) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, r := range recs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// Started all the same: the record already says it should run.
			_, err := s.updateCal(ctx, r.ID, func(c *CalRecord) { c.State = StateDeploying; c.Healthy = false })
			s.unrecorded(err, "a recovered cal's state deploying", "cal", r.ID)
			if _, err := s.start(ctx, r); err != nil {
				s.setState(ctx, r.ID, StateFailed, "start: "+err.Error())
			}
		})
	}
	wg.Wait()
}

// stopInstance stops a process the supervisor does not keep.
func (s *Server) stopInstance(inst driver.Instance) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := inst.Stop(context.Background(), 2*time.Second); err != nil {
			s.log.Error("stopping a process the supervisor does not keep", "pid", inst.PID(), "err", err)
		}
	}()
}

// awaitDeploy fails a recovered Cal whose spawn is still under way if it
// does not register in time, as deploy does for a new one.
func (s *Server) awaitDeploy(id string) {
	s.awaitRegistration(id, "deploy: the cal did not register within %v after the control plane restarted")
}

// awaitRegistration stops and fails a Cal that is deploying if it does
// not register within the deploy timeout; why is the failure, with a %v
// for the timeout.
func (s *Server) awaitRegistration(id, why string) {
	s.procMu.Lock()
	p := s.procs[id]
	var registered chan struct{}
	if p != nil {
		registered = p.registered
	}
	s.procMu.Unlock()
	if registered == nil {
		return
	}
	// The deploy timeout, or more for a template whose Cals are slower.
	timeout := s.cfg.DeployTimeout
	if rec, err := s.getCal(s.ctx, id); err == nil && rec.Template != "" {
		timeout = s.outcomes.Timeout("template:"+rec.Template, s.cfg.DeployTimeout)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-registered:
		case <-s.ctx.Done():
		case <-time.After(timeout):
			// A later instance (the supervisor restarted the Cal) registers
			// on a channel of its own: the record says whether one did.
			if rec, err := s.getCal(s.ctx, id); err != nil || rec.State != StateDeploying {
				return
			}
			s.stop(s.ctx, id)
			s.setState(s.ctx, id, StateFailed, fmt.Sprintf(why, timeout))
		}
	}()
}

// isLive reports whether the record's state is one that runs.
func isLive(state string) bool { return slices.Contains([]string{StateDeploying, StateRunning}, state) }

func features(names []string) []sandbox.Feature {
	out := make([]sandbox.Feature, 0, len(names))
	for _, n := range names {
		out = append(out, sandbox.Feature(n))
	}
	return out
}

// removeOrphanSandboxes removes the directories of Cals the registry does
// not hold: a spawn cut short after it wrote the Cal's sandbox and before
// it recorded the Cal (its blessing, if the ledger has it, is revoked at
// recovery). No process of such a Cal ever ran: a Cal starts only once
// recorded. Left alone, the files would keep a uid of this network's that
// no Cal has.
func (s *Server) removeOrphanSandboxes(ctx context.Context) error {
	ents, err := os.ReadDir(s.calsDir())
	if err != nil {
		return fmt.Errorf("cal directories: %w", err)
	}
	recs, err := s.listCals(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, r := range recs {
		known[r.ID] = true
	}
	for _, e := range ents {
		if _, err := identity.ParseID(e.Name()); err != nil || known[e.Name()] {
			continue
		}
		s.log.Warn("removing the sandbox of a cal that was never recorded (its spawn was cut short)", "cal", e.Name())
		var err error
		if s.pool != nil { // a subvolume of the Cal filesystem
			err = s.pool.Remove(e.Name())
		} else {
			err = os.RemoveAll(filepath.Join(s.calsDir(), e.Name()))
		}
		if err == nil {
			err = s.dirs.Host(e.Name()).Remove()
		}
		if err != nil {
			return fmt.Errorf("orphan cal directory: %w", err)
		}
	}
	return nil
}

// revokeOrphans revokes blessings the ledger holds for Cals the registry
// never recorded: the control plane died between the ledger append and the
// registry write. Such a credential must not outlive the failed spawn.
func (s *Server) revokeOrphans(ctx context.Context) {
	s.trustMu.RLock()
	var orphans []identity.ID
	for id, b := range s.state.Blessings {
		if b.IsGenesis() {
			continue
		}
		if _, revoked := s.state.RevokedThrough(id); revoked {
			continue
		}
		// Only a Cal the registry does not hold is an orphan: one it
		// cannot be read for is not revoked on a read error.
		_, err := s.getCal(ctx, id.String())
		switch {
		case errors.Is(err, store.ErrNotFound):
			orphans = append(orphans, id)
		case err != nil:
			s.log.Error("checking a blessing for an orphan; it stays", "cal", id, "err", err)
		}
	}
	s.trustMu.RUnlock()
	for _, id := range orphans {
		rev, err := trust.Revoke(s.auth, trust.RevokeRequest{Network: s.net.Info.Network, Target: id, Authority: true,
			Reason: "orphan: blessed but never deployed (the control plane stopped mid-spawn)", IssuedAt: s.now()})
		if err != nil {
			s.log.Error("signing the revocation of an orphan blessing; it stays in force", "cal", id, "err", err)
			continue
		}
		if _, aerr := s.revoke(ctx, rev, "control-plane"); aerr != nil {
			s.log.Error("revoking an orphan blessing", "cal", id, "err", aerr.Msg)
		}
	}
}

// ledgerLockWait bounds how long Open waits for the ledger's writer lock.
const ledgerLockWait = 5 * time.Second

// openLedgerWaiting opens the ledger for writing, waiting a few seconds
// for its lock: a control plane restarted right after a crash may find it
// still held by a child the dead one was starting (between fork and exec
// a child holds a copy of every descriptor; on a loaded host it may not
// run for a while). Another writer that holds it for good is refused.
func openLedgerWaiting(ctx context.Context, n *netdir.Network, wait time.Duration) (*ledger.Log, error) {
	deadline := time.Now().Add(wait)
	for {
		lg, err := n.OpenLedger(true)
		if err == nil || !errors.Is(err, ledger.ErrLocked) || time.Now().After(deadline) {
			return lg, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
