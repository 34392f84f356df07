package controlplane

import (
	"net/http"
	"strings"
	"sync"
)

// healthKeep bounds the health history kept per Cal in memory; the full,
// durable record is the audit trail.
const healthKeep = 100

// healthHistory keeps each Cal's recent state and health transitions.
type healthHistory struct {
	mu sync.Mutex
	m  map[string][]Event
}

func isHealthEvent(t string) bool {
	return strings.HasPrefix(t, "cal.") || t == "child.failed"
}

func (h *healthHistory) record(e Event) {
	if e.Cal == "" || !isHealthEvent(e.Type) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string][]Event{}
	}
	l := append(h.m[e.Cal], e)
	if len(l) > healthKeep {
		l = l[len(l)-healthKeep:]
	}
	h.m[e.Cal] = l
}

func (h *healthHistory) of(id string) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event{}, h.m[id]...)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, 200, map[string]any{"cal": rec.ID, "state": rec.State, "healthy": rec.Healthy, "degraded": rec.Degraded, "history": s.health.of(rec.ID)})
}
