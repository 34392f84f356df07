package controlplane

import (
	"context"
	"net/http"
	"time"

	"github.com/soulfra/calnet/identity"
)

// Restarting a Cal by hand (calnet restart, POST /v1/cals/{id}/restart):
// the way back for a Cal the supervisor gave up on (failed) or that
// stopped by its restart policy, the Master Cal included; a running Cal
// gets a new process. A revoked Cal never runs again.

// restartWait bounds how long a restart request waits for the Cal to run
// when asked to (?wait=true).
const restartWait = 60 * time.Second

// restartCal runs the Cal id again with a fresh restart budget (reason,
// optional, goes with the event): a running one is stopped first (SIGTERM, SIGKILL after a grace period), then a new
// process starts and must register within the deploy timeout.
func (s *Server) restartCal(ctx context.Context, id, actor, reason string) (*CalRecord, *APIError) {
	ctx = context.WithoutCancel(ctx) // a client that goes away does not cut the restart short
	cid, err := identity.ParseID(id)
	if err != nil {
		return nil, apiErr(400, "cal: %v", err)
	}
	// One restart at a time: two would race to start the same Cal.
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	s.trustMu.RLock()
	through, revoked := s.state.RevokedThrough(cid)
	s.trustMu.RUnlock()
	if revoked {
		return nil, apiErr(409, "cal %s is revoked (through %s): a revoked Cal never runs again", id, through)
	}
	rec, err := s.getCal(ctx, id)
	if err != nil {
		return nil, apiErr(404, "cal %s: no such cal", id)
	}
	switch rec.State {
	case StateRevoked:
		return nil, apiErr(409, "cal %s is revoked: a revoked Cal never runs again", id)
	case StateDeploying:
		return nil, apiErr(409, "cal %s is deploying: restart it once it runs or has failed", id)
	}
	s.procMu.Lock()
	stopping := s.shuttingDown
	s.procMu.Unlock()
	if stopping {
		return nil, apiErr(503, "the control plane is stopping")
	}
	was := rec.State
	if was == StateRunning {
		s.stop(ctx, id) // its monitor sees it stopped on purpose
	}
	s.procMu.Lock()
	if p := s.procs[id]; p != nil {
		p.restarts = nil // a fresh budget: the supervisor gave up on the old one
	}
	s.procMu.Unlock()
	rec, err = s.updateCal(ctx, id, func(c *CalRecord) {
		c.State, c.Healthy, c.LastError = StateDeploying, false, ""
		c.Restarts++
	})
	if err != nil {
		return nil, apiErr(500, "registry unavailable")
	}
	why := "was " + was
	if reason != "" {
		why += ": " + reason
	}
	s.log.Info("restarting a cal by hand", "cal", id, "was", was, "actor", actor, "reason", reason)
	s.bus.publish(Event{Type: "cal.restarted", Cal: id, Parent: rec.Parent, State: StateDeploying, Reason: why, Actor: actor})
	if _, err := s.start(ctx, rec); err != nil {
		s.setState(ctx, id, StateFailed, "restart: "+err.Error())
	} else {
		s.awaitRegistration(id, "restart: the cal did not register within %v")
	}
	rec, err = s.getCal(ctx, id)
	if err != nil {
		return nil, apiErr(500, "registry unavailable")
	}
	return rec, nil
}

// waitCal waits until the Cal id is no longer deploying, or timeout
// passes, and returns its record.
func (s *Server) waitCal(ctx context.Context, id string, timeout time.Duration) *CalRecord {
	return waitEvents(ctx, s, timeout, func() (*CalRecord, bool) {
		rec, err := s.getCal(ctx, id)
		return rec, err != nil || rec.State != StateDeploying
	})
}

// handleRestart is POST /v1/cals/{id}/restart.
func (s *Server) handleRestart(w http.ResponseWriter, r *http.Request, pr principal) {
	var req struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &req) {
		return
	}
	if len(req.Reason) > maxComment {
		writeError(w, apiErr(400, "reason: %d characters, over the limit of %d", len(req.Reason), maxComment))
		return
	}
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	rec, aerr = s.restartCal(r.Context(), rec.ID, pr.actor(), req.Reason)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if r.URL.Query().Get("wait") == "true" {
		if got := s.waitCal(r.Context(), rec.ID, restartWait); got != nil {
			rec = got
		}
	}
	writeJSON(w, 202, rec)
}

// WatchMaster reports the Master Cal's record to report once recovery is
// done and the Master runs (it registered, or was adopted) or has ended
// (failed, stopped, revoked), and again at each change between running
// and not, until ctx ends. `calnet up` uses it to say the network is up
// only when it is, and to say so loudly when the Master fails.
func (s *Server) WatchMaster(ctx context.Context, report func(*CalRecord)) {
	select {
	case <-s.recovered:
	case <-ctx.Done():
		return
	}
	_, ch, cancel := s.bus.subscribe(^uint64(0))
	defer cancel()
	// A busy bus may drop events for a slow subscriber: look again now
	// and then as well.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	master := s.net.Info.Master.String()
	last := ""
	for {
		if rec, err := s.getCal(ctx, master); err == nil && rec.State != StateDeploying && rec.State != last {
			last = rec.State
			report(rec)
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				break wait
			case e := <-ch:
				if e.Cal == master {
					break wait
				}
			}
		}
	}
}
