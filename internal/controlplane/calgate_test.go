package controlplane

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCalGateBoundsCallsPerCal: at most callsPerCal calls to one Cal are
// in flight, another Cal's calls do not wait for them, a waiter gives up
// with its context, and nothing is left behind once all are done.
func TestCalGateBoundsCallsPerCal(t *testing.T) {
	var g calGate
	ctx := context.Background()
	var held []func()
	for range callsPerCal {
		rel, err := g.acquire(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, rel)
	}
	// Cal a is full: a waiter with a cancelled context gives up.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.acquire(cctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire on a full cal with a cancelled context: %v", err)
	}
	// Another Cal is not held up by a.
	relB, err := g.acquire(cctx, "b")
	if err == nil {
		relB()
	}
	if relB2, err := g.acquire(ctx, "b"); err != nil {
		t.Fatalf("cal b waited for cal a: %v", err)
	} else {
		relB2()
	}
	// Waiters on a proceed as slots come back, never more than the bound.
	var inFlight, peak atomic.Int32
	var wg sync.WaitGroup
	for range 3 * callsPerCal {
		wg.Go(func() {
			rel, err := g.acquire(ctx, "a")
			if err != nil {
				t.Error(err)
				return
			}
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			inFlight.Add(-1)
			rel()
		})
	}
	for _, rel := range held {
		rel()
	}
	wg.Wait()
	if p := peak.Load(); p > callsPerCal {
		t.Fatalf("%d calls in flight to one cal, bound %d", p, callsPerCal)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.slots) != 0 {
		t.Fatalf("entries left after every call finished: %v", g.slots)
	}
}
