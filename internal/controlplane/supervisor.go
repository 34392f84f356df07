package controlplane

import (
	"context"
	"fmt"
	"github.com/soulfra/calnet/api"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"filippo.io/age"

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
	id         string
	inst       driver.Instance
	stopping   bool
	restarts   []time.Time
	registered chan struct{} // closed when the current instance registers
	regOnce    *sync.Once
}

// newKEK makes a Cal's key-encryption identity and stores it.
func (s *Server) newKEK(ctx context.Context, id string) (*age.HybridIdentity, error) {
	k, err := age.GenerateHybridIdentity()
	if err != nil {
		return nil, err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error { return tx.Put(bucketKEK, id, []byte(k.String())) })
	return k, err
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

// start launches a Cal's process and supervises it.
func (s *Server) start(ctx context.Context, rec *CalRecord) (*proc, error) {
	var kek []byte
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		kek, err = tx.Get(bucketKEK, rec.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("key-encryption identity of %s: %w", rec.ID, err)
	}
	logf, err := os.OpenFile(s.logPath(rec.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	s.procMu.Lock()
	p := s.procs[rec.ID]
	if p == nil {
		p = &proc{id: rec.ID}
		s.procs[rec.ID] = p
	}
	p.registered, p.regOnce, p.stopping = make(chan struct{}), new(sync.Once), false
	s.procMu.Unlock()

	// The sockets the control plane and the router dial, bound where the
	// Cal cannot write; the Cal's process listens on its copies.
	host := s.dirs.Host(rec.ID)
	socks, err := host.Bind(calproto.APISocket, calproto.GatewaySocket, calproto.GatewayHandoffSocket, calproto.ConsoleSocket)
	if err != nil {
		logf.Close()
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
		Secret: string(trimSpace(kek)), Output: logf,
	})
	if err != nil {
		logf.Close()
		return nil, err
	}
	s.procMu.Lock()
	p.inst = inst
	s.procMu.Unlock()
	s.updateCal(ctx, rec.ID, func(r *CalRecord) { r.PID = inst.PID() })
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer logf.Close()
		s.monitor(p, inst)
	}()
	return p, nil
}

// monitor waits for a Cal's process and applies its restart policy, with
// exponential backoff and an intensity limit as OTP supervisors do.
func (s *Server) monitor(p *proc, inst driver.Instance) {
	err := inst.Wait()
	s.procMu.Lock()
	stopping := p.stopping || p.inst != inst
	s.procMu.Unlock()
	if stopping || s.ctx.Err() != nil {
		return
	}
	if id, err := identity.ParseID(p.id); err == nil {
		s.trustMu.Lock()
		_, revoked := s.state.RevokedThrough(id)
		s.trustMu.Unlock()
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
	s.updateCal(ctx, p.id, func(r *CalRecord) { r.Healthy = false; r.LastError = "process " + reason })
	s.bus.publish(Event{Type: "cal.restarting", Cal: p.id, Reason: "process " + reason, Actor: "supervisor"})
	select {
	case <-ctx.Done():
		return
	case <-time.After(backoff):
	}
	s.prom.restarts.Inc()
	rec, err = s.updateCal(ctx, p.id, func(r *CalRecord) { r.Restarts++ })
	if err != nil {
		return
	}
	if _, err := s.start(ctx, rec); err != nil {
		s.setState(ctx, p.id, StateFailed, "restart: "+err.Error())
	}
}

func (s *Server) setState(ctx context.Context, id, state, reason string) {
	rec, err := s.updateCal(ctx, id, func(r *CalRecord) {
		r.State = state
		r.Healthy = state == StateRunning
		if reason != "" {
			r.LastError = reason
		}
	})
	if err != nil {
		return
	}
	s.bus.publish(Event{Type: "cal." + state, Cal: id, Parent: rec.Parent, State: state, Reason: reason, Actor: "supervisor"})
	// A Cal that ends before it ever ran ends its spawn too.
	if state == StateFailed && rec.Spawn != "" {
		if sp, err := s.getSpawn(ctx, rec.Spawn); err == nil && !sp.Terminal() {
			s.finishSpawn(ctx, sp, SpawnFailed, reason)
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
		inst.Stop(ctx, 2*time.Second)
	}
}

// stopAll stops every Cal, deepest first, each depth in parallel.
func (s *Server) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	recs, _ := s.listCals(ctx)
	byDepth := map[int][]string{}
	var depths []int
	for _, r := range recs {
		if _, ok := byDepth[r.Depth]; !ok {
			depths = append(depths, r.Depth)
		}
		byDepth[r.Depth] = append(byDepth[r.Depth], r.ID)
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

// recover runs at start: every Cal that should run is started again (the
// previous control plane's Cals died with it), and spawns that were cut
// short are completed or recorded as failed.
func (s *Server) recover(ctx context.Context) error {
	recs, err := s.listCals(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		id, err := identity.ParseID(r.ID)
		if err != nil {
			continue
		}
		if through, ok := s.state.RevokedThrough(id); ok {
			if r.State != StateRevoked {
				s.updateCal(ctx, r.ID, func(c *CalRecord) { c.State = StateRevoked; c.LastError = "revoked through " + through.String() })
			}
			continue
		}
		if r.State == StateFailed || r.State == StateStopped || r.State == StateRevoked {
			continue
		}
		s.updateCal(ctx, r.ID, func(c *CalRecord) { c.State = StateDeploying; c.Healthy = false })
		if _, err := s.start(ctx, r); err != nil {
			s.setState(ctx, r.ID, StateFailed, "start: "+err.Error())
		}
	}
	s.revokeOrphans(ctx)
	spawns, err := s.listSpawns(ctx)
	if err != nil {
		return err
	}
	for _, sp := range spawns {
		if sp.Terminal() || sp.State == SpawnAwaitingApproval {
			continue // a held spawn waits for its approval across restarts
		}
		if sp.Cal != "" {
			if _, err := s.getCal(ctx, sp.Cal); err == nil {
				// Blessed and recorded: the Cal was started above and its
				// registration (or failure) ends the spawn.
				continue
			}
		}
		s.finishSpawn(ctx, sp, SpawnFailed, "the control plane restarted before the Cal was deployed")
	}
	return nil
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

// revokeOrphans revokes blessings the ledger holds for Cals the registry
// never recorded: the control plane died between the ledger append and the
// registry write. Such a credential must not outlive the failed spawn.
func (s *Server) revokeOrphans(ctx context.Context) {
	s.trustMu.Lock()
	var orphans []identity.ID
	for id, b := range s.state.Blessings {
		if b.IsGenesis() {
			continue
		}
		if _, revoked := s.state.RevokedThrough(id); revoked {
			continue
		}
		if _, err := s.getCal(ctx, id.String()); err != nil {
			orphans = append(orphans, id)
		}
	}
	s.trustMu.Unlock()
	for _, id := range orphans {
		rev, err := trust.Revoke(s.auth, trust.RevokeRequest{Network: s.net.Info.Network, Target: id, Authority: true,
			Reason: "orphan: blessed but never deployed (the control plane stopped mid-spawn)", IssuedAt: s.now()})
		if err == nil {
			s.revoke(ctx, rev, "control-plane")
		}
	}
}
