package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/soulfra/calnet/client"
)

// scrape reads the control plane's /metrics with tok ("" for none).
func scrape(t *testing.T, n *network, tok string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.addr+"/metrics", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := validatingClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return 200, fams
}

// sample returns the value of family's sample whose labels include want.
func sample(fams map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	f := fams[family]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestPrometheusHealthzAndLearnedState: /healthz answers without a
// credential; /metrics needs an administrator and carries the control
// plane's and every Cal's metrics with help text and labels; what the
// control plane learned (metric history, traffic, health history) is still
// there after a restart.
func TestPrometheusHealthzAndLearnedState(t *testing.T) {
	needRoot(t)
	data := t.TempDir() + "/data"
	n := up(t, data)
	ctx := context.Background()
	resp, err := validatingClient(t).Get("http://" + n.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Fatalf("/healthz: %d %s", resp.StatusCode, body)
	}
	if code, _ := scrape(t, n, ""); code != 401 {
		t.Fatalf("/metrics without a credential: %d, want 401", code)
	}
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "worker", Permissions: []string{"read"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if tok, _, err := n.c.CreateToken(ctx, "dev", sp.Cal, []string{"read"}); err != nil {
		t.Fatal(err)
	} else if code, _ := scrape(t, n, tok); code != 403 {
		t.Fatalf("/metrics with a developer token: %d, want 403", code)
	}
	var fams map[string]*dto.MetricFamily
	waitFor(t, "the worker's cgroup usage in /metrics", 30*time.Second, func() bool {
		_, fams = scrape(t, n, readToken(t, data))
		v, ok := sample(fams, "calnet_cal_memory_bytes", map[string]string{"cal": sp.Cal, "name": "worker"})
		return ok && v > 0
	})
	for _, c := range []struct {
		family string
		labels map[string]string
		min    float64
	}{
		{"calnet_spawn_duration_seconds", nil, 1},
		{"calnet_spawn_outcomes_total", map[string]string{"outcome": "running"}, 1},
		{"calnet_cals", map[string]string{"state": "running"}, 2},
		{"calnet_ledger_entries", nil, 3},
		{"calnet_ledger_append_duration_seconds", map[string]string{"type": "blessing"}, 1},
		{"calnet_cal_up", map[string]string{"cal": sp.Cal}, 1},
		{"calnet_cal_memory_limit_bytes", map[string]string{"name": "worker"}, 1},
		{"calnet_cal_cpu_seconds_total", map[string]string{"name": "worker"}, 0},
	} {
		v, ok := sample(fams, c.family, c.labels)
		if !ok || v < c.min {
			t.Errorf("%s%v = %v (present %v), want >= %v", c.family, c.labels, v, ok, c.min)
		}
	}
	for name, f := range fams {
		if strings.HasPrefix(name, "calnet_") && f.GetHelp() == "" {
			t.Errorf("%s has no HELP text", name)
		}
	}
	if _, err := n.c.Revoke(ctx, sp.Cal, "metrics test"); err != nil {
		t.Fatal(err)
	}
	_, fams = scrape(t, n, readToken(t, data))
	if v, _ := sample(fams, "calnet_revocations_total", nil); v != 1 {
		t.Errorf("calnet_revocations_total = %v after one revocation, want 1", v)
	}

	// What the control plane learned survives a restart.
	master := n.master()
	waitFor(t, "two CPU samples of the Master Cal", 30*time.Second, func() bool {
		s, err := n.c.Series(ctx, master, time.Time{})
		return err == nil && len(s["cpu_percent"]) >= 1 && len(s["memory_bytes"]) >= 2
	})
	before, _ := n.c.Series(ctx, master, time.Time{})
	traffic, _ := n.c.Traffic(ctx)
	health, _ := n.c.Health(ctx, sp.Cal)
	if len(traffic.Pairs) == 0 || len(health.History) == 0 {
		t.Fatalf("nothing learned before the restart: %d traffic pairs, %d health events", len(traffic.Pairs), len(health.History))
	}
	restartedAt := time.Now()
	n.stop(syscall.SIGTERM)
	n.start()
	after, err := n.c.Series(ctx, master, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after["memory_bytes"]) < len(before["memory_bytes"]) || !after["memory_bytes"][0].T.Before(restartedAt) {
		t.Fatalf("metric history lost in the restart: %d memory samples before, %d after", len(before["memory_bytes"]), len(after["memory_bytes"]))
	}
	traffic2, _ := n.c.Traffic(ctx)
	if len(traffic2.Pairs) < len(traffic.Pairs) {
		t.Fatalf("traffic matrix lost in the restart: %d pairs before, %d after", len(traffic.Pairs), len(traffic2.Pairs))
	}
	health2, _ := n.c.Health(ctx, sp.Cal)
	if len(health2.History) < len(health.History) {
		t.Fatalf("health history lost in the restart: %d events before, %d after", len(health.History), len(health2.History))
	}
}
