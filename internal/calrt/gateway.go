package calrt

import (
	"net/http"
	"sync"

	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/router"
)

type atomicCard struct {
	mu        sync.Mutex
	namespace string
	url       string
	domain    string
}

func (c *atomicCard) set(ns, url, domain string) {
	c.mu.Lock()
	c.namespace, c.url, c.domain = ns, url, domain
	c.mu.Unlock()
}

// route is the Cal's namespace and the network's domain.
func (c *atomicCard) route() (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.namespace, c.domain
}

func (c *atomicCard) get() (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.namespace, c.url
}

// gatewayHandler is tier 0, the Cal's entry in the Infinity Router: its
// address card at /, its health at /healthz. Workload routes come with
// templates (tier -3). A request the router sent over a connection pinned
// to another Cal is refused with 421 (router.Misdirected).
func (rt *Runtime) gatewayHandler() http.Handler {
	mux := authz.NewMux(authz.Gateway, authz.Public)
	pub := rt.key.Public()
	fp := calproto.Fingerprint(pub.Ed25519(), pub.MLDSA())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		ns, url := rt.card.get()
		writeJSON(w, 200, calproto.Card{Cal: rt.ID().String(), Namespace: ns, URL: url, Fingerprint: fp})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "no route %s on this cal (workload routes come with its template)", r.URL.Path)
	})
	return router.Misdirected(rt.card.route, mux.Handler())
}
