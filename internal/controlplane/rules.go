package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/metrics"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/rules"
)

// Spawn criteria: rules attached to a Cal, evaluated after every metrics
// collection (CollectEvery). A firing acts through the same spawn and
// revocation paths as the API, so the spawn engine's limits (rates, depth,
// quotas, kill switch) apply to everything a rule does. Every firing and
// every suppression is published (event stream and audit trail) and
// written to the Cal's encrypted reflection log.

const (
	bucketRules     = "rules"
	bucketRuleState = "rulestate"
	// maxRules bounds the rules of one Cal.
	maxRules = 16
	// keepDecisions is how many recent decisions a Cal's rules keep.
	keepDecisions = 64
	// idleCPU is the CPU use (percent of one core) under which a child
	// counts as idle over the last minute.
	idleCPU = 1.0
)

// calRules is one Cal's rules and their memory.
type calRules struct {
	rules    []*rules.Compiled
	state    map[string]*rules.State
	recent   []rules.Decision
	inFlight bool
}

type ruleBook struct {
	mu    sync.Mutex
	byCal map[string]*calRules
}

// RulesDoc and RulesView are the rules API's wire types.
type (
	RulesDoc  = api.RulesDoc
	RulesView = api.RulesView
)

// compileAll checks a rule set; the first problem names the rule's index.
func compileAll(doc RulesDoc) ([]*rules.Compiled, *APIError) {
	if len(doc.Rules) > maxRules {
		return nil, apiErr(400, "rules: %d rules, over the limit of %d per cal", len(doc.Rules), maxRules)
	}
	seen := map[string]bool{}
	var out []*rules.Compiled
	for i, r := range doc.Rules {
		c, err := rules.Compile(r)
		if err != nil {
			return nil, apiErr(400, "rules[%d].%v", i, err)
		}
		if seen[r.Name] {
			return nil, apiErr(400, "rules[%d].name: %q is used twice", i, r.Name)
		}
		seen[r.Name] = true
		out = append(out, c)
	}
	return out, nil
}

func (s *Server) setRules(id string, compiled []*rules.Compiled) {
	s.rules.mu.Lock()
	defer s.rules.mu.Unlock()
	if s.rules.byCal == nil {
		s.rules.byCal = map[string]*calRules{}
	}
	if len(compiled) == 0 {
		delete(s.rules.byCal, id)
		return
	}
	old := s.rules.byCal[id]
	cr := &calRules{rules: compiled, state: map[string]*rules.State{}}
	if old != nil { // keep the memory of rules that stay
		cr.recent = old.recent
		for _, c := range compiled {
			if st, ok := old.state[c.Name]; ok {
				cr.state[c.Name] = st
			}
		}
	}
	s.rules.byCal[id] = cr
}

// loadRules reads every stored rule set (at start).
func (s *Server) loadRules(ctx context.Context) error {
	docs := map[string]RulesDoc{}
	err := s.store.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(bucketRules, "", func(k string, _ []byte) error {
			var d RulesDoc
			if err := store.GetJSON(tx, bucketRules, k, &d); err != nil {
				return err
			}
			docs[k] = d
			return nil
		})
	})
	// The rules' memory (cooldowns, holds): what cannot be read starts
	// empty, and says so.
	states := map[string]map[string]*rules.State{}
	serr := s.store.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(bucketRuleState, "", func(k string, _ []byte) error {
			var st map[string]*rules.State
			if err := store.GetJSON(tx, bucketRuleState, k, &st); err != nil {
				s.log.Error("a cal's rule memory does not read; its rules start with none", "cal", k, "err", err)
				return nil
			}
			states[k] = st
			return nil
		})
	})
	if serr != nil {
		err = errors.Join(err, fmt.Errorf("rule memory (the rules start with none): %w", serr))
	}
	for id, d := range docs {
		c, aerr := compileAll(d)
		if aerr != nil {
			s.log.Error("stored rules no longer compile; they stay off", "cal", id, "err", aerr.Msg)
			continue
		}
		s.setRules(id, c)
		s.rules.mu.Lock()
		if cr := s.rules.byCal[id]; cr != nil {
			for _, r := range c {
				if st := states[id][r.Name]; st != nil {
					cr.state[r.Name] = st
				}
			}
		}
		s.rules.mu.Unlock()
	}
	return err
}

// saveRuleStates stores the rule memory (hold start, armed, last firings,
// errors) of the Cals whose rules changed it, so that cooldowns, rates and
// hysteresis survive a control-plane restart: one transaction (one fsync)
// per evaluation cycle, not one per Cal.
func (s *Server) saveRuleStates(ctx context.Context, states map[string][]byte) {
	if len(states) == 0 {
		return
	}
	if err := s.store.Update(ctx, func(tx store.Tx) error {
		for id, b := range states {
			if err := tx.Put(bucketRuleState, id, b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		s.log.Warn("rule state not stored", "cals", len(states), "err", err)
	}
}

func (s *Server) handleRulesGet(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	v := RulesView{Rules: []rules.Rule{}, State: map[string]*rules.State{}, Decisions: []rules.Decision{}, Vars: rules.Vars()}
	s.rules.mu.Lock()
	if cr := s.rules.byCal[rec.ID]; cr != nil {
		for _, c := range cr.rules {
			v.Rules = append(v.Rules, c.Rule)
			if st := cr.state[c.Name]; st != nil {
				cp := *st
				v.State[c.Name] = &cp
			}
		}
		v.Decisions = append(v.Decisions, cr.recent...)
	}
	s.rules.mu.Unlock()
	writeJSON(w, 200, v)
}

func (s *Server) handleRulesPut(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var doc RulesDoc
	if !readJSON(w, r, &doc) {
		return
	}
	compiled, aerr := compileAll(doc)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	for i, c := range compiled {
		if c.Action.Kind == rules.Spawn {
			if _, terr := s.resolveTemplate(c.Action.Template, ""); terr != nil {
				writeError(w, apiErr(400, "rules[%d].action.template: %v", i, terr))
				return
			}
		}
	}
	if aerr := checkRetireRules(pr.requester(), "cal "+rec.ID, rec.Permissions, doc.Rules); aerr != nil {
		writeError(w, aerr)
		return
	}
	if doc.Rules == nil {
		doc.Rules = []rules.Rule{}
	}
	if err := s.store.Update(r.Context(), func(tx store.Tx) error {
		if len(doc.Rules) == 0 {
			if err := tx.Delete(bucketRuleState, rec.ID); err != nil {
				return err
			}
		}
		if err := setRuleAuthor(tx, rec.ID, pr.requester().bound); err != nil {
			return err
		}
		return store.PutJSON(tx, bucketRules, rec.ID, doc)
	}); err != nil {
		writeError(w, err)
		return
	}
	s.setRules(rec.ID, compiled)
	s.bus.publish(Event{Type: "rules.set", Cal: rec.ID, Actor: pr.actor(), Reason: fmt.Sprintf("%d rules", len(doc.Rules))})
	writeJSON(w, 200, doc)
}

// attachRules gives a new Cal its template's rules: compiled when the
// template was parsed, and their retire rules authorized with the spawn
// (checkRetireRules in spawn), so only storing them is left.
func (s *Server) attachRules(ctx context.Context, id string, rs []rules.Rule, author string) {
	compiled, aerr := compileAll(RulesDoc{Rules: rs})
	if aerr != nil {
		s.log.Error("template rules refused", "cal", id, "err", aerr.Msg)
		return
	}
	if err := s.store.Update(ctx, func(tx store.Tx) error {
		if err := setRuleAuthor(tx, id, author); err != nil {
			return err
		}
		return store.PutJSON(tx, bucketRules, id, RulesDoc{Rules: rs})
	}); err != nil {
		s.log.Error("template rules not stored", "cal", id, "err", err)
		return
	}
	s.setRules(id, compiled)
}

// last is a series' latest value (0 without samples).
func (s *Server) last(subject, metric string) float64 {
	if sr := s.metrics.Get(subject, metric); sr != nil {
		if p, ok := sr.Last(); ok {
			return p.V
		}
	}
	return 0
}

// ruleMetrics gathers what a Cal's rules see, from the registry index and
// the metric series (no registry decoding: this runs for every Cal with
// rules on every cycle).
func (s *Server) ruleMetrics(id string, c calLite, now time.Time) *rules.Metrics {
	last := s.last
	m := &rules.Metrics{
		CPUPercent: last(id, "cpu_percent"), MemoryBytes: last(id, "memory_bytes"),
		MemoryLimitBytes: float64(c.MemoryQuota), Depth: c.Depth, Healthy: c.Healthy,
		HostFreeCPUPercent: last(hostSubject, "free_cpu_percent"), HostFreeMemoryBytes: last(hostSubject, "free_memory_bytes"),
		Gauges: map[string]float64{},
	}
	for _, name := range s.metrics.Metrics(id) {
		if g, ok := strings.CutPrefix(name, "gauge:"); ok {
			m.Gauges[g] = last(id, name)
		}
	}
	for _, k := range c.Children {
		if kc, ok := s.lite(k); ok && kc.State == StateRunning {
			m.Children++
			if s.idle(k, now) {
				m.IdleChildren++
			}
		}
	}
	return m
}

// runningChildren lists a Cal's running children.
func (s *Server) runningChildren(ctx context.Context, rec *CalRecord) []string {
	var out []string
	for _, id := range rec.Children {
		if c, err := s.getCal(ctx, id); err == nil && c.State == StateRunning {
			out = append(out, id)
		}
	}
	return out
}

// idle reports whether a Cal used under idleCPU over the idle window
// (Config.IdleWindow) and has been sampled for at least that long.
func (s *Server) idle(id string, now time.Time) bool {
	sr := s.metrics.Get(id, "cpu_percent")
	if sr == nil {
		return false
	}
	from := now.Add(-s.cfg.IdleWindow)
	pts := sr.Since(from)
	if len(pts) == 0 || pts[0].T.Sub(from) > CollectEvery+CollectEvery/2 { // too young to judge
		return false
	}
	for _, p := range pts {
		if p.V >= idleCPU {
			return false
		}
	}
	return true
}

// evalRules evaluates every Cal's rules once (after a collection).
func (s *Server) evalRules(ctx context.Context, now time.Time) {
	s.rules.mu.Lock()
	ids := make([]string, 0, len(s.rules.byCal))
	for id := range s.rules.byCal {
		ids = append(ids, id)
	}
	s.rules.mu.Unlock()
	sort.Strings(ids)
	changed := map[string][]byte{}
	defer func() { s.saveRuleStates(ctx, changed) }()
	for _, id := range ids {
		lc, ok := s.lite(id)
		if !ok || lc.State != StateRunning {
			continue // rules act only for running Cals
		}
		m := s.ruleMetrics(id, lc, now)
		var fired []rules.Decision
		s.rules.mu.Lock()
		cr := s.rules.byCal[id]
		if cr == nil || cr.inFlight {
			s.rules.mu.Unlock()
			continue
		}
		var noted []rules.Decision
		dirty := false
		for _, c := range cr.rules {
			st := cr.state[c.Name]
			if st == nil {
				st = &rules.State{}
				cr.state[c.Name] = st
			}
			was := *st
			was.Firings = slices.Clone(st.Firings)
			d := c.Step(st, now, m)
			dirty = dirty || !st.Equal(&was)
			switch {
			case d.Outcome == rules.Fired:
				fired = append(fired, d)
			case d.Outcome == rules.Suppressed, d.Outcome == rules.Disabled && was.Error == "":
				noted = append(noted, d)
			}
		}
		if len(fired) > 0 {
			cr.inFlight = true
		}
		if dirty {
			changed[id], _ = json.Marshal(cr.state)
		}
		s.rules.mu.Unlock()
		for _, d := range noted {
			s.noteDecision(ctx, id, d)
		}
		if len(fired) == 0 {
			continue
		}
		rec, err := s.getCal(ctx, id)
		if err != nil {
			s.rules.mu.Lock()
			cr.inFlight = false
			s.rules.mu.Unlock()
			continue
		}
		s.wg.Add(1)
		go func() { // actions wait on spawns and revocations: off the collector
			defer s.wg.Done()
			for _, d := range fired {
				s.act(s.ctx, rec, d, now)
			}
			s.rules.mu.Lock()
			if cr := s.rules.byCal[id]; cr != nil {
				cr.inFlight = false
			}
			s.rules.mu.Unlock()
		}()
	}
}

// act carries out a firing through the spawn engine or revocation.
func (s *Server) act(ctx context.Context, rec *CalRecord, d rules.Decision, now time.Time) {
	actor := "rule:" + d.Rule
	a := d.Action
	done := 0
	var refusal string
	switch a.Kind {
	case rules.Spawn:
		who, err := s.ruleRequester(ctx, rec.ID, d.Rule)
		if err != nil {
			refusal = err.Error()
			break
		}
		for range a.Count {
			sp, err := s.Spawn(ctx, SpawnParams{Parent: rec.ID, Template: a.Template}, who)
			if err == nil && sp.State == SpawnAwaitingApproval {
				refusal = "held for approval (" + sp.Approval + ")"
				break
			}
			if err != nil {
				var ae *APIError
				if errors.As(err, &ae) {
					refusal = ae.Msg
				} else {
					refusal = "spawn failed"
				}
				break
			}
			done++
		}
	case rules.Retire:
		who, err := s.ruleRequester(ctx, rec.ID, d.Rule)
		if err != nil {
			refusal = err.Error()
			break
		}
		var idle []string
		for _, c := range s.runningChildren(ctx, rec) {
			if s.idle(c, now) {
				idle = append(idle, c)
			}
		}
		if len(idle) == 0 {
			refusal = "no idle children to retire"
		}
		for _, c := range idle[:min(len(idle), a.Count)] {
			if refusal = s.retireBy(ctx, who, c); refusal != "" {
				break
			}
			if crec, err := s.getCal(ctx, c); err == nil {
				aerr, hold := s.checkRevokePolicies(ctx, crec, actor)
				if aerr == nil && hold != nil {
					aerr = apiErr(403, "policy %s: %s (a rule does not open approval requests for retirements)", hold.policy.Name, hold.policy.Message)
				}
				if aerr != nil {
					refusal = aerr.Msg
					break
				}
			}
			rev, err := s.calRevocation(ctx, rec.ID, c, "retired by rule "+d.Rule+": idle")
			if err != nil {
				refusal = err.Error()
				break
			}
			if _, aerr := s.revoke(ctx, rev, actor); aerr != nil {
				refusal = aerr.Msg
				break
			}
			s.usePermission(ctx, rec.ID, "revoke")
			s.note(rec.ID, c, "retire", 0)
			done++
		}
	}
	d.Reason = fmt.Sprintf("%s; %s %d of %d", d.Reason, a.Kind, done, a.Count)
	if refusal != "" {
		d.Reason += "; refused: " + refusal
		if done == 0 {
			d.Outcome = rules.Suppressed
		}
	}
	s.noteDecision(ctx, rec.ID, d)
}

// noteDecision keeps a decision, publishes it (event stream and audit
// trail) and writes it to the Cal's reflection log.
func (s *Server) noteDecision(ctx context.Context, id string, d rules.Decision) {
	s.rules.mu.Lock()
	if cr := s.rules.byCal[id]; cr != nil {
		cr.recent = append(cr.recent, d)
		if len(cr.recent) > keepDecisions {
			cr.recent = slices.Delete(cr.recent, 0, len(cr.recent)-keepDecisions)
		}
	}
	s.rules.mu.Unlock()
	s.bus.publish(Event{Type: "rule." + d.Outcome, Cal: id, Actor: "rule:" + d.Rule, Reason: d.Reason})
	cid, err := identity.ParseID(id)
	if err != nil {
		return
	}
	body, _ := jsonMarshal(calproto.Reflect{Kind: "rule", Text: fmt.Sprintf("rule %s %s: %s", d.Rule, d.Outcome, d.Reason)})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.callCalRaw(cctx, cid, http.MethodPost, calproto.PathReflections, body); err != nil {
		s.log.Warn("rule decision not written to the reflection log", "cal", id, "rule", d.Rule, "err", err)
	}
}

// RulePreview is POST /v1/cals/{id}/rules/preview.
type (
	RulePreviewRequest = api.RulePreviewRequest
	RulePreview        = api.RulePreview
)

// handleRulePreview runs one rule over a Cal's recorded metrics, from a
// fresh state, on the samples' own clock: when would it have fired, and
// what would have held it back. Children counts are today's (the series
// do not keep them). Nothing is stored or acted on.
func (s *Server) handleRulePreview(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var req RulePreviewRequest
	if !readJSON(w, r, &req) {
		return
	}
	c, err := rules.Compile(req.Rule)
	if err != nil {
		writeError(w, apiErr(400, "rule.%v", err))
		return
	}
	now := s.now()
	since := now.Add(-15 * time.Minute)
	if !req.Since.IsZero() {
		since = req.Since
	}
	base := s.ruleMetrics(rec.ID, calLite{State: rec.State, Healthy: rec.Healthy, Depth: rec.Depth, Children: rec.Children, MemoryQuota: rec.Quota.MemoryBytes}, now)
	// Each series is read once and walked along the CPU samples' clock.
	type cursor struct {
		pts []metrics.Point
		i   int
	}
	cursors := map[string]*cursor{}
	for _, name := range s.metrics.Metrics(rec.ID) {
		if name == "memory_bytes" || strings.HasPrefix(name, "gauge:") {
			cursors[name] = &cursor{pts: s.metrics.Get(rec.ID, name).Since(since)}
		}
	}
	at := func(metric string, t time.Time) (float64, bool) {
		cur := cursors[metric]
		if cur == nil {
			return 0, false
		}
		for cur.i < len(cur.pts) && !cur.pts[cur.i].T.After(t) {
			cur.i++
		}
		if cur.i == 0 {
			return 0, false
		}
		return cur.pts[cur.i-1].V, true
	}
	out := RulePreview{Decisions: []rules.Decision{}, Counts: map[string]int{}}
	cpu := s.metrics.Get(rec.ID, "cpu_percent")
	if cpu == nil {
		writeJSON(w, 200, out)
		return
	}
	var st rules.State
	for _, p := range cpu.Since(since) {
		m := *base
		m.CPUPercent = p.V
		m.MemoryBytes, _ = at("memory_bytes", p.T)
		m.Gauges = map[string]float64{}
		for name := range cursors {
			if g, ok := strings.CutPrefix(name, "gauge:"); ok {
				if v, ok := at(name, p.T); ok {
					m.Gauges[g] = v
				}
			}
		}
		d := c.Step(&st, p.T, &m)
		out.Samples++
		out.Counts[d.Outcome]++
		if d.Outcome == rules.Fired || d.Outcome == rules.Suppressed || d.Outcome == rules.Disabled {
			if len(out.Decisions) < keepDecisions {
				out.Decisions = append(out.Decisions, d)
			}
		}
		if d.Outcome == rules.Disabled {
			break
		}
	}
	writeJSON(w, 200, out)
}
