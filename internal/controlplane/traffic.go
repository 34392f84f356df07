package controlplane

import (
	"net/http"
	"sort"
	"time"

	"github.com/soulfra/calnet/api"
)

// The traffic matrix (UX-4.3): who talks to whom, as the control plane
// and the Infinity Router carry it. Cals live in their own network
// namespaces and reach each other only through them: a parent blessing a
// child, reflections shared, revocations, and HTTP from outside routed to
// a Cal's gateway (per request routed by path; per connection routed by
// Host, whose later requests go to the Cal directly).

// Pseudo-endpoints for traffic that does not start at a Cal.
const (
	fromOutside   = "outside"   // HTTP through the Infinity Router
	fromOperator  = "operator"  // consoles and profiles opened by administrators
	fromAuthority = "authority" // revocations signed by the network authority
	maxPairs      = 20_000
)

type trafficKey struct{ from, to, kind string }

type trafficStat struct {
	count, bytes int64
	last         time.Time
}

type trafficBook struct {
	pairs map[trafficKey]*trafficStat
}

// note counts one exchange from one endpoint to another.
func (s *Server) note(from, to, kind string, bytes int) {
	s.trafficMu.Lock()
	defer s.trafficMu.Unlock()
	if s.traffic.pairs == nil {
		s.traffic.pairs = map[trafficKey]*trafficStat{}
	}
	k := trafficKey{from, to, kind}
	st := s.traffic.pairs[k]
	if st == nil {
		if len(s.traffic.pairs) >= maxPairs {
			return // bounded: new pairs are not counted once full
		}
		st = &trafficStat{}
		s.traffic.pairs[k] = st
	}
	st.count++
	st.bytes += int64(bytes)
	st.last = s.now()
}

// handleTraffic is GET /v1/traffic: every pair with an end in the
// caller's scope, busiest first.
func (s *Server) handleTraffic(w http.ResponseWriter, r *http.Request, pr principal) {
	ctx := r.Context()
	recs, err := s.listCals(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	names := map[string]string{}
	for _, c := range recs {
		names[c.ID] = c.Name
	}
	visible := func(id string) bool {
		_, isCal := names[id]
		return isCal && s.inScope(ctx, pr, id)
	}
	s.trafficMu.Lock()
	out := api.Traffic{Pairs: []api.TrafficPair{}}
	for k, st := range s.traffic.pairs {
		if !pr.admin && !visible(k.from) && !visible(k.to) {
			continue
		}
		out.Pairs = append(out.Pairs, api.TrafficPair{From: k.from, FromName: names[k.from], To: k.to, ToName: names[k.to], Kind: k.kind,
			Count: st.count, Bytes: st.bytes, Last: st.last})
	}
	s.trafficMu.Unlock()
	sort.Slice(out.Pairs, func(i, j int) bool {
		a, b := out.Pairs[i], out.Pairs[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.From+a.To+a.Kind < b.From+b.To+b.Kind
	})
	writeJSON(w, 200, out)
}
