package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/advisor"
)

// Least privilege (FR-5.2) and per-template learning (FR-5.1, FR-5.5):
// the control plane counts the uses of each Cal's permissions it sees, and
// recommends, per Cal and per template, the permissions the work needs. A
// spawn that asks for least_privilege is cut to what the Cals of its
// template have used.

// observable are the permissions whose use passes through the control
// plane: spawning a child, revoking one, listing children (read), sharing
// reflections, and sharing with a peer (talk). admin is never seen used
// and is kept.
var observable = []string{"spawn", "revoke", "read", "share", "talk"}

// persistEvery: a permission's count is written to the registry on its
// first use and every this many uses after (the live count is in memory).
const persistEvery = 100

// usePermission notes one use of perm by cal.
func (s *Server) usePermission(ctx context.Context, cal, perm string) {
	s.useMu.Lock()
	if s.uses == nil {
		s.uses = map[string]map[string]int64{}
	}
	m := s.uses[cal]
	if m == nil {
		m = map[string]int64{}
		s.uses[cal] = m
	}
	m[perm]++
	n := m[perm]
	s.useMu.Unlock()
	if n != 1 && n%persistEvery != 0 {
		return
	}
	_, err := s.updateCal(ctx, cal, func(r *CalRecord) {
		if r.PermissionUse == nil {
			r.PermissionUse = map[string]int64{}
		}
		r.PermissionUse[perm] = max(r.PermissionUse[perm], n)
	})
	// The count stays in memory (usesOf reads it) and the next
	// persistEvery uses store it again.
	s.unrecorded(err, "a cal's permission use count", "cal", cal, "permission", perm, "uses", n)
}

// usesOf is a Cal's permission uses: the registry's, raised by what is
// counted in memory since.
func (s *Server) usesOf(r *CalRecord) map[string]int64 {
	out := map[string]int64{}
	for k, v := range r.PermissionUse {
		out[k] = v
	}
	s.useMu.Lock()
	for k, v := range s.uses[r.ID] {
		out[k] = max(out[k], v)
	}
	s.useMu.Unlock()
	return out
}

// recommendPermissions compares held permissions with those used by the
// Cals observed (for observed in all).
func recommendPermissions(held []string, used map[string]int64, cals int, observed, window time.Duration) *api.PermissionRecommendation {
	pr := &api.PermissionRecommendation{Held: slices.Clone(held), Used: []string{}, Unused: []string{}, Recommended: []string{},
		Observed: fmt.Sprintf("%v over %d Cal(s)", observed.Round(time.Second), cals)}
	for _, p := range held {
		switch {
		case !slices.Contains(observable, p):
			pr.NotObservable = append(pr.NotObservable, p)
			pr.Recommended = append(pr.Recommended, p)
		case used[p] > 0:
			pr.Used = append(pr.Used, p)
			pr.Recommended = append(pr.Recommended, p)
		default:
			pr.Unused = append(pr.Unused, p)
		}
	}
	var counts []string
	for _, p := range pr.Used {
		counts = append(counts, fmt.Sprintf("%s %d times", p, used[p]))
	}
	switch {
	case observed < window:
		pr.Recommended = slices.Clone(held)
		pr.Reason = fmt.Sprintf("observed for %v of the %v needed to recommend a cut: keep %s", observed.Round(time.Second), window, strings.Join(held, ","))
	case len(pr.Unused) == 0:
		pr.Reason = "every observable permission held was used (" + strings.Join(counts, ", ") + ")"
	default:
		pr.Reason = fmt.Sprintf("never used in %s: %s", pr.Observed, strings.Join(pr.Unused, ","))
		if len(counts) > 0 {
			pr.Reason += "; used: " + strings.Join(counts, ", ")
		}
		pr.Reason += "; recommended: " + strings.Join(pr.Recommended, ",")
	}
	if len(pr.NotObservable) > 0 {
		pr.Reason += "; kept because their use cannot be observed: " + strings.Join(pr.NotObservable, ",")
	}
	return pr
}

// templateUse sums what the Cals of a template (in any state: history
// counts) for which keep holds (nil: all) used, and for how long they
// were observed.
func (s *Server) templateUse(ctx context.Context, tmpl string, keep func(cal string) bool) (used map[string]int64, cals int, observed time.Duration, live []*CalRecord) {
	recs, _ := s.listCals(ctx)
	used = map[string]int64{}
	now := s.now()
	for _, r := range recs {
		if r.Template != tmpl || r.CreatedAt.IsZero() || keep != nil && !keep(r.ID) {
			continue
		}
		cals++
		end := now
		if !isLive(r.State) {
			end = r.UpdatedAt
		}
		observed += max(0, end.Sub(r.CreatedAt))
		for k, v := range s.usesOf(r) {
			used[k] += v
		}
		if isLive(r.State) {
			live = append(live, r)
		}
	}
	return used, cals, observed, live
}

// leastPrivilege cuts perms to what the Cals of tmpl have used, keeping
// what cannot be observed, and says why.
func (s *Server) leastPrivilege(ctx context.Context, tmpl string, perms []string) ([]string, string) {
	used, cals, observed, _ := s.templateUse(ctx, tmpl, nil)
	if cals == 0 || observed < s.cfg.ObserveWindow {
		return perms, fmt.Sprintf("least privilege: Cals of template %s observed for %v (%d Cals), %v needed: permissions kept", tmpl, observed.Round(time.Second), cals, s.cfg.ObserveWindow)
	}
	pr := recommendPermissions(perms, used, cals, observed, s.cfg.ObserveWindow)
	if len(pr.Unused) == 0 {
		return perms, "least privilege: nothing to cut; " + pr.Reason
	}
	return pr.Recommended, fmt.Sprintf("least privilege: cut %s (Cals of template %s never used them in %s); granted %s",
		strings.Join(pr.Unused, ","), tmpl, pr.Observed, strings.Join(pr.Recommended, ","))
}

// handleTemplateRecommendations is GET /v1/templates/{name}/recommendations:
// from the template's Cals and spawns in the caller's scope.
func (s *Server) handleTemplateRecommendations(w http.ResponseWriter, r *http.Request, pr principal) {
	name := r.PathValue("name")
	ctx := r.Context()
	keep := func(cal string) bool { return s.inScope(ctx, pr, cal) }
	used, cals, observed, live := s.templateUse(ctx, name, keep)
	// What the template gives, and what its Cals were given (a spawn may
	// ask for other permissions and quotas, and an inline template exists
	// only through its Cals).
	var p SpawnParams
	tmpl, aerr := s.resolveTemplate(name, "")
	switch {
	case aerr == nil:
		applyTemplate(&p, tmpl) // permissions and quotas: nothing a spawn's validation would add is read here
	case cals == 0:
		writeError(w, aerr)
		return
	}
	recs, _ := s.listCals(ctx)
	for _, c := range recs {
		if c.Template != name || !keep(c.ID) {
			continue
		}
		for _, perm := range c.Permissions {
			if !slices.Contains(p.Permissions, perm) {
				p.Permissions = append(p.Permissions, perm)
			}
		}
		if aerr != nil {
			p.CPUMillis, p.MemoryBytes = max(p.CPUMillis, c.Quota.CPUMillis), max(p.MemoryBytes, c.Quota.MemoryBytes)
		}
	}
	since := s.now().Add(-time.Hour)
	pooled := func(metric string) []float64 {
		var vs []float64
		for _, c := range live {
			if sr := s.metrics.Get(c.ID, metric); sr != nil {
				for _, p := range sr.Since(since) {
					vs = append(vs, p.V)
				}
			}
		}
		return vs
	}
	out := api.TemplateRecommendations{Template: name, Cals: len(live), Resources: []advisor.Recommendation{
		advisor.Recommend("cpu_millis", pooled("cpu_percent"), p.CPUMillis),
		advisor.Recommend("memory_bytes", pooled("memory_bytes"), p.MemoryBytes),
	}}
	held := p.Permissions
	if len(held) == 0 {
		held = []string{"read"}
	}
	out.Permissions = recommendPermissions(held, used, cals, observed, s.cfg.ObserveWindow)
	out.Outcomes = s.templateOutcomes(ctx, name, keep)
	writeJSON(w, 200, out)
}

// templateOutcomes summarises the spawns of a template under the Cals
// for which keep holds (nil: all).
func (s *Server) templateOutcomes(ctx context.Context, tmpl string, keep func(cal string) bool) api.TemplateOutcomes {
	o := api.TemplateOutcomes{DeployTimeout: s.outcomes.Timeout("template:"+tmpl, s.cfg.DeployTimeout).String()}
	sps, _ := s.listSpawns(ctx)
	var ready []float64
	for _, sp := range sps {
		if sp.Template != tmpl || keep != nil && !keep(sp.Parent) {
			continue
		}
		o.Spawns++
		switch sp.State {
		case SpawnRunning:
			o.Running++
			if !sp.OperationalAt.IsZero() {
				ready = append(ready, float64(sp.OperationalAt.Sub(sp.RequestedAt).Microseconds())/1000)
			}
		case SpawnFailed:
			o.Failed++
			o.LastFailures = append(o.LastFailures, sp.Reason)
		case SpawnRejected:
			o.Rejected++
		}
	}
	if len(o.LastFailures) > 5 {
		o.LastFailures = o.LastFailures[len(o.LastFailures)-5:]
	}
	if len(ready) > 0 {
		sort.Float64s(ready)
		at := func(q float64) float64 { return ready[min(len(ready)-1, int(q*float64(len(ready))))] }
		o.OperationalP50, o.OperationalP95 = at(0.5), at(0.95)
	}
	// Back-off is per parent: report the latest under any parent.
	seen := map[string]bool{}
	for _, sp := range sps {
		if sp.Template != tmpl || seen[sp.Parent] {
			continue
		}
		seen[sp.Parent] = true
		for _, ref := range []string{tmpl, "inline:" + tmpl} {
			if until, _, backing := s.outcomes.BackOff(backOffKey(ref, sp.Parent)); backing && until.UTC().Format(time.RFC3339) > o.BackedOff {
				o.BackedOff = until.UTC().Format(time.RFC3339)
			}
		}
	}
	return o
}
