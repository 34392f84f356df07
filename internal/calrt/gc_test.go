package calrt

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCLimit(t *testing.T) {
	for _, tc := range []struct {
		quota, want int64
	}{
		{0, maxGCLimit},
		{-1, maxGCLimit},
		{32 << 20, minGCLimit},
		{128 << 20, 32 << 20},
		{1 << 40, maxGCLimit},
	} {
		if got := gcLimit(tc.quota); got != tc.want {
			t.Errorf("gcLimit(%d) = %d, want %d", tc.quota, got, tc.want)
		}
	}
}

// gcPercent reads the current GOGC setting.
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

// A Cal whose live heap outgrows half the limit goes back to GOGC=100
// after the next collection, instead of collecting without pause.
func TestLiveHeapPastBoundRestoresPercentTrigger(t *testing.T) {
	oldPct, oldLimit := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(oldPct); debug.SetMemoryLimit(oldLimit) })
	debug.SetMemoryLimit(64 << 20)

	// The bound sits 2 MiB above the live heap the test binary starts
	// with (its packages' init: grpc and protobuf since the Workload API),
	// so "small" does not depend on what the package links.
	runtime.GC()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	watchLiveHeap(int64(live[0].Value.Uint64()) + 2<<20)
	for n := liveHeapChecks.Load(); liveHeapChecks.Load() == n; { // live heap below the bound
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if p := gcPercent(); p != -1 {
		t.Fatalf("GOGC = %d with a small live heap, want -1 (off)", p)
	}

	keep := make([][]byte, 0, 8)
	for range 12 {
		keep = append(keep, make([]byte, 1<<20))
	}
	for deadline := time.Now().Add(30 * time.Second); gcPercent() != 100; {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC = %d after collections with a %d MiB live heap, want 100", gcPercent(), len(keep))
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(keep)
}
