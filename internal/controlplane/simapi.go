package controlplane

import (
	"net/http"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/sim"
)

// POST /v1/sim previews a rule set in the simulator (package sim) under
// the network's admission policies, as calnet sim does, with bounds that
// keep it cheap for the control plane: at most 50 pools for at most a day
// (under a second of one core), one simulation at a time.

const (
	maxSimPools    = 50
	maxSimDuration = 24 * time.Hour
)

func (s *Server) handleSim(w http.ResponseWriter, r *http.Request, _ principal) {
	var req api.SimRequest
	if !readJSON(w, r, &req) {
		return
	}
	cfg := sim.DefaultConfig()
	cfg.Pools, cfg.Duration, cfg.Hosts, cfg.PeakChildren = 10, maxSimDuration, 6, 60
	if req.Pools != 0 {
		if req.Pools < 1 || req.Pools > maxSimPools {
			writeError(w, apiErr(400, "pools: %d: want 1 to %d", req.Pools, maxSimPools))
			return
		}
		cfg.Pools = req.Pools
	}
	if req.Duration != "" {
		d, err := time.ParseDuration(req.Duration)
		if err != nil || d < cfg.Tick || d > maxSimDuration {
			writeError(w, apiErr(400, "duration: %q: want %v to %v", req.Duration, cfg.Tick, maxSimDuration))
			return
		}
		cfg.Duration = d
	}
	if len(req.Workloads) > 0 {
		for _, wl := range req.Workloads {
			if _, err := sim.ParseShapes(wl); err != nil {
				writeError(w, apiErr(400, "workloads: %v", err))
				return
			}
		}
		cfg.Workloads = req.Workloads
	}
	if req.Seed != 0 {
		cfg.Seed = req.Seed
	}
	if len(req.Rules) == 0 {
		writeError(w, apiErr(400, "rules: at least one rule to simulate"))
		return
	}
	if len(req.Rules) > maxRules {
		writeError(w, apiErr(400, "rules: %d, over the limit of %d", len(req.Rules), maxRules))
		return
	}
	cfg.Rules = req.Rules
	if ps := s.policies.Load(); ps != nil {
		for _, p := range *ps {
			cfg.Policies = append(cfg.Policies, p.Policy)
		}
	}
	select {
	case s.simSem <- struct{}{}:
		defer func() { <-s.simSem }()
	default:
		writeError(w, &APIError{Status: 429, Msg: "sim: another simulation is running; retry in a second", RetryAfter: time.Second})
		return
	}
	rep, err := sim.Run(r.Context(), cfg)
	if err != nil {
		writeError(w, apiErr(400, "%v", err)) // a rule or policy that does not compile, with its field
		return
	}
	writeJSON(w, 200, rep)
}
