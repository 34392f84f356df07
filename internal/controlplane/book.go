package controlplane

import (
	"fmt"
	"sync"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/trust"
)

// The admission book makes the part of admission that concurrent spawns
// contend for (names, the network's Cal count, the requests of every
// subtree, the parent's child serials) one decision and one reservation,
// taken under one lock with no I/O: the registry index (updated in the
// order the registry is written, see regMu) holds every Cal, and the book
// holds every admitted spawn that has no Cal record yet. A reservation
// ends (release) when its Cal is in the registry or the spawn fails or
// is refused.

// reservation is an admitted spawn's hold on names, quota and a serial.
type reservation struct {
	spawn  string
	parent string
	name   string
	quota  trust.Quota
}

// book holds the reservations of admitted spawns.
type book struct {
	mu      sync.Mutex
	pending map[string]*reservation // by spawn ID
}

// admitAsk is what the book decides on: one spawn's claim.
type admitAsk struct {
	spawn  string
	parent identity.ID
	name   string
	quota  trust.Quota
	src    quotaSource
	// maxChildren is the parent's blessing's max_children.
	maxChildren int
	maxCals     int
}

// reserve decides and, if admitted, reserves: the name is free, the
// network holds fewer than maxCals Cals, the requests of every ancestor's
// subtree fit in its limit, and the parent has a child serial left. It
// returns the reserved serial.
func (s *Server) reserve(ask admitAsk) (int, *APIError) {
	b := &s.book
	b.mu.Lock()
	defer b.mu.Unlock()
	parent := ask.parent.String()

	s.ns.mu.RLock()
	cals := s.ns.byID
	live := 0
	for id, c := range cals {
		if isLive(c.State) {
			live++
		}
		if ask.name != "" && c.Name == ask.name && c.State != StateRevoked {
			s.ns.mu.RUnlock()
			return 0, apiErr(409, "name: %q is taken by cal %s", ask.name, id)
		}
	}
	for _, r := range b.pending {
		if ask.name != "" && r.name == ask.name {
			s.ns.mu.RUnlock()
			return 0, apiErr(409, "name: %q is taken by spawn %s, in progress", ask.name, r.spawn)
		}
	}
	if n := live + len(b.pending); n >= ask.maxCals {
		s.ns.mu.RUnlock()
		return 0, &APIError{Status: 429, RetryAfter: 10 * time.Second, Msg: fmt.Sprintf("limit max_cals: the network holds %d cals, the limit is %d", n, ask.maxCals)}
	}
	// The ancestors of the new Cal: its parent and up to the Master.
	used := map[string]*trust.Quota{}
	var chain []string
	for cur, n := parent, 0; n <= trust.MaxChainDepth+1; n++ {
		c, ok := cals[cur]
		if !ok {
			break
		}
		used[cur] = &trust.Quota{}
		chain = append(chain, cur)
		cur = c.Parent
	}
	// Sum the limits under each ancestor: every live Cal and pending
	// spawn counts for each of its ancestors in the chain.
	climb := func(from string, q trust.Quota) {
		for cur, n := from, 0; n <= trust.MaxChainDepth+1; n++ {
			if u, ok := used[cur]; ok {
				addQuota(u, q)
			}
			c, ok := cals[cur]
			if !ok {
				return
			}
			cur = c.Parent
		}
	}
	for _, c := range cals {
		if isLive(c.State) {
			climb(c.Parent, c.Quota)
		}
	}
	for _, r := range b.pending {
		climb(r.parent, r.quota)
	}
	for _, anc := range chain {
		if aerr := fitsSubtree(ask.quota, ask.src, anc, cals[anc].Quota, *used[anc], s.overcommit()); aerr != nil {
			s.ns.mu.RUnlock()
			return 0, aerr
		}
	}
	s.ns.mu.RUnlock()

	// The child's serial: concurrent spawns of one parent never share one.
	// A spawn that fails later leaves its serial unused.
	s.trustMu.Lock()
	serial := max(len(s.state.Children[ask.parent]), s.serials[ask.parent]) + 1
	if serial > ask.maxChildren {
		s.trustMu.Unlock()
		return 0, apiErr(403, "limit max_children: the parent has used %d of its %d child serials", serial-1, ask.maxChildren)
	}
	s.serials[ask.parent] = serial
	s.trustMu.Unlock()

	if b.pending == nil {
		b.pending = map[string]*reservation{}
	}
	b.pending[ask.spawn] = &reservation{spawn: ask.spawn, parent: parent, name: ask.name, quota: ask.quota}
	return serial, nil
}

// release ends a reservation: its Cal is now in the registry (and so in
// the index, where it counts from now on), or the spawn was refused or
// failed before its Cal was recorded.
func (s *Server) release(spawn string) {
	s.book.mu.Lock()
	delete(s.book.pending, spawn)
	s.book.mu.Unlock()
}
