package controlplane

import (
	"strings"

	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/soulfra/calnet/internal/metrics"
	"net/http"
	"sync"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/trust"
)

type tlsConfig = tls.Config

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// resolveCal authenticates a Cal peer: its certificate key must be the
// Ed25519 half of the key its recorded blessing names.
func (s *Server) resolveCal(p *caltls.Peer) error {
	s.trustMu.RLock()
	b, ok := s.state.Blessings[p.Cal]
	s.trustMu.RUnlock()
	if !ok {
		return fmt.Errorf("unknown cal %s", p.Cal)
	}
	if subtle.ConstantTimeCompare(identityEd(b), p.Key) != 1 {
		return errors.New("certificate key is not the cal's identity key")
	}
	return nil
}

func identityEd(b *trust.Blessing) []byte { return b.ChildKey().Ed25519 }

func (s *Server) peer(r *http.Request) (identity.ID, error) {
	p, err := caltls.PeerOf(r.TLS, s.net.Info.Network)
	if err != nil {
		return identity.ID{}, err
	}
	return p.Cal, nil
}

// calKey carries the Cal the guard authenticated through a request's
// context.
type calKey struct{}

// calGuard is the Cal API's authz.Guard: the peer's certificate names the
// Cal (mutual TLS, checked against its recorded blessing at the
// handshake), and the table's permission is checked against the Cal's
// blessing.
func (s *Server) calGuard(_ string, rule authz.Rule, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Cals are answered once recovery has decided which of them runs:
		// a registration or a watch stream seen before would be lost when
		// recovery adopts the Cal (or starts it).
		select {
		case <-s.recovered:
		case <-r.Context().Done():
			return
		}
		id, err := s.peer(r)
		if err != nil {
			writeError(w, apiErr(401, "%v", err))
			return
		}
		s.trustMu.RLock()
		b, ok := s.state.Blessings[id]
		s.trustMu.RUnlock()
		if !ok {
			writeError(w, apiErr(401, "unknown cal %s", id))
			return
		}
		if d := authz.Decide(rule, authz.Principal{Kind: authz.Cal, Perms: b.Permissions()}); !d.Allowed() {
			writeError(w, apiErr(d.Status, "cal %s does not hold %s (its blessing grants %s)", id, rule.Perm, b.Permissions()))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), calKey{}, id)))
	})
}

// calHandler serves the API the Cals call, on run/cal.sock over mutual
// TLS; every route is in the authorization table (package authz).
func (s *Server) calHandler() http.Handler {
	mux := authz.NewMux(authz.CalAPI, s.calGuard)
	with := func(h func(w http.ResponseWriter, r *http.Request, id identity.ID)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			h(w, r, r.Context().Value(calKey{}).(identity.ID))
		}
	}
	mux.HandleFunc("POST "+calproto.PathChallenge, with(func(w http.ResponseWriter, r *http.Request, id identity.ID) {
		writeJSON(w, 200, calproto.Challenge{Challenge: s.challenges.issue(id, s.now())})
	}))
	mux.HandleFunc("POST "+calproto.PathRegister, with(s.handleRegister))
	mux.HandleFunc("POST "+calproto.PathSVID, with(s.handleSVID))
	mux.HandleFunc("POST "+calproto.PathGauges, with(func(w http.ResponseWriter, r *http.Request, id identity.ID) {
		var g map[string]float64
		if !readJSON(w, r, &g) {
			return
		}
		if len(g) > metrics.MaxGauges {
			writeError(w, apiErr(400, "gauges: %d, over the limit of %d", len(g), metrics.MaxGauges))
			return
		}
		now := s.now()
		for k, v := range g {
			if len(k) == 0 || len(k) > 64 || strings.ContainsAny(k, " \t\n") {
				writeError(w, apiErr(400, "gauge name %q: want 1..64 characters without spaces", k))
				return
			}
			if !s.metrics.Add(id.String(), gaugePrefix+k, now, v) {
				writeError(w, apiErr(400, "gauges: this cal already reports %d metrics, the limit", metrics.MaxGauges))
				return
			}
		}
		writeJSON(w, 200, map[string]int{"recorded": len(g)})
	}))
	mux.HandleFunc("POST "+calproto.PathStatus, with(func(w http.ResponseWriter, r *http.Request, id identity.ID) {
		var st calproto.Status
		if !readJSON(w, r, &st) {
			return
		}
		rec, err := s.updateCal(r.Context(), id.String(), func(c *CalRecord) { c.Degraded, c.Healthy = st.Degraded, st.Degraded == "" })
		if err != nil {
			writeError(w, apiErr(404, "no such cal"))
			return
		}
		if st.Degraded != "" {
			s.bus.publish(Event{Type: "cal.degraded", Cal: rec.ID, Parent: rec.Parent, Reason: st.Degraded, Actor: "cal:" + rec.ID})
		}
		writeJSON(w, 200, map[string]bool{"ok": true})
	}))
	mux.HandleFunc("GET "+calproto.PathWatch, with(s.handleWatch))
	mux.HandleFunc("POST "+calproto.PathSpawnRequest, with(func(w http.ResponseWriter, r *http.Request, id identity.ID) {
		var req calproto.SpawnRequest
		if !readJSON(w, r, &req) {
			return
		}
		rec, err := s.Spawn(r.Context(), SpawnParams{Parent: id.String(), Name: req.Name, Permissions: req.Permissions,
			CPUMillis: req.CPUMillis, MemoryBytes: req.MemoryBytes, DiskBytes: req.DiskBytes, IdempotencyKey: req.IdempotencyKey}, calRequester(id.String()))
		if err != nil {
			writeError(w, err)
			return
		}
		if r.URL.Query().Get("wait") != "false" {
			rec = s.waitSpawn(r.Context(), rec.ID, 30*time.Second)
		}
		writeJSON(w, 202, rec)
	}))
	mux.HandleFunc("GET "+calproto.PathChildren, with(func(w http.ResponseWriter, r *http.Request, id identity.ID) {
		s.usePermission(r.Context(), id.String(), "read")
		recs, _ := s.listCals(r.Context())
		out := []*CalRecord{}
		for _, c := range recs {
			if c.Parent == id.String() {
				out = append(out, c)
			}
		}
		writeJSON(w, 200, out)
	}))
	mux.HandleFunc("POST "+calproto.PathRevoke, with(func(w http.ResponseWriter, r *http.Request, id identity.ID) {
		var req calproto.RevokeRequest
		if !readJSON(w, r, &req) {
			return
		}
		rev, err := trust.ParseRevocation(req.Revocation)
		if err != nil {
			writeError(w, apiErr(400, "revocation: %v", err))
			return
		}
		if iss, ok := rev.Issuer(); !ok || iss != id {
			writeError(w, apiErr(403, "revocation: a cal may only submit revocations it signed"))
			return
		}
		if target, err := s.getCal(r.Context(), rev.Target().String()); err == nil {
			actor := "cal:" + id.String()
			aerr, hold := s.checkRevokePolicies(r.Context(), target, actor)
			if aerr != nil {
				writeError(w, aerr)
				return
			}
			if hold != nil { // held: carried out as the Cal signed it once approved
				s.holdRevocation(w, r, hold, &api.Approval{Cal: target.ID, Reason: rev.Reason(), Actor: actor, Revocation: req.Revocation})
				return
			}
		}
		sub, aerr := s.revoke(r.Context(), rev, "cal:"+id.String())
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		s.usePermission(r.Context(), id.String(), "revoke")
		s.note(id.String(), rev.Target().String(), "revoke", 0)
		writeJSON(w, 200, map[string]any{"revoked": rev.Target().String(), "subtree": sub})
	}))
	return mux.Handler()
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request, id identity.ID) {
	var reg calproto.Register
	if !readJSON(w, r, &reg) {
		return
	}
	if err := s.checkActivation(id, &reg); err != nil {
		s.bus.publish(Event{Type: "cal.activation-refused", Cal: id.String(), Reason: err.Error(), Actor: "cal:" + id.String()})
		writeError(w, apiErr(403, "activation: %v", err))
		return
	}
	s.trustMu.RLock()
	_, revoked := s.state.RevokedThrough(id)
	s.trustMu.RUnlock()
	if revoked {
		writeJSON(w, 200, calproto.RegisterReply{Revoked: true})
		return
	}
	first := false
	rec, err := s.updateCal(r.Context(), id.String(), func(c *CalRecord) {
		c.State, c.Healthy, c.LastError, c.Degraded = StateRunning, reg.Degraded == "", "", reg.Degraded
		first = c.ActivatedAt.IsZero()
		if first {
			c.ActivatedAt = s.now()
		}
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, apiErr(404, "no such cal"))
		return
	case err != nil:
		// Not registered: the Cal asks again, and its spawn is not
		// reported running while the registry does not say so.
		s.unrecorded(err, "a cal's registration (running); it is refused", "cal", id.String())
		writeError(w, stateErr(err, "cal %s: its registration", id))
		return
	}
	if first {
		// The first activation is a trust event: record it in the ledger,
		// off the spawn's critical path (the ledger's group commit batches
		// concurrent activations).
		data, _ := jsonMarshal(map[string]any{"cal": rec.ID, "pid": reg.PID, "possession": "schnorr-nizk+hybrid-signature"})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if _, err := s.ledgerAppend(context.Background(), ledger.Entry{Type: ledger.TypeActivation, Time: s.now(), Subject: rec.ID, Actor: "cal:" + rec.ID, Data: data}); err != nil {
				s.log.Error("ledger: activation", "cal", rec.ID, "err", err)
			}
		}()
	}
	s.procMu.Lock()
	if p := s.procs[id.String()]; p != nil && p.regOnce != nil {
		p.regOnce.Do(func() { close(p.registered) })
	}
	s.procMu.Unlock()
	s.bus.publish(Event{Type: "cal.running", Cal: rec.ID, Parent: rec.Parent, State: StateRunning, Actor: "cal:" + rec.ID})
	if rec.Spawn != "" {
		if sp, err := s.getSpawn(r.Context(), rec.Spawn); err == nil && !sp.Terminal() {
			// The Cal's record says running; recovery completes the
			// spawn from it if this write is lost.
			s.unrecorded(s.finishSpawn(r.Context(), sp, SpawnRunning, ""), "the end of a spawn whose cal registered", "spawn", sp.ID, "cal", rec.ID)
		}
	}
	writeJSON(w, 200, calproto.RegisterReply{Namespace: rec.Namespace, RouterURL: s.routerURL(rec.Namespace), Domain: s.cfg.Domain})
}

// challenges holds the outstanding activation challenges, one per Cal.
type challenges struct {
	mu sync.Mutex
	m  map[identity.ID]challenge
}

type challenge struct {
	nonce []byte
	at    time.Time
}

const challengeTTL = 30 * time.Second

func (c *challenges) issue(id identity.ID, now time.Time) []byte {
	n := make([]byte, 32)
	rand.Read(n)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[identity.ID]challenge{}
	}
	for k, v := range c.m { // bounded: expired challenges go
		if now.Sub(v.at) > challengeTTL {
			delete(c.m, k)
		}
	}
	c.m[id] = challenge{nonce: n, at: now}
	return n
}

// take consumes the challenge of id if it matches and is fresh.
func (c *challenges) take(id identity.ID, nonce []byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.m[id]
	delete(c.m, id)
	return ok && now.Sub(ch.at) <= challengeTTL && subtle.ConstantTimeCompare(ch.nonce, nonce) == 1
}

// checkActivation verifies the proofs of possession of a registering Cal.
func (s *Server) checkActivation(id identity.ID, reg *calproto.Register) error {
	if !s.challenges.take(id, reg.Challenge, s.now()) {
		return errors.New("unknown or expired challenge")
	}
	s.trustMu.RLock()
	b, ok := s.state.Blessings[id]
	s.trustMu.RUnlock()
	if !ok {
		return errors.New("unknown cal")
	}
	key, err := s.net.Verifier().Key(b.ChildKey())
	if err != nil {
		return err
	}
	proof, err := identity.ParsePossessionProof(reg.Possession)
	if err != nil {
		return err
	}
	if err := key.VerifyPossession(reg.Challenge, proof); err != nil {
		return err
	}
	var sig identity.Signature
	if err := sig.UnmarshalJSON(reg.Signature); err != nil {
		return err
	}
	return key.Verify(identity.PurposeActivation, reg.Challenge, &sig)
}

// handleWatch streams server-sent events to a Cal: its revocation, and a
// keepalive comment every 30s (cheap enough for 1,000 idle Cals).
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request, id identity.ID) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, apiErr(500, "streaming unsupported"))
		return
	}
	me := id.String()
	ch := s.watchers.add(me)
	defer s.watchers.remove(me, ch)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	fl.Flush()
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	// A Cal this control plane adopted (started by an earlier one) has not
	// registered with it: ask it to, so it proves its key again and learns
	// this control plane's router and domain.
	s.procMu.Lock()
	var registered chan struct{}
	if p := s.procs[me]; p != nil {
		registered = p.registered
	}
	s.procMu.Unlock()
	askRegister := false
	if registered != nil {
		select {
		case <-registered:
		default:
			askRegister = true
		}
	}
	// The stream is the Cal's liveness: connected means healthy.
	if rec, err := s.getCal(r.Context(), me); err == nil && rec.State == StateRunning && !rec.Healthy && rec.Degraded == "" {
		_, err := s.updateCal(r.Context(), me, func(c *CalRecord) { c.Healthy = true })
		s.unrecorded(err, "a connected cal's health (healthy)", "cal", me)
	}
	defer func() {
		if s.ctx.Err() != nil {
			return
		}
		s.trustMu.RLock()
		_, revoked := s.state.RevokedThrough(id)
		s.trustMu.RUnlock()
		s.procMu.Lock()
		stopping := s.procs[me] != nil && s.procs[me].stopping
		s.procMu.Unlock()
		if revoked || stopping {
			return // an expected end, not a health problem
		}
		rec, err := s.updateCal(context.Background(), me, func(c *CalRecord) { c.Healthy = false })
		s.unrecorded(err, "a disconnected cal's health (unhealthy)", "cal", me)
		if err == nil && rec.State == StateRunning {
			s.bus.publish(Event{Type: "cal.unhealthy", Cal: me, Parent: rec.Parent, Reason: "lost its control-plane stream", Actor: "control-plane"})
		}
	}()
	send := func(ev calproto.Event) {
		b, _ := json.Marshal(ev)
		fmt.Fprintf(w, "data: %s\n\n", b)
		fl.Flush()
	}
	// A Cal that was not connected when it was revoked (its stream was
	// down, or the control plane restarted) learns it as it reconnects.
	// It subscribed above, so a revocation from now on reaches it anyway.
	s.trustMu.RLock()
	_, revoked := s.state.RevokedThrough(id)
	s.trustMu.RUnlock()
	if revoked {
		send(calproto.Event{Type: calproto.EventRevoked, Cal: me})
		return
	}
	if askRegister {
		send(calproto.Event{Type: calproto.EventRegister, Cal: me})
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		case <-ping.C:
			// A comment line: the Cal's reader skips it without
			// decoding anything (decoding the first event after the Cal
			// trimmed its memory cost ~5 ms per idle Cal).
			fmt.Fprint(w, ": ping\n\n")
			fl.Flush()
		case ev := <-ch:
			send(ev)
		}
	}
}

// watchers routes notifications to the one Cal they concern, so telling
// 1,000 Cals of a revocation costs 1,000 sends, not a million.
type watchers struct {
	mu sync.Mutex
	m  map[string]chan calproto.Event
}

func (w *watchers) add(id string) chan calproto.Event {
	ch := make(chan calproto.Event, 8)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]chan calproto.Event{}
	}
	w.m[id] = ch
	return ch
}

func (w *watchers) remove(id string, ch chan calproto.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m[id] == ch {
		delete(w.m, id)
	}
}

// notify sends ev to the Cal's stream if it has one; it never blocks.
func (w *watchers) notify(id string, ev calproto.Event) {
	w.mu.Lock()
	ch := w.m[id]
	w.mu.Unlock()
	if ch != nil {
		select {
		case ch <- ev:
		default:
		}
	}
}

// waitSpawn waits until a spawn ends (or awaits approval), or timeout
// passes, and returns its record.
func (s *Server) waitSpawn(ctx context.Context, id string, timeout time.Duration) *SpawnRecord {
	return waitEvents(ctx, s, timeout, func() (*SpawnRecord, bool) {
		rec, err := s.getSpawn(ctx, id)
		return rec, err != nil || rec.Terminal() || rec.State == SpawnAwaitingApproval
	})
}

// waitEvents reads a record with read after every event on the bus until
// read says it is final, timeout passes or ctx ends, and returns the
// last record read.
func waitEvents[T any](ctx context.Context, s *Server, timeout time.Duration, read func() (T, bool)) T {
	_, ch, cancel := s.bus.subscribe(^uint64(0))
	defer cancel()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		rec, done := read()
		if done {
			return rec
		}
		select {
		case <-ctx.Done():
			return rec
		case <-deadline.C:
			return rec
		case <-ch:
		}
	}
}

// revoke applies a checked revocation: ledger entry, the whole subtree
// marked revoked and stopped, every Cal told over its watch stream.
func (s *Server) revoke(ctx context.Context, rev *trust.Revocation, actor string) ([]string, *APIError) {
	rj, _ := rev.MarshalJSON()
	var refusal *APIError
	check := func() error {
		if through, ok := s.state.RevokedThrough(rev.Target()); ok {
			refusal = apiErr(409, "cal %s is already revoked (through %s)", rev.Target(), through)
			return refusal
		}
		if err := s.state.Revocations.Check(rev, s.state); err != nil {
			refusal = apiErr(403, "revocation: %v", err)
			return refusal
		}
		return nil
	}
	var sub []identity.ID
	var addErr error
	apply := func() {
		// check ran Check under this same lock, so Add cannot refuse;
		// if it ever did, the ledger would hold a revocation the state
		// does not enforce, and the request fails saying so.
		if addErr = s.state.Revocations.Add(rev, s.state); addErr == nil {
			sub = s.state.Subtree(rev.Target())
		}
	}
	// The revocation is in force from its staging on (enforcing it before
	// it is durable is safe); if it cannot be made durable it is still
	// carried out, and the request fails saying so.
	ctx = critical(ctx) // taking rights away may use half of the disk reserve
	staged, durErr := s.commitTrust(ctx, ledger.Entry{Type: ledger.TypeRevocation, Time: s.now(), Subject: rev.Target().String(), Actor: actor, Data: rj}, check, apply)
	var ae *APIError
	switch {
	case refusal != nil:
		return nil, refusal
	case !staged && errors.As(durErr, &ae): // the disk reserve
		return nil, ae
	case !staged:
		return nil, apiErr(500, "ledger unavailable")
	case addErr != nil:
		s.log.Error("a revocation in the ledger is not in force until the next start", "cal", rev.Target().String(), "err", addErr)
		return nil, apiErr(500, "revocation: recorded in the ledger, but not in force until the control plane restarts: %v", addErr)
	}
	s.kickAnchor()
	ids := make([]string, len(sub))
	for i, cid := range sub {
		ids[i] = cid.String()
	}
	// Tell every Cal first (their streams carry the event at once), then
	// record the state in one transaction, then make sure they stop.
	for _, id := range ids {
		s.watchers.notify(id, calproto.Event{Type: calproto.EventRevoked, Cal: id})
	}
	for _, id := range ids {
		s.bus.publish(Event{Type: "cal.revoked", Cal: id, State: StateRevoked, Actor: actor, Reason: rev.Reason()})
	}
	now := s.now()
	var updated []*CalRecord
	s.regMu.Lock()
	err := s.store.Update(ctx, func(tx store.Tx) error {
		updated = updated[:0]
		for _, id := range ids {
			var c CalRecord
			if store.GetJSON(tx, bucketCals, id, &c) != nil {
				continue
			}
			c.State, c.Healthy, c.LastError, c.UpdatedAt = StateRevoked, false, "revoked by "+actor, now
			if err := store.PutJSON(tx, bucketCals, id, &c); err != nil {
				return err
			}
			updated = append(updated, &c)
		}
		return nil
	})
	if err == nil {
		for _, c := range updated {
			s.index(c)
		}
	}
	s.regMu.Unlock()
	if err != nil {
		// The revocation is in force (the trust state and the ledger);
		// the registry's records follow at the next start (recover).
		s.unrecorded(err, "the state revoked of a revoked subtree; recovery records it at the next start", "cal", rev.Target().String(), "subtree", len(ids))
	}
	// Told Cals exit by themselves; the supervisor makes sure of it in the
	// background, so the answer does not wait for 1,000 process exits.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for _, id := range ids {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				s.stop(context.Background(), id)
			})
		}
		wg.Wait()
	}()
	if durErr != nil {
		return ids, apiErr(500, "ledger unavailable: the subtree is revoked and stopped, but the revocation is not recorded")
	}
	if err != nil {
		aerr := stateErr(err, "the registry's records of the revoked subtree")
		aerr.Msg = "the subtree is revoked and stopped, but " + aerr.Msg
		return ids, aerr
	}
	return ids, nil
}
