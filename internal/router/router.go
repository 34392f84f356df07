// Package router is the Infinity Router: one HTTP entry point for the
// network that sends /<namespace>/... and requests for Host
// <namespace>.<domain> to the gateway tier of the Cal that owns the
// namespace. Namespaces nest along the lineage and are assigned by the
// control plane, so a Cal is reachable only under its own namespace, and a
// parent's namespace is a suffix of its descendants'.
package router

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Target is where a namespace routes.
type Target struct {
	Cal string
	// Socket is the unix socket of the Cal's gateway.
	Socket string
}

// Lookup resolves a namespace (lowercase, without the domain). It must be
// fast and safe for concurrent use.
type Lookup func(namespace string) (Target, bool)

// Router routes HTTP requests to Cal gateways.
type Router struct {
	domain string // ".calnet" form, lowercase, no trailing dot
	lookup Lookup

	mu      sync.Mutex
	proxies map[string]*httputil.ReverseProxy // by socket
}

// New returns a router for the DNS zone domain ("calnet.").
func New(domain string, lookup Lookup) *Router {
	d := "." + strings.Trim(strings.ToLower(domain), ".")
	return &Router{domain: d, lookup: lookup, proxies: map[string]*httputil.ReverseProxy{}}
}

// maxNamespace bounds a namespace (a DNS name).
const maxNamespace = 253

func jsonErr(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

// ServeHTTP implements http.Handler.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ns, rest := "", r.URL.Path
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.HasSuffix(host, rt.domain) {
		ns = strings.TrimSuffix(host, rt.domain)
	} else {
		p := strings.TrimPrefix(r.URL.Path, "/")
		ns, rest, _ = strings.Cut(p, "/")
		rest = "/" + rest
		ns = strings.ToLower(ns)
	}
	if ns == "" {
		jsonErr(w, http.StatusNotFound, "no namespace: use /<namespace>/... or Host <namespace>%s", rt.domain)
		return
	}
	if len(ns) > maxNamespace {
		jsonErr(w, http.StatusBadRequest, "namespace: over the limit of %d characters", maxNamespace)
		return
	}
	t, ok := rt.lookup(ns)
	if !ok {
		jsonErr(w, http.StatusNotFound, "namespace %q: no such cal", ns)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = rest
	r2.URL.RawPath = ""
	r2.Header.Set("X-Calnet-Namespace", ns)
	r2.Header.Set("X-Forwarded-Host", r.Host)
	rt.proxy(t.Socket).ServeHTTP(w, r2)
}

// proxy returns the pooled reverse proxy of a gateway socket.
func (rt *Router) proxy(socket string) *httputil.ReverseProxy {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if p, ok := rt.proxies[socket]; ok {
		return p
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	target := &url.URL{Scheme: "http", Host: "gateway"}
	p := httputil.NewSingleHostReverseProxy(target)
	p.Transport = tr
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		jsonErr(w, http.StatusBadGateway, "the cal's gateway is not answering")
	}
	rt.proxies[socket] = p
	return p
}

// Forget drops the pooled connections to a gateway (a stopped Cal).
func (rt *Router) Forget(socket string) {
	rt.mu.Lock()
	p := rt.proxies[socket]
	delete(rt.proxies, socket)
	rt.mu.Unlock()
	if p != nil {
		p.Transport.(*http.Transport).CloseIdleConnections()
	}
}
