package controlplane

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/trust"
)

// Quotas: limits and requests.
//
// A Cal's quota, signed in its blessing, is a set of limits: the driver's
// cgroups cap the Cal there, and each limit is at most the parent's
// (attenuation, checked again when the chain is verified). Admission does
// not add limits up. It adds up requests, as Kubernetes schedules pods by
// their requests and lets their limits overcommit a node: a Cal's request
// of each resource is its limit divided by the resource's overcommit
// factor, and the requests of every subtree must fit in the limit of its
// root. So the Master's limits (the host's cores and memory) hold the
// requests of the whole network, every Cal's limits hold those of its
// descendants, and a tenant's Cal bounds its tenant's subtree.
//
// One row per resource: a new dimension (disk, say) is a field in
// trust.Quota and api.SpawnRequest and one row here.

// quotaDim is one resource a quota bounds.
type quotaDim struct {
	// field names the resource in the API and in errors.
	field string
	// tmplField is the template's field for it.
	tmplField string
	of        func(*trust.Quota) *int64
	// apiOf and reqOf reach the same resource in a Cal record's quota and
	// in a spawn request.
	apiOf     func(*api.Quota) *int64
	reqOf     func(*api.SpawnRequest) *int64
	driverMin func(driver.Limits) int64
	format    func(int64) string
	// floor is the least a Cal can start in; floorWhy says why.
	floor    int64
	floorWhy string
	max      int64
	// def is the limit of a Cal whose request and template name none
	// (capped at the parent's).
	def int64
	// overcommit: the subtree of a Cal may request at most its limit; a
	// Cal's request is its limit / overcommit. 0: not summed at all (the
	// resource is bounded together elsewhere).
	overcommit int64
}

var quotaDims = []quotaDim{
	{
		field: "cpu_millis", tmplField: "resources.cpu",
		of:        func(q *trust.Quota) *int64 { return &q.CPUMillis },
		apiOf:     func(q *api.Quota) *int64 { return &q.CPUMillis },
		reqOf:     func(r *api.SpawnRequest) *int64 { return &r.CPUMillis },
		driverMin: func(l driver.Limits) int64 { return l.CPUMillis },
		format:    func(v int64) string { return strconv.FormatInt(v, 10) + "m" },
		// CFS bandwidth control refuses a quota under 1 ms per 100 ms period.
		floor: 10, floorWhy: "the kernel's CFS bandwidth control takes at least 1 ms of CPU per 100 ms period",
		// CPU is compressible: a Cal over its share is slowed, never
		// killed; 1,000 idle Cals use under 1% of one core together.
		max: trust.MaxCPUMillis, def: 250, overcommit: 200,
	},
	{
		field: "memory_bytes", tmplField: "resources.memory",
		of:        func(q *trust.Quota) *int64 { return &q.MemoryBytes },
		apiOf:     func(q *api.Quota) *int64 { return &q.MemoryBytes },
		reqOf:     func(r *api.SpawnRequest) *int64 { return &r.MemoryBytes },
		driverMin: func(l driver.Limits) int64 { return l.MemoryBytes },
		format:    fmtBytes,
		// Measured: a Cal is killed for lack of memory at 4 MiB and starts
		// at 6 MiB; 16 MiB leaves room for its runtime to work.
		floor: 16 << 20, floorWhy: "a Cal's runtime needs it to start and work (it is killed at 4 MiB)",
		// An idle Cal uses about 4.5 MB (PSS) of its 64 MiB limit; what
		// guards the host is the check of its free memory at admission.
		// 100: a default Cal holds 100 default children (its child slots).
		max: trust.MaxMemoryBytes, def: 64 << 20, overcommit: 100,
	},
	{
		field: "pids", tmplField: "resources.pids",
		of:        func(q *trust.Quota) *int64 { return &q.PIDs },
		apiOf:     func(q *api.Quota) *int64 { return &q.PIDs },
		reqOf:     func(r *api.SpawnRequest) *int64 { return &r.PIDs },
		driverMin: func(l driver.Limits) int64 { return l.PIDs },
		format:    func(v int64) string { return strconv.FormatInt(v, 10) },
		// Measured: the Go runtime of a Cal fails to start with 4 and
		// starts with 8.
		floor: 16, floorWhy: "a Cal's Go runtime needs its threads (it fails to start with 4)",
		// A PIDs limit stops a fork bomb inside one Cal; the host's own
		// bound is kernel.pid_max.
		max: trust.MaxPIDs, def: 256, overcommit: 100,
	},
	{
		field: "disk_bytes", tmplField: "resources.disk",
		of:        func(q *trust.Quota) *int64 { return &q.DiskBytes },
		apiOf:     func(q *api.Quota) *int64 { return &q.DiskBytes },
		reqOf:     func(r *api.SpawnRequest) *int64 { return &r.DiskBytes },
		driverMin: func(l driver.Limits) int64 { return l.DiskBytes },
		format:    fmtBytes,
		// What a new Cal stores to start (keys, chain, vault): the space
		// the control plane makes sure the Cal filesystem has for it.
		floor: startDisk, floorWhy: "a new Cal stores its keys, chain and vault in it",
		// The default holds a Cal's own files with room for a small
		// workload. Not summed (overcommit 0): a limit, like a sparse
		// file's size; the Cal filesystem's size bounds them together.
		max: trust.MaxDiskBytes, def: 64 << 20, overcommit: 0,
	},
}

func fmtBytes(v int64) string {
	switch {
	case v >= 1<<30 && v%(1<<30) == 0:
		return strconv.FormatInt(v>>30, 10) + "Gi"
	case v >= 1<<20 && v%(1<<20) == 0:
		return strconv.FormatInt(v>>20, 10) + "Mi"
	}
	return strconv.FormatInt(v, 10)
}

// requestQuota is the quota a spawn request names (0: not named).
func requestQuota(p *SpawnParams) trust.Quota {
	var q trust.Quota
	for _, d := range quotaDims {
		*d.of(&q) = *d.reqOf(p)
	}
	return q
}

// setRequestQuota writes q into the request.
func setRequestQuota(p *SpawnParams, q trust.Quota) {
	for _, d := range quotaDims {
		*d.reqOf(p) = *d.of(&q)
	}
}

// recordQuota is the quota on a Cal's registry record.
func recordQuota(r *CalRecord) trust.Quota {
	var q trust.Quota
	for _, d := range quotaDims {
		*d.of(&q) = *d.apiOf(&r.Quota)
	}
	return q
}

// quotaSource says where each limit of a request came from: "" (the
// request), a template field, or the defaults.
type quotaSource map[string]string

func (src quotaSource) label(field string) string {
	if s := src[field]; s != "" {
		return " (" + s + ")"
	}
	return ""
}

// fillQuota completes q: what neither the request nor the template named
// gets the default limit, capped at the parent's limit. It returns where
// each limit came from. named is the quota the request itself named.
func fillQuota(q *trust.Quota, named trust.Quota, tmpl string, parent *trust.Quota) quotaSource {
	src := quotaSource{}
	for _, d := range quotaDims {
		switch v := d.of(q); {
		case *d.of(&named) != 0:
		case *v != 0:
			src[d.field] = "template " + tmpl + " " + d.tmplField
		default:
			*v = d.def
			src[d.field] = "the default"
			if parent != nil && *d.of(parent) > 0 && *d.of(parent) < *v {
				*v = *d.of(parent)
				src[d.field] = "the default, capped at the parent's limit"
			}
		}
	}
	return src
}

// checkQuotaBounds refuses a limit the driver cannot apply or a Cal cannot
// start in, naming the field, the limit and where the value came from.
func checkQuotaBounds(q trust.Quota, src quotaSource, driverMin driver.Limits) *APIError {
	for _, d := range quotaDims {
		v := *d.of(&q)
		floor, why := d.floor, d.floorWhy
		if m := d.driverMin(driverMin); m > floor {
			floor, why = m, "the driver cannot apply less"
		}
		switch {
		case v < floor:
			return apiErr(400, "%s: %s%s is below the minimum of %s: %s", d.field, d.format(v), src.label(d.field), d.format(floor), why)
		case v > d.max:
			return apiErr(400, "%s: %s%s is above the maximum of %s", d.field, d.format(v), src.label(d.field), d.format(d.max))
		}
	}
	return nil
}

// withinParent refuses a limit above the parent's: a child's limits only
// shrink down a chain.
func withinParent(q, parent trust.Quota, parentID string, src quotaSource) *APIError {
	for _, d := range quotaDims {
		if v, pv := *d.of(&q), *d.of(&parent); v > pv {
			return apiErr(403, "quota %s: %s%s is over the limit of the parent cal %s (%s): a child's limits are at most its parent's", d.field, d.format(v), src.label(d.field), parentID, d.format(pv))
		}
	}
	return nil
}

// fitsSubtree refuses q if the requests under anc with q added would
// exceed anc's limit: sum(limits)/overcommit <= limit, computed as
// sum(limits) <= limit*overcommit to stay exact. used is the sum of the
// limits of anc's descendants (live Cals and admitted spawns).
func fitsSubtree(q trust.Quota, src quotaSource, anc string, ancLimit, used, overcommit trust.Quota) *APIError {
	for _, d := range quotaDims {
		v, lim, u, f := *d.of(&q), *d.of(&ancLimit), *d.of(&used), *d.of(&overcommit)
		if f > 0 && u+v > lim*f {
			return apiErr(403, "quota %s: the limits under cal %s add up to %s; this Cal's %s%s would pass %s, %dx its limit of %s (a Cal requests 1/%d of its limit, and the requests of a subtree fit in its root's limit)",
				d.field, anc, d.format(u), d.format(v), src.label(d.field), d.format(lim*f), f, d.format(lim), f)
		}
	}
	return nil
}

// overcommit is the network's overcommit factor of each resource: the
// table's unless the operator set one (calnet up --overcommit).
func (s *Server) overcommit() trust.Quota {
	s.limMu.Lock()
	q := s.cfg.Limits.Overcommit
	s.limMu.Unlock()
	for _, d := range quotaDims {
		if *d.of(&q) <= 0 {
			*d.of(&q) = d.overcommit
		}
	}
	return q
}

// ParseOvercommit reads overcommit factors: one number for every
// resource ("1": no overcommit) or field=N pairs ("cpu_millis=200,pids=50");
// a resource left out keeps its default.
func ParseOvercommit(s string) (trust.Quota, error) {
	var q trust.Quota
	if s == "" {
		return q, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 1 || n > maxOvercommit {
			return q, fmt.Errorf("overcommit: %d is outside 1..%d", n, maxOvercommit)
		}
		for _, d := range quotaDims {
			if d.overcommit > 0 { // resources not summed stay so
				*d.of(&q) = n
			}
		}
		return q, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(quotaDims, func(d quotaDim) bool { return d.field == k })
		if i < 0 {
			return q, fmt.Errorf("overcommit: unknown resource %q (known: %s)", k, strings.Join(quotaFields(), ", "))
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > maxOvercommit {
			return q, fmt.Errorf("overcommit: %s=%q: want a whole number in 1..%d", k, v, maxOvercommit)
		}
		*quotaDims[i].of(&q) = n
	}
	return q, nil
}

// maxOvercommit bounds a factor so that limit*factor cannot overflow.
const maxOvercommit = 1 << 12

func quotaFields() []string {
	var out []string
	for _, d := range quotaDims {
		out = append(out, d.field)
	}
	return out
}

// addQuota adds b to a, saturating (limits are bounded, sums of many are
// not).
func addQuota(a *trust.Quota, b trust.Quota) {
	for _, d := range quotaDims {
		x, y := d.of(a), *d.of(&b)
		if y > 0 && *x > math.MaxInt64-y {
			*x = math.MaxInt64
		} else {
			*x += y
		}
	}
}

// limitFloors is implemented by drivers that cannot apply limits below a
// floor (cgroups: CFS bandwidth control takes at least 1 ms per period).
type limitFloors interface {
	// MinLimits is the least of each limit the driver can apply (0: no floor).
	MinLimits() driver.Limits
}

// driverMin is the driver's floor of each limit.
func (s *Server) driverMin() driver.Limits {
	if f, ok := s.cfg.Driver.(limitFloors); ok {
		return f.MinLimits()
	}
	return driver.Limits{}
}

// DefaultOvercommit names the default overcommit factors, as
// ParseOvercommit reads them.
func DefaultOvercommit() string {
	var parts []string
	for _, d := range quotaDims {
		if d.overcommit > 0 {
			parts = append(parts, d.field+"="+strconv.FormatInt(d.overcommit, 10))
		}
	}
	return strings.Join(parts, ",")
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
