package controlplane

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/soulfra/calnet/internal/metrics"
)

// CollectEvery is how often the control plane samples every Cal's cgroups
// and the host.
const CollectEvery = 5 * time.Second

// hostSubject names the host's series.
const hostSubject = "host"

type cpuSample struct {
	nanos uint64
	at    time.Time
}

// collect samples CPU and memory of every running Cal from its cgroups,
// and the host's free memory and CPU, into the metric series.
func (s *Server) collect() {
	t := time.NewTicker(CollectEvery)
	defer t.Stop()
	last := map[string]cpuSample{}
	var hostIdle, hostTotal uint64
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.expireApprovals(s.ctx)
		now := s.now()
		s.procMu.Lock()
		type target struct {
			id   string
			proc *proc
		}
		var ts []target
		for id, p := range s.procs {
			if p.inst != nil && !p.stopping {
				ts = append(ts, target{id, p})
			}
		}
		s.procMu.Unlock()
		seen := map[string]bool{}
		for _, tg := range ts {
			u, err := tg.proc.inst.Usage()
			if err != nil {
				continue
			}
			seen[tg.id] = true
			s.metrics.Add(tg.id, "memory_bytes", now, float64(u.MemoryBytes))
			if prev, ok := last[tg.id]; ok && u.CPUNanos >= prev.nanos {
				pct := float64(u.CPUNanos-prev.nanos) / float64(now.Sub(prev.at).Nanoseconds()) * 100
				s.metrics.Add(tg.id, "cpu_percent", now, pct)
			}
			last[tg.id] = cpuSample{u.CPUNanos, now}
		}
		for id := range last {
			if !seen[id] {
				delete(last, id)
			}
		}
		if avail := availableMemory(); avail >= 0 {
			s.metrics.Add(hostSubject, "free_memory_bytes", now, float64(avail))
		}
		if idle, total, ok := cpuTimes(); ok {
			if hostTotal > 0 && total > hostTotal {
				s.metrics.Add(hostSubject, "free_cpu_percent", now, float64(idle-hostIdle)/float64(total-hostTotal)*100)
			}
			hostIdle, hostTotal = idle, total
		}
		s.evalRules(s.ctx, now)
	}
}

// cpuTimes reads the host's idle and total CPU time from /proc/stat.
func cpuTimes() (idle, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return idle, total, true
}

// handleSeries returns one Cal's (or, for id "host", the host's) metric
// series since ?since= (RFC 3339; default the last 15 minutes).
func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request, pr principal) {
	subject := r.PathValue("id")
	if subject != hostSubject {
		rec, aerr := s.resolveScoped(r.Context(), pr, subject)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		subject = rec.ID
	}
	since := s.now().Add(-15 * time.Minute)
	if q := r.URL.Query().Get("since"); q != "" {
		t, err := time.Parse(time.RFC3339, q)
		if err != nil {
			writeError(w, apiErr(400, "since: %q is not an RFC 3339 time", q))
			return
		}
		since = t
	}
	out := map[string][]metrics.Point{}
	for _, m := range s.metrics.Metrics(subject) {
		out[m] = s.metrics.Get(subject, m).Since(since)
	}
	writeJSON(w, 200, map[string]any{"subject": subject, "series": out})
}

// handleHeat returns the latest value of one metric for every running Cal
// the principal may see, plus their recent series, for the heat map.
func (s *Server) handleHeat(w http.ResponseWriter, r *http.Request, pr principal) {
	metric := r.URL.Query().Get("metric")
	if metric == "" {
		metric = "cpu_percent"
	}
	if len(metric) > 64 {
		writeError(w, apiErr(400, "metric: over the limit of 64 characters"))
		return
	}
	recs, _ := s.listCals(r.Context())
	since := s.now().Add(-10 * time.Minute)
	type row struct {
		Cal    string          `json:"cal"`
		Name   string          `json:"name,omitempty"`
		Points []metrics.Point `json:"points"`
	}
	out := []row{}
	for _, c := range recs {
		if c.State != StateRunning || !s.inScope(r.Context(), pr, c.ID) {
			continue
		}
		ser := s.metrics.Get(c.ID, metric)
		pts := []metrics.Point{}
		if ser != nil {
			pts = ser.Since(since)
		}
		out = append(out, row{Cal: c.ID, Name: c.Name, Points: pts})
	}
	writeJSON(w, 200, map[string]any{"metric": metric, "cals": out})
}
