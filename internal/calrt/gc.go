package calrt

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// liveHeapChecks counts watchLiveHeap's checks (for tests).
var liveHeapChecks atomic.Int64

// Bounds of the memory limit under which an idle Cal's runtime collects
// garbage (see collectOnDemand).
const (
	minGCLimit = 16 << 20
	maxGCLimit = 64 << 20
)

// gcLimit is the memory limit for a Cal whose blessing allows quota bytes
// of memory (0: no quota): a quarter of it, within [minGCLimit,
// maxGCLimit].
func gcLimit(quota int64) int64 {
	if quota <= 0 {
		return maxGCLimit
	}
	return min(max(quota/4, minGCLimit), maxGCLimit)
}

// collectOnDemand turns off the collections an idle Cal does not need. Go
// forces a collection every two minutes even when nothing was allocated;
// in 1,000 idle Cals those were over half of their CPU (BENCHMARKS.md,
// "Idle Cals"). With the percentage trigger off and a memory limit set,
// the runtime collects when the memory it holds nears the limit, and
// never on a timer. A Cal whose live heap grows past half the limit goes
// back to the usual trigger (GOGC=100) for good, so it cannot end up
// collecting without pause against a limit it has outgrown; the check
// runs after each collection, from a finalizer, not on a timer either.
func collectOnDemand(quota int64) {
	limit := gcLimit(quota)
	debug.SetMemoryLimit(limit)
	debug.SetGCPercent(-1)
	watchLiveHeap(limit / 2)
}

// watchLiveHeap checks after every collection whether the live heap
// passed bound, and if so restores the percentage trigger.
func watchLiveHeap(bound int64) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var arm func()
	arm = func() {
		sentinel := new([32]byte) // too big for the tiny allocator: its own finalizer
		runtime.SetFinalizer(sentinel, func(*[32]byte) {
			liveHeapChecks.Add(1)
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 && int64(sample[0].Value.Uint64()) > bound {
				debug.SetGCPercent(100)
				debug.SetMemoryLimit(1<<63 - 1)
				return
			}
			arm()
		})
	}
	arm()
}
