package controlplane

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/dashboard"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/trust"
)

// OpenAPI is the API's OpenAPI 3.1 document, served at /v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// maxRequestBody bounds every API request body.
const maxRequestBody = 64 << 10

// writeJSON is the one writer of the API's JSON answers. v is encoded
// before the status is sent, so a value that does not encode (a bug)
// answers 500 rather than a success with half a body. A write that fails
// means the client has gone: there is nobody left to tell.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // the client has gone; see above
}

// writeError writes the API's one error shape; internal errors become a
// generic message.
func writeError(w http.ResponseWriter, err error) {
	var ae *APIError
	if !errors.As(err, &ae) {
		ae = apiErr(500, "internal error")
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(ae.RetryAfter/time.Second)+1))
	}
	writeJSON(w, ae.Status, ae)
}

// readJSON decodes a bounded, strict JSON body (internal/strictjson: keys
// exactly as documented, no duplicate, nothing after the document).
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	// A client has bodyTimeout to send the body: a slow one does not hold
	// its connection (and descriptor) for ever.
	// Setting a deadline fails only on a connection that is gone (the read
	// then fails) or on a ResponseWriter that is no server's (a test's).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		writeError(w, apiErr(413, "body: over the limit of %d bytes", maxRequestBody))
		return false
	}
	if err := strictjson.Unmarshal(b, maxRequestBody, v); err != nil {
		writeError(w, apiErr(400, "body: %v", err))
		return false
	}
	return true
}

// authorize checks the root credential: the SHA-256 of both compared in
// constant time (no early exit on length), and never an empty or short
// one, whatever the server holds.
func (s *Server) authorize(r *http.Request) bool {
	tok := bearer(r)
	if len(tok) < api.MinCredentialLen || len(s.token) < api.MinCredentialLen {
		return false
	}
	a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// bearer is the request's credential: the Authorization bearer token, or
// access_token in the query (WebSocket clients in browsers).
func bearer(r *http.Request) string {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return tok
	}
	return r.URL.Query().Get("access_token")
}

// apiHandler is the operator and developer API under /v1, the dashboard
// and the docs. Every route is registered through the authorization
// table (package authz) and runs behind guard.
func (s *Server) apiHandler() http.Handler { return s.apiMux().Handler() }

func (s *Server) apiMux() *authz.Mux {
	m := authz.NewMux(authz.Operator, s.guard)
	h := func(pattern string, f func(http.ResponseWriter, *http.Request, principal)) {
		m.Handle(pattern, withPrincipal(f))
	}
	m.HandleFunc("GET /docs", s.handleDocs)
	m.HandleFunc("GET /healthz", s.handleHealthz)
	m.HandleFunc("GET /metrics", s.handlePrometheus().ServeHTTP)
	m.Handle("GET /", dashboard.Handler())
	m.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(OpenAPI)
	})
	s.handleLedgerRoutes(m)
	m.HandleFunc("GET /v1/authz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.authzTable(m)) })
	h("GET /v1/status", s.handleStatus)
	h("GET /v1/cals", func(w http.ResponseWriter, r *http.Request, p principal) {
		recs, err := s.listCals(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		out := []*CalRecord{}
		for _, c := range recs {
			if s.inScope(r.Context(), p, c.ID) {
				out = append(out, c)
			}
		}
		writeJSON(w, 200, out)
	})
	h("GET /v1/cals/{id}", s.handleShow)
	h("POST /v1/cals", s.handleSpawn)
	h("POST /v1/cals/{id}/revoke", s.handleRevoke)
	h("POST /v1/cals/{id}/restart", s.handleRestart)
	h("GET /v1/cals/{id}/logs", s.handleLogs)
	h("GET /v1/logs", s.handleLogsAll)
	h("GET /v1/traffic", s.handleTraffic)
	h("POST /v1/sim", s.handleSim)
	h("GET /v1/cals/{id}/matrix", s.handleMatrixGet)
	h("PUT /v1/cals/{id}/matrix", s.handleMatrixPut)
	h("GET /v1/cals/{id}/metrics", s.handleMetrics)
	h("GET /v1/cals/{id}/card", s.handleCard)
	h("GET /v1/cals/{id}/health", s.handleHealth)
	h("GET /v1/cals/{id}/series", s.handleSeries)
	h("GET /v1/heat", s.handleHeat)
	h("GET /v1/cals/{id}/rules", s.handleRulesGet)
	h("PUT /v1/cals/{id}/rules", s.handleRulesPut)
	h("POST /v1/cals/{id}/rules/preview", s.handleRulePreview)
	m.HandleFunc("GET /v1/cals/{id}/console", s.handleConsole)
	m.HandleFunc("GET /v1/cals/{id}/pprof/{profile}", s.handleCalProfile)
	m.HandleFunc("GET /v1/debug/pprof/{profile}", s.handleOwnProfile)
	m.HandleFunc("POST /v1/verify", s.handleVerify)
	m.HandleFunc("GET /v1/spiffe/bundle", s.handleSPIFFEBundle)
	m.HandleFunc("POST /v1/spiffe/verify", s.handleSPIFFEVerify)
	h("GET /v1/cals/{id}/chain", s.handleChain)
	m.HandleFunc("GET /v1/templates", s.handleTemplates)
	m.HandleFunc("GET /v1/templates/{name}", s.handleTemplate)
	h("GET /v1/templates/{name}/recommendations", s.handleTemplateRecommendations)
	h("GET /v1/cals/{id}/reflections", s.handleReflections)
	h("POST /v1/cals/{id}/reflections", s.handleReflections)
	h("POST /v1/cals/{id}/reflections/share", s.handleShare)
	m.HandleFunc("POST /v1/tokens", s.handleTokenCreate)
	m.HandleFunc("GET /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		ts, err := s.listTokens(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, 200, ts)
	})
	m.HandleFunc("DELETE /v1/tokens/{id}", s.handleTokenDelete)
	h("GET /v1/whoami", func(w http.ResponseWriter, r *http.Request, p principal) {
		me := api.WhoAmI{Actor: p.actor(), Admin: p.admin, Name: p.name, Root: p.admin && p.name == rootAdmin}
		if p.token != nil {
			t := *p.token
			me.Token = &t
		}
		writeJSON(w, 200, me)
	})
	m.HandleFunc("GET /v1/admins", s.handleAdminsList)
	h("POST /v1/admins", s.handleAdminAdd)
	h("DELETE /v1/admins/{name}", s.handleAdminRemove)
	h("GET /v1/approvals", s.handleApprovalsList)
	h("GET /v1/approvals/{id}", s.handleApprovalGet)
	h("POST /v1/approvals/{id}/approve", s.handleApprovalVote(true))
	h("POST /v1/approvals/{id}/reject", s.handleApprovalVote(false))
	h("GET /v1/spawns", func(w http.ResponseWriter, r *http.Request, p principal) {
		recs, err := s.listSpawns(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		out := []*SpawnRecord{}
		for _, sp := range recs {
			if s.inScope(r.Context(), p, sp.Parent) {
				out = append(out, sp)
			}
		}
		writeJSON(w, 200, out)
	})
	h("GET /v1/spawns/{id}", func(w http.ResponseWriter, r *http.Request, p principal) {
		rec, err := s.getSpawn(r.Context(), r.PathValue("id"))
		if err != nil || !s.inScope(r.Context(), p, rec.Parent) {
			writeError(w, apiErr(404, "no spawn %s", r.PathValue("id")))
			return
		}
		writeJSON(w, 200, rec)
	})
	m.HandleFunc("POST /v1/spawning", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Paused bool `json:"paused"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		s.paused.Store(req.Paused)
		s.bus.publish(Event{Type: "spawning.paused", State: strconv.FormatBool(req.Paused), Actor: actorOf(r)})
		writeJSON(w, 200, map[string]bool{"paused": req.Paused})
	})
	h("GET /v1/cals/{id}/recommendations", s.handleRecommendations)
	h("GET /v1/policies", s.handlePoliciesGet)
	h("PUT /v1/policies", s.handlePoliciesPut)
	m.HandleFunc("GET /v1/limits", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.limits()) })
	m.HandleFunc("PUT /v1/limits", s.handleSetLimits)
	m.HandleFunc("GET /v1/audit", s.handleAudit)
	h("GET /v1/events", s.handleEvents)
	m.HandleFunc("POST /v1/snapshot", s.handleSnapshot)
	m.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, r *http.Request) {
		// An optional empty JSON object: a body that is not one is refused
		// before anything stops.
		var req struct{}
		if r.ContentLength != 0 && !readJSON(w, r, &req) {
			return
		}
		writeJSON(w, 202, map[string]string{"status": "stopping"})
		go s.shutdown()
	})
	return m
}

// resolve finds a Cal by full ID or unique prefix.
func (s *Server) resolve(ctx context.Context, ref string) (*CalRecord, *APIError) {
	if rec, err := s.getCal(ctx, ref); err == nil {
		return rec, nil
	}
	p := strings.ReplaceAll(strings.ToLower(ref), "-", "")
	recs, _ := s.listCals(ctx)
	if r := byName(recs, ref); r != nil {
		return r, nil
	}
	if len(p) < 4 {
		return nil, apiErr(404, "cal %q: no cal of that name; give the full ID or a prefix of at least 4 characters", ref)
	}
	var found *CalRecord
	for _, r := range recs {
		if strings.HasPrefix(r.ID, p) {
			if found != nil {
				return nil, apiErr(409, "cal %q is ambiguous", ref)
			}
			found = r
		}
	}
	if found == nil {
		return nil, apiErr(404, "cal %q: no such cal", ref)
	}
	return found, nil
}

// byName picks the Cal a name refers to: the live one (a name belongs to
// at most one Cal that is not revoked), else the most recently created of
// the revoked Cals that had it, so that `show NAME` still finds a revoked
// Cal and says so by its state. It returns nil when no Cal had the name.
func byName(recs []*CalRecord, name string) *CalRecord {
	var revoked *CalRecord
	for _, r := range recs {
		if r.Name != name {
			continue
		}
		if r.State != StateRevoked {
			return r
		}
		if revoked == nil || r.CreatedAt.After(revoked.CreatedAt) {
			revoked = r
		}
	}
	return revoked
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, p principal) {
	recs, _ := s.listCals(r.Context())
	by := map[string]int{}
	for _, c := range recs {
		if s.inScope(r.Context(), p, c.ID) {
			by[c.State]++
		}
	}
	feats := make([]string, len(s.cfg.Features))
	for i, f := range s.cfg.Features {
		feats[i] = string(f)
	}
	st := api.Status{Network: s.net.Info.Network.String(), Master: s.net.Info.Master.String(), Cals: by,
		Paused: s.paused.Load(), LedgerSize: s.lg.Size(), Driver: s.cfg.Driver.Name(), Isolation: feats}
	if m, err := s.getCal(r.Context(), st.Master); err == nil {
		st.MasterState = m.State
		if m.State == StateFailed || m.State == StateStopped {
			st.MasterError = m.LastError
		}
	}
	writeJSON(w, 200, st)
}

func (s *Server) handleShow(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	v := *rec // the record plus what is measured now
	s.procMu.Lock()
	p := s.procs[rec.ID]
	s.procMu.Unlock()
	if rec.State == StateRunning {
		if id, err := identity.ParseID(rec.ID); err == nil {
			if b, err := s.callCalRaw(r.Context(), id, http.MethodGet, calproto.PathTiers, nil); err == nil {
				var t struct {
					Tiers    []api.Tier `json:"tiers"`
					Degraded string     `json:"degraded"`
				}
				if strictjson.Unmarshal(b, maxCalAnswer, &t) == nil {
					v.Tiers = t.Tiers
				}
			}
		}
	}
	if p != nil && p.inst != nil && rec.State == StateRunning {
		if iso, err := p.inst.Isolation(); err == nil {
			v.Isolation = map[string]bool{}
			for f, on := range iso {
				v.Isolation[string(f)] = on
			}
		}
	}
	writeJSON(w, 200, v)
}

func (s *Server) handleSpawn(w http.ResponseWriter, r *http.Request, pr principal) {
	var p SpawnParams
	if !readJSON(w, r, &p) {
		return
	}
	if p.Parent == "" && !pr.admin {
		p.Parent = pr.token.Parent
	}
	if p.Parent == "" {
		p.Parent = s.net.Info.Master.String()
	} else {
		rec, aerr := s.resolveScoped(r.Context(), pr, p.Parent)
		if aerr != nil {
			aerr.Msg = "parent: " + aerr.Msg
			writeError(w, aerr)
			return
		}
		p.Parent = rec.ID
	}
	if k := r.Header.Get("Idempotency-Key"); k != "" && p.IdempotencyKey == "" {
		p.IdempotencyKey = k
	}
	// Authorization is authorizeSpawn's, inside Spawn, on the request once
	// its template and defaults are applied.
	rec, err := s.Spawn(r.Context(), p, pr.requester())
	if err != nil {
		writeError(w, err)
		return
	}
	if r.URL.Query().Get("wait") == "true" {
		rec = s.waitSpawn(r.Context(), rec.ID, 60*time.Second)
	}
	writeJSON(w, 202, rec)
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, pr principal) {
	var req struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &req) {
		return
	}
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if len(req.Reason) > maxComment {
		writeError(w, apiErr(400, "reason: %d characters, over the limit of %d", len(req.Reason), maxComment))
		return
	}
	// An administrator's revocation is signed by the network authority; a
	// developer token's is its Cal's own (the token acts below that Cal),
	// signed by the Cal now and carried out as signed, even after an
	// approval.
	var rev *trust.Revocation
	from := fromAuthority
	if pr.token != nil {
		var err error
		if rev, err = s.calRevocation(r.Context(), pr.token.Parent, rec.ID, req.Reason); err != nil {
			writeError(w, apiErr(409, "revocation: a token's revocation is signed by its cal %s: %v", pr.token.Parent, err))
			return
		}
		from = pr.token.Parent
	}
	aerr, hold := s.checkRevokePolicies(r.Context(), rec, pr.actor())
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if hold != nil {
		a := &api.Approval{Cal: rec.ID, Reason: req.Reason, Actor: pr.actor()}
		if rev != nil {
			a.Revocation, _ = rev.MarshalJSON()
		}
		s.holdRevocation(w, r, hold, a)
		return
	}
	if rev == nil {
		target, _ := identity.ParseID(rec.ID)
		var err error
		if rev, err = trust.Revoke(s.auth, trust.RevokeRequest{Network: s.net.Info.Network, Target: target, Authority: true, Reason: req.Reason, IssuedAt: s.now()}); err != nil {
			writeError(w, apiErr(400, "%v", err))
			return
		}
	}
	sub, aerr := s.revoke(r.Context(), rev, pr.actor())
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if pr.token != nil {
		s.usePermission(r.Context(), pr.token.Parent, "revoke")
	}
	s.note(from, rec.ID, "revoke", 0)
	writeJSON(w, 200, map[string]any{"revoked": rec.ID, "subtree": sub})
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	f, err := os.Open(s.logPath(rec.ID))
	if err != nil {
		writeError(w, apiErr(404, "no logs for cal %s yet", rec.ID))
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 1<<20 {
		if _, err := f.Seek(-1<<20, io.SeekEnd); err != nil {
			s.log.Error("reading a cal's log", "cal", rec.ID, "err", err)
			writeError(w, err)
			return
		}
	}
	follow := r.URL.Query().Get("follow") == "true"
	if follow {
		release, aerr := s.streams.acquire(pr.actor())
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		defer release()
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if _, err := io.Copy(w, f); err != nil || !follow {
		return // the status is sent: a failed copy (the client gone) just ends the answer
	}
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		case <-t.C:
			n, err := io.Copy(w, f)
			if err != nil {
				return // the client has gone
			}
			if n > 0 && fl != nil {
				fl.Flush()
			}
		}
	}
}

// handleEvents streams events over a WebSocket, resuming after ?after=SEQ.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, p principal) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	release, aerr := s.streams.acquire(p.actor())
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer release()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	past, ch, cancel := s.bus.subscribe(after)
	defer cancel()
	ctx := c.CloseRead(r.Context())
	send := func(e Event) error {
		b, _ := json.Marshal(e)
		wctx, cc := context.WithTimeout(ctx, 5*time.Second)
		defer cc()
		return c.Write(wctx, websocket.MessageText, b)
	}
	visible := func(e Event) bool { return p.admin || s.eventInScope(ctx, p, e) }
	for _, e := range past {
		if visible(e) && send(e) != nil {
			return
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			c.Close(websocket.StatusGoingAway, "control plane stopping")
			return
		case e := <-ch:
			if visible(e) && send(e) != nil {
				return
			}
		}
	}
}

// shutdown is set by Run's caller through SetShutdown.
func (s *Server) shutdown() {
	if s.onShutdown != nil {
		s.onShutdown()
	}
}

// SetShutdown registers what POST /v1/shutdown (calnet down) calls.
func (s *Server) SetShutdown(f func()) { s.onShutdown = f }

// handleMetrics fetches a Cal's own Prometheus metrics over mutual TLS.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if rec.State != StateRunning {
		writeError(w, apiErr(409, "cal %s is %s", rec.ID, rec.State))
		return
	}
	id, _ := identity.ParseID(rec.ID)
	body, err := s.callCalRaw(r.Context(), id, http.MethodGet, "/metrics", nil)
	if err != nil {
		writeError(w, apiErr(502, "cal %s: %v", rec.ID, err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write(body)
}

// handleChain returns a Cal's soul chain (soul-chain.sig), for the trust
// chain views and offline verification.
func (s *Server) handleChain(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	id, _ := identity.ParseID(rec.ID)
	c, err := s.chainOf(id)
	if err != nil {
		writeError(w, apiErr(404, "cal %s has no soul chain", rec.ID))
		return
	}
	b, _ := c.MarshalJSON()
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// SpawnLimits are the limits an administrator can change while the network
// runs.
type SpawnLimits struct {
	MaxCals     int     `json:"max_cals"`
	SpawnRate   float64 `json:"spawn_rate"`
	SpawnBurst  int     `json:"spawn_burst"`
	ParentRate  float64 `json:"parent_rate"`
	ParentBurst int     `json:"parent_burst"`
}

func (s *Server) limits() SpawnLimits {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l := s.cfg.Limits
	return SpawnLimits{MaxCals: l.MaxCals, SpawnRate: l.SpawnRate, SpawnBurst: l.SpawnBurst, ParentRate: l.ParentRate, ParentBurst: l.ParentBurst}
}

func (s *Server) handleSetLimits(w http.ResponseWriter, r *http.Request) {
	var l SpawnLimits
	if !readJSON(w, r, &l) {
		return
	}
	switch {
	case l.MaxCals < 1 || l.MaxCals > 100000:
		writeError(w, apiErr(400, "max_cals: %d is outside 1..100000", l.MaxCals))
		return
	case l.SpawnRate <= 0 || l.SpawnRate > 100000:
		writeError(w, apiErr(400, "spawn_rate: %v is outside (0, 100000] per second", l.SpawnRate))
		return
	case l.SpawnBurst < 1 || l.SpawnBurst > 100000:
		writeError(w, apiErr(400, "spawn_burst: %d is outside 1..100000", l.SpawnBurst))
		return
	case l.ParentRate <= 0 || l.ParentRate > 100000:
		writeError(w, apiErr(400, "parent_rate: %v is outside (0, 100000] per second", l.ParentRate))
		return
	case l.ParentBurst < 1 || l.ParentBurst > 100000:
		writeError(w, apiErr(400, "parent_burst: %d is outside 1..100000", l.ParentBurst))
		return
	}
	s.limMu.Lock()
	s.cfg.Limits.MaxCals, s.cfg.Limits.SpawnRate, s.cfg.Limits.SpawnBurst = l.MaxCals, l.SpawnRate, l.SpawnBurst
	s.cfg.Limits.ParentRate, s.cfg.Limits.ParentBurst = l.ParentRate, l.ParentBurst
	s.limiter = newLimiter(s.cfg.Limits)
	s.limMu.Unlock()
	b, _ := json.Marshal(l)
	s.bus.publish(Event{Type: "limits.changed", Actor: actorOf(r), Reason: string(b)})
	writeJSON(w, 200, l)
}
