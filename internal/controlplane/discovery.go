package controlplane

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/discovery"
	"github.com/soulfra/calnet/internal/router"
	"github.com/soulfra/calnet/trust"
)

// router builds the Infinity Router over the namespace index: only running
// Cals are routed.
func (s *Server) router() *router.Router {
	return router.New(s.cfg.Domain, func(ns string) (router.Target, bool) {
		r, ok := s.lookupNS(ns)
		if !ok || r.State != StateRunning {
			return router.Target{}, false
		}
		c, ok := s.lite(r.ID)
		if !ok {
			return router.Target{}, false
		}
		host := s.dirs.Host(r.ID)
		return router.Target{Cal: r.ID, Gateway: host.Socket(calproto.GatewaySocket, c.PeerUID),
			Handoff: host.Socket(calproto.GatewayHandoffSocket, c.PeerUID)}, true
	})
}

// routerURL is where a namespace is served.
func (s *Server) routerURL(ns string) string {
	if s.routerAddr == "" || ns == "" {
		return ""
	}
	return "http://" + s.routerAddr + "/" + ns + "/"
}

// nsIndex maps namespaces to Cals for DNS and, later, the router. It is
// updated on every registry write and rebuilt at start.
type nsIndex struct {
	mu   sync.RWMutex
	byNS map[string]discovery.Record
	// byID is what the rule engine reads of every Cal on each cycle,
	// kept here so that a cycle does not decode the registry.
	byID map[string]calLite
}

// calLite is the part of a registry record the rule engine and admission
// read.
type calLite struct {
	State       string
	Healthy     bool
	Depth       int
	Children    []string
	MemoryQuota int64
	// PeerUID is the uid its processes run as: every connection to its
	// sockets must have it (caldir.Socket).
	PeerUID int
	Parent  string
	Name    string
	Quota   trust.Quota
}

// lite returns the indexed summary of a Cal.
func (s *Server) lite(id string) (calLite, bool) {
	s.ns.mu.RLock()
	defer s.ns.mu.RUnlock()
	c, ok := s.ns.byID[id]
	return c, ok
}

// index records r's namespace (called after every registry write).
func (s *Server) index(r *CalRecord) {
	s.ns.mu.Lock()
	defer s.ns.mu.Unlock()
	if s.ns.byID == nil {
		s.ns.byID = map[string]calLite{}
	}
	s.ns.byID[r.ID] = calLite{State: r.State, Healthy: r.Healthy, Depth: r.Depth, Children: slices.Clone(r.Children), MemoryQuota: r.Quota.MemoryBytes,
		PeerUID: peerUID(r.Features, r.UID), Parent: r.Parent, Name: r.Name, Quota: recordQuota(r)}
	if r.Namespace == "" {
		return
	}
	if s.ns.byNS == nil {
		s.ns.byNS = map[string]discovery.Record{}
	}
	// A revoked Cal's namespace is free for a new Cal: once another holds
	// it, the revoked record (updated, or read at a rebuild) leaves it be.
	if cur, ok := s.ns.byNS[r.Namespace]; ok && cur.ID != r.ID && r.State == StateRevoked {
		return
	}
	s.ns.byNS[r.Namespace] = discovery.Record{ID: r.ID, Namespace: r.Namespace, State: r.State, Healthy: r.Healthy,
		Depth: r.Depth, Parent: r.Parent, Capabilities: r.Permissions}
}

// lookupNS implements discovery.Lookup.
func (s *Server) lookupNS(ns string) (*discovery.Record, bool) {
	s.ns.mu.RLock()
	defer s.ns.mu.RUnlock()
	r, ok := s.ns.byNS[ns]
	if !ok {
		return nil, false
	}
	return &r, true
}

// rebuildIndex loads every Cal into the namespace index.
func (s *Server) rebuildIndex(ctx context.Context) error {
	recs, err := s.listCals(ctx)
	for _, r := range recs {
		s.index(r)
	}
	return err
}

// childNamespace is <label>.<parent namespace>, with the child's name as
// label when it has one, else the first 8 (or, on a collision, 16)
// characters of its ID. A revoked Cal's namespace is taken over. The
// namespace is reserved in the index at once, so
// that siblings spawned at the same time with the same name cannot both
// get it; releaseNamespace gives it back if the Cal is never stored.
func (s *Server) childNamespace(ctx context.Context, parent, name, id string) string {
	prec, err := s.getCal(ctx, parent)
	pns := "unknown"
	if err == nil && prec.Namespace != "" {
		pns = prec.Namespace
	}
	label := strings.ToLower(name)
	if l, err := discovery.Label(label); err != nil || label == "" {
		label = id[:8]
	} else {
		label = l
	}
	ns := label + "." + pns
	s.ns.mu.Lock()
	defer s.ns.mu.Unlock()
	if s.ns.byNS == nil {
		s.ns.byNS = map[string]discovery.Record{}
	}
	if r, taken := s.ns.byNS[ns]; taken && r.State != StateRevoked {
		ns = id[:16] + "." + pns
	}
	s.ns.byNS[ns] = discovery.Record{ID: id, Namespace: ns, State: StateDeploying}
	return ns
}

// releaseNamespace drops a reservation of childNamespace whose Cal was not
// stored.
func (s *Server) releaseNamespace(ns, id string) {
	s.ns.mu.Lock()
	defer s.ns.mu.Unlock()
	if r, ok := s.ns.byNS[ns]; ok && r.ID == id {
		delete(s.ns.byNS, ns)
	}
}
