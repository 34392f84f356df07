package calrt

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/router"
)

// atomicCard is the Cal's place in the router, which the control plane
// tells it when it registers.
type atomicCard struct {
	mu        sync.Mutex
	namespace string
	url       string
	domain    string
	ready     chan struct{} // closed once set
}

func (c *atomicCard) readyChan() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready == nil {
		c.ready = make(chan struct{})
	}
	return c.ready
}

func (c *atomicCard) set(ns, url, domain string) {
	ready := c.readyChan()
	c.mu.Lock()
	c.namespace, c.url, c.domain = ns, url, domain
	c.mu.Unlock()
	select {
	case <-ready:
	default:
		close(ready)
	}
}

// wait reports whether the card is set, waiting at most d for it.
func (c *atomicCard) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.readyChan():
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// registerWait bounds how long the gateway holds a request that arrives
// before the Cal has its place in the router: the control plane routes to
// a Cal once it has registered, a moment before the Cal reads the reply
// that tells it its namespace.
const registerWait = 5 * time.Second

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
	h := router.Misdirected(rt.card.route, mux.Handler())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Served before the Cal knows its namespace, the card would be
		// empty and the misdirected-request check off.
		if r.URL.Path != "/healthz" && !rt.card.wait(r.Context(), registerWait) {
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusServiceUnavailable, "this cal has not registered with the control plane yet")
			return
		}
		h.ServeHTTP(w, r)
	})
}
