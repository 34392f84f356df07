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
	"io"
	"net"
	"net/http"
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

	mu         sync.Mutex
	transports map[string]*http.Transport // by socket
}

// New returns a router for the DNS zone domain ("calnet.").
func New(domain string, lookup Lookup) *Router {
	d := "." + strings.Trim(strings.ToLower(domain), ".")
	return &Router{domain: d, lookup: lookup, transports: map[string]*http.Transport{}}
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
	rt.forward(w, r, t.Socket, ns, rest)
}

// hopHeaders are connection-level headers a proxy must not forward.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward sends the request to the gateway over a pooled unix-socket
// connection and streams the answer back: a lean path (no ReverseProxy
// rewriting) since every request of the network goes through it.
func (rt *Router) forward(w http.ResponseWriter, r *http.Request, socket, ns, path string) {
	out := &http.Request{
		Method: r.Method, URL: &url.URL{Scheme: "http", Host: "gateway", Path: path, RawQuery: r.URL.RawQuery},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: r.Header.Clone(), Body: r.Body,
		ContentLength: r.ContentLength, Host: r.Host,
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Set("X-Calnet-Namespace", ns)
	out.Header.Set("X-Forwarded-Host", r.Host)
	out = out.WithContext(r.Context())
	resp, err := rt.transport(socket).RoundTrip(out)
	if err != nil {
		jsonErr(w, http.StatusBadGateway, "the cal's gateway is not answering")
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	w.WriteHeader(resp.StatusCode)
	bp := bufPool.Get().(*[]byte)
	io.CopyBuffer(w, resp.Body, *bp)
	bufPool.Put(bp)
}

// transport returns the pooled transport of a gateway socket.
func (rt *Router) transport(socket string) *http.Transport {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if t, ok := rt.transports[socket]; ok {
		return t
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	rt.transports[socket] = t
	return t
}

// Forget drops the pooled connections to a gateway (a stopped Cal).
func (rt *Router) Forget(socket string) {
	rt.mu.Lock()
	t := rt.transports[socket]
	delete(rt.transports, socket)
	rt.mu.Unlock()
	if t != nil {
		t.CloseIdleConnections()
	}
}
