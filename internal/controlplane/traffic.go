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
	fromOutside   = "outside"      // HTTP through the Infinity Router
	fromOperator  = "operator"     // consoles and profiles opened by administrators
	fromAuthority = "authority"    // revocations signed by the network authority
	outOfScope    = "out-of-scope" // a Cal outside a token's subtree
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
// caller's scope, busiest first. For a token, a Cal outside its subtree
// at the other end of a pair is shown as the pseudo-endpoint
// out-of-scope, never by its ID or name.
func (s *Server) handleTraffic(w http.ResponseWriter, r *http.Request, pr principal) {
	ctx := r.Context()
	recs, err := s.listCals(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	names := map[string]string{}
	visible := map[string]bool{}
	for _, c := range recs {
		names[c.ID] = c.Name
		visible[c.ID] = pr.admin || s.inScope(ctx, pr, c.ID)
	}
	// shown is how an end appears to the caller: itself, or out-of-scope.
	shown := func(end string) string {
		if _, isCal := names[end]; isCal && !visible[end] {
			return outOfScope
		}
		return end
	}
	s.trafficMu.Lock()
	merged := map[trafficKey]*trafficStat{}
	for k, st := range s.traffic.pairs {
		if !visible[k.from] && !visible[k.to] {
			continue
		}
		mk := trafficKey{shown(k.from), shown(k.to), k.kind}
		m := merged[mk]
		if m == nil {
			m = &trafficStat{}
			merged[mk] = m
		}
		m.count += st.count
		m.bytes += st.bytes
		if st.last.After(m.last) {
			m.last = st.last
		}
	}
	s.trafficMu.Unlock()
	out := api.Traffic{Pairs: []api.TrafficPair{}}
	for k, st := range merged {
		out.Pairs = append(out.Pairs, api.TrafficPair{From: k.from, FromName: names[k.from], To: k.to, ToName: names[k.to], Kind: k.kind,
			Count: st.count, Bytes: st.bytes, Last: st.last})
	}
	sort.Slice(out.Pairs, func(i, j int) bool {
		a, b := out.Pairs[i], out.Pairs[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.From+a.To+a.Kind < b.From+b.To+b.Kind
	})
	writeJSON(w, 200, out)
}
