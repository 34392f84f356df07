package controlplane

import (
	"net/http"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/advisor"
)

// Recommendations is GET /v1/cals/{id}/recommendations.
type Recommendations = api.Recommendations

// handleRecommendations recommends a Cal's CPU and memory quotas from its
// observed usage over the last hour (p95 plus headroom) and flags over-
// and under-provisioning.
func (s *Server) handleRecommendations(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	since := s.now().Add(-time.Hour)
	values := func(metric string) []float64 {
		sr := s.metrics.Get(rec.ID, metric)
		if sr == nil {
			return nil
		}
		var vs []float64
		for _, p := range sr.Since(since) {
			vs = append(vs, p.V)
		}
		return vs
	}
	out := Recommendations{Cal: rec.ID, Window: "1h", Resources: []advisor.Recommendation{
		advisor.Recommend("cpu_millis", values("cpu_percent"), rec.Quota.CPUMillis),
		advisor.Recommend("memory_bytes", values("memory_bytes"), rec.Quota.MemoryBytes),
	}}
	end := s.now()
	if !isLive(rec.State) {
		end = rec.UpdatedAt
	}
	out.Permissions = recommendPermissions(rec.Permissions, s.usesOf(rec), 1, max(0, end.Sub(rec.CreatedAt)), s.cfg.ObserveWindow)
	writeJSON(w, 200, out)
}
