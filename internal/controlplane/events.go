package controlplane

import (
	"github.com/soulfra/calnet/api"
	"sync"
	"time"
)

// Event is one published change: a spawn transition, a Cal state change,
// a revocation, with who caused it and why.
type Event = api.Event

// bus fans events out to subscribers and keeps the most recent ones so a
// reconnecting client can resume from a sequence number.
type bus struct {
	// sink receives every event, in order, before subscribers, and returns
	// it with its sequence number; the audit trail uses it so that it never
	// loses one.
	sink   func(Event) Event
	mu     sync.Mutex
	seq    uint64
	recent []Event
	subs   map[chan Event]struct{}
}

const busHistory = 4096

func newBus() *bus { return &bus{subs: map[chan Event]struct{}{}} }

func (b *bus) publish(e Event) Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if b.sink != nil {
		e = b.sink(e)
		b.seq = e.Seq
	}
	b.recent = append(b.recent, e)
	if len(b.recent) > busHistory {
		b.recent = b.recent[len(b.recent)-busHistory:]
	}
	for ch := range b.subs {
		select {
		case ch <- e:
		default: // a slow subscriber loses events rather than stalling the network
		}
	}
	return e
}

// subscribe returns events after seq (from history) and a channel of new
// ones; cancel releases it.
func (b *bus) subscribe(after uint64) ([]Event, chan Event, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var past []Event
	for _, e := range b.recent {
		if e.Seq > after {
			past = append(past, e)
		}
	}
	ch := make(chan Event, 256)
	b.subs[ch] = struct{}{}
	return past, ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}
