package calrt

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// calMetrics is the Cal's own Prometheus registry (GET /metrics on its
// API, which the control plane relays): the Go runtime of the Cal's
// process and the state of each tier's components, every series labelled
// with the Cal's ID. It is built on the first scrape, so an idle Cal
// that is never scraped pays nothing for it.
type calMetrics struct {
	once sync.Once
	h    http.Handler
}

var descComponent = prometheus.NewDesc("calnet_cal_component_ready",
	"1 when the tier's component is ready, 0 otherwise (pending, starting, failed, stopped).",
	[]string{"tier", "component", "kind", "state"}, nil)

// tierCollector reports the tiers' components at scrape time.
type tierCollector struct{ rt *Runtime }

func (c tierCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descComponent }

func (c tierCollector) Collect(ch chan<- prometheus.Metric) {
	if c.rt.tiers == nil {
		return
	}
	tiers, _ := c.rt.tiers.snapshot()
	for _, t := range tiers {
		for _, comp := range t.Components {
			v := 0.0
			if comp.State == compReady {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descComponent, prometheus.GaugeValue, v, strconv.Itoa(t.Tier), comp.Name, comp.Kind, comp.State)
		}
	}
}

func (rt *Runtime) metrics(w http.ResponseWriter, r *http.Request) {
	rt.prom.once.Do(func() {
		reg := prometheus.NewRegistry()
		wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"cal": rt.ID().String()}, reg)
		wrapped.MustRegister(collectors.NewGoCollector(), tierCollector{rt})
		rt.prom.h = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 1})
	})
	rt.prom.h.ServeHTTP(w, r)
}
