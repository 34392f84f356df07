package controlplane

import (
	"context"
	"sync"
)

// callsPerCal bounds the control plane's calls in flight to one Cal. A
// burst of spawns under one parent would otherwise open a connection and
// a handshake per spawn at once, and on a busy host the last of them
// would spend their whole time limit queued inside the Cal.
const callsPerCal = 8

// calGate holds, per Cal, the slots of its calls in flight. Entries live
// only while someone holds or waits for a slot, so Cals that are gone cost
// nothing.
type calGate struct {
	mu    sync.Mutex
	slots map[string]*gateSlots
}

type gateSlots struct {
	sem   chan struct{}
	users int // holding or waiting
}

// acquire waits for a slot for a call to cal, or for ctx. The caller's
// own time limit for the call starts once it holds the slot; release
// gives it back.
func (g *calGate) acquire(ctx context.Context, cal string) (release func(), err error) {
	g.mu.Lock()
	if g.slots == nil {
		g.slots = map[string]*gateSlots{}
	}
	s := g.slots[cal]
	if s == nil {
		s = &gateSlots{sem: make(chan struct{}, callsPerCal)}
		g.slots[cal] = s
	}
	s.users++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		if s.users--; s.users == 0 {
			delete(g.slots, cal)
		}
		g.mu.Unlock()
	}
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
