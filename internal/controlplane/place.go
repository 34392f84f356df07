package controlplane

import (
	"context"
	"os"
	"runtime"

	"github.com/soulfra/calnet/internal/placement"
)

// place decides where a spawn runs and returns the decision's account,
// kept on the spawn record. This control plane drives one host, so there
// is one candidate (labelled with the host's name and its zone, Config.Zone): the
// decision is trivial, but it is made the same way as on many hosts and
// says why. CPU is not reserved (the kernel shares it; saturation is
// refused at admission by the pressure check), so the host's CPU capacity
// counts as free; memory is MemAvailable, and what must fit is what the
// Cal needs to start (its quota is a limit, not a reservation).
func (s *Server) place(ctx context.Context, p SpawnParams, parent *CalRecord) placement.Decision {
	name := hostName()
	cpu := int64(runtime.NumCPU()) * 1000
	mem := hostMemory()
	free := availableMemory()
	if free < 0 {
		free = mem
	}
	c := placement.Candidate{Name: name, Zone: s.cfg.Zone, CPUCapacity: cpu, CPUFree: cpu, MemCapacity: mem, MemFree: free, Healthy: true,
		RecentFailures: s.outcomes.Failures("host:" + name)}
	sib := map[string]int{s.cfg.Zone: len(s.runningChildren(ctx, parent))}
	// A host is chosen for what a Cal requests (its CPU limit over the
	// overcommit factor), as a scheduler places pods by their requests;
	// the Cal itself can use at most one host's cores (a 262-core subtree
	// root was refused on a 2-core host: calnet bench revoke).
	cpuRequest := min(ceilDiv(p.CPUMillis, s.overcommit().CPUMillis), cpu)
	return placement.Place([]placement.Candidate{c}, placement.Request{CPUMillis: cpuRequest, MemoryBytes: min(p.MemoryBytes, startFootprint), ParentHost: name, Siblings: sib}, placement.DefaultWeights)
}

// hostName names this host among placement candidates.
func hostName() string {
	if name, _ := os.Hostname(); name != "" {
		return name
	}
	return "local"
}
