package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/ledger"
)

// promMetrics are the control plane's Prometheus metrics (GET /metrics):
// what it does (spawns, admissions, ledger appends, revocations) as
// counters and histograms updated where it happens, and what it holds
// (Cals by state, each Cal's resources, the ledger's size) read at scrape
// time by promCollector.
type promMetrics struct {
	reg          *prometheus.Registry
	spawnLatency prometheus.Histogram
	spawns       *prometheus.CounterVec
	ledgerAppend *prometheus.HistogramVec
	revocations  prometheus.Counter
	restarts     prometheus.Counter
}

// latencyBuckets span a 5 ms spawn to a 60 s deploy timeout.
var latencyBuckets = []float64{.005, .01, .025, .05, .075, .1, .15, .2, .3, .5, 1, 2.5, 5, 10, 30, 60}

func newPromMetrics(s *Server) *promMetrics {
	m := &promMetrics{
		reg: prometheus.NewRegistry(),
		spawnLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "calnet_spawn_duration_seconds", Buckets: latencyBuckets,
			Help: "Time from a spawn request to its Cal being operational (tiers ready, registered).",
		}),
		spawns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calnet_spawn_outcomes_total",
			Help: "Spawn requests by how they ended: running, rejected (admission refused them), failed (deploy), awaiting_approval (held by a policy).",
		}, []string{"outcome"}),
		ledgerAppend: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "calnet_ledger_append_duration_seconds", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
			Help: "Time to append one entry to the ledger until it is durable (group commit included), by entry type.",
		}, []string{"type"}),
		revocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "calnet_revocations_total", Help: "Revocations recorded in the ledger by this control plane.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "calnet_cal_restarts_total", Help: "Cal processes restarted by the supervisor after they exited.",
		}),
	}
	m.reg.MustRegister(m.spawnLatency, m.spawns, m.ledgerAppend, m.revocations, m.restarts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&promCollector{s: s})
	return m
}

// observeSpawn counts a spawn that reached state, and its latency when it
// became operational.
func (m *promMetrics) observeSpawn(state string, requested, operational time.Time) {
	m.spawns.WithLabelValues(state).Inc()
	if state == SpawnRunning && !requested.IsZero() && !operational.IsZero() {
		m.spawnLatency.Observe(operational.Sub(requested).Seconds())
	}
}

// ledgerAppend appends entries to the ledger (one commit) and times it.
func (s *Server) ledgerAppend(ctx context.Context, entries ...ledger.Entry) ([]uint64, error) {
	if err := s.checkDisk(ctx); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	start := time.Now()
	idx, err := s.lg.Append(ctx, entries...)
	if err == nil {
		d := time.Since(start).Seconds()
		for _, e := range entries {
			s.prom.ledgerAppend.WithLabelValues(string(e.Type)).Observe(d)
			if e.Type == ledger.TypeRevocation {
				s.prom.revocations.Inc()
			}
		}
	}
	return idx, err
}

// commitTrust records one trust event: under trustMu, check runs against
// the trust state as it is, the entry takes its place in the ledger and
// apply changes the state, so the state changes in the ledger's order;
// then, without the lock, it waits until the entry is durable (in a commit
// it shares with every other event in flight). TLS handshakes and
// admission, which read the trust state, never wait on the disk.
//
// staged reports whether the entry took its place (and apply ran); err is
// check's error, or the ledger's (the entry may then never be durable).
func (s *Server) commitTrust(ctx context.Context, e ledger.Entry, check func() error, apply func()) (staged bool, err error) {
	if err := s.checkDisk(ctx); err != nil { // the data directory's reserve
		return false, fmt.Errorf("ledger: %w", err)
	}
	s.trustMu.Lock()
	if err := check(); err != nil {
		s.trustMu.Unlock()
		return false, err
	}
	wait, err := s.ledgerStage(e)
	if err != nil {
		s.trustMu.Unlock()
		return false, fmt.Errorf("ledger: %w", err)
	}
	apply()
	s.trustMu.Unlock()
	if err := wait(ctx); err != nil {
		return true, fmt.Errorf("ledger: %w", err)
	}
	return true, nil
}

// ledgerStage gives entries their place in the ledger without waiting for
// the disk: call it under trustMu, so that the trust state changes in the
// ledger's order. wait, called without the lock, returns once they are
// durable (sharing a commit with every other append in flight) and times
// the append.
func (s *Server) ledgerStage(entries ...ledger.Entry) (wait func(context.Context) error, err error) {
	start := time.Now()
	st, err := s.lg.Stage(entries...)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := st.Wait(ctx); err != nil {
			return err
		}
		d := time.Since(start).Seconds()
		for _, e := range entries {
			s.prom.ledgerAppend.WithLabelValues(string(e.Type)).Observe(d)
			if e.Type == ledger.TypeRevocation {
				s.prom.revocations.Inc()
			}
		}
		return nil
	}, nil
}

// handlePrometheus serves the metrics in the Prometheus text format.
func (s *Server) handlePrometheus() http.Handler {
	return promhttp.HandlerFor(s.prom.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 2})
}

// promCollector reads what the control plane holds at scrape time.
type promCollector struct{ s *Server }

var (
	descCals          = prometheus.NewDesc("calnet_cals", "Cals in the registry by state.", []string{"state"}, nil)
	descLedgerEntries = prometheus.NewDesc("calnet_ledger_entries", "Entries in the ledger (its tree size).", nil, nil)
	descPaused        = prometheus.NewDesc("calnet_spawning_paused", "1 while the kill switch holds every spawn.", nil, nil)
	calLabels         = []string{"cal", "name", "parent"}
	descCalUp         = prometheus.NewDesc("calnet_cal_up", "1 when the Cal is running and healthy, 0 otherwise (live Cals only).", calLabels, nil)
	descCalCPU        = prometheus.NewDesc("calnet_cal_cpu_seconds_total", "CPU time the Cal's processes used, from its cgroup.", calLabels, nil)
	descCalMem        = prometheus.NewDesc("calnet_cal_memory_bytes", "Memory the Cal's processes use now, from its cgroup.", calLabels, nil)
	descCalMemLimit   = prometheus.NewDesc("calnet_cal_memory_limit_bytes", "The Cal's memory quota (its blessing's).", calLabels, nil)
	descCalCPULimit   = prometheus.NewDesc("calnet_cal_cpu_limit_cores", "The Cal's CPU quota in cores (its blessing's).", calLabels, nil)
	descCalRestarts   = prometheus.NewDesc("calnet_cal_restarts", "Times the supervisor restarted this Cal.", calLabels, nil)
	descCalGauge      = prometheus.NewDesc("calnet_cal_workload_gauge", "The latest value of a gauge the Cal's workload reported (POST /v1/metrics on its local API).", append(calLabels[:3:3], "gauge"), nil)
)

func (c *promCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCals, descLedgerEntries, descPaused, descCalUp, descCalCPU, descCalMem, descCalMemLimit, descCalCPULimit, descCalRestarts, descCalGauge} {
		ch <- d
	}
}

func (c *promCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ch <- prometheus.MustNewConstMetric(descLedgerEntries, prometheus.GaugeValue, float64(s.lg.Size()))
	paused := 0.0
	if s.paused.Load() {
		paused = 1
	}
	ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, paused)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := s.listCals(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descCals, err)
		return
	}
	byState := map[string]int{StateDeploying: 0, StateRunning: 0, StateFailed: 0, StateStopped: 0, StateRevoked: 0}
	for _, r := range recs {
		byState[r.State]++
		if !isLive(r.State) {
			continue
		}
		lv := []string{r.ID, r.Name, r.Parent}
		up := 0.0
		if r.State == StateRunning && r.Healthy {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descCalUp, prometheus.GaugeValue, up, lv...)
		ch <- prometheus.MustNewConstMetric(descCalMemLimit, prometheus.GaugeValue, float64(r.Quota.MemoryBytes), lv...)
		ch <- prometheus.MustNewConstMetric(descCalCPULimit, prometheus.GaugeValue, float64(r.Quota.CPUMillis)/1000, lv...)
		ch <- prometheus.MustNewConstMetric(descCalRestarts, prometheus.GaugeValue, float64(r.Restarts), lv...)
		for _, g := range s.metrics.Metrics(r.ID) {
			name, ok := strings.CutPrefix(g, gaugePrefix)
			if !ok {
				continue
			}
			if p, ok := s.metrics.Get(r.ID, g).Last(); ok {
				ch <- prometheus.MustNewConstMetric(descCalGauge, prometheus.GaugeValue, p.V, append(lv, name)...)
			}
		}
		s.procMu.Lock()
		var inst driver.Instance
		if p := s.procs[r.ID]; p != nil && !p.stopping {
			inst = p.inst
		}
		s.procMu.Unlock()
		if inst == nil {
			continue
		}
		if u, err := inst.Usage(); err == nil {
			ch <- prometheus.MustNewConstMetric(descCalCPU, prometheus.CounterValue, float64(u.CPUNanos)/1e9, lv...)
			ch <- prometheus.MustNewConstMetric(descCalMem, prometheus.GaugeValue, float64(u.MemoryBytes), lv...)
		}
	}
	for st, n := range byState {
		ch <- prometheus.MustNewConstMetric(descCals, prometheus.GaugeValue, float64(n), st)
	}
}

// handleHealthz answers without a credential whether the control plane
// can serve: its state store answers a read and its ledger is open. It
// says nothing about Cals (a failed Cal is not an unhealthy control plane;
// see /v1/status) and reveals nothing but the checks' names.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"store": "ok", "ledger": "ok"}
	status := http.StatusOK
	if err := s.store.View(ctx, func(store.Tx) error { return nil }); err != nil {
		checks["store"], status = "unavailable", http.StatusServiceUnavailable
	}
	if s.lg.Size() == 0 {
		checks["ledger"], status = "unavailable", http.StatusServiceUnavailable
	}
	res := map[string]any{"status": "ok", "checks": checks}
	if status != http.StatusOK {
		res["status"] = "unavailable"
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, res)
}

// gaugePrefix marks a metric series reported by a Cal's workload.
const gaugePrefix = "gauge:"
