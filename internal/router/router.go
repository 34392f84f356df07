// Package router is the Infinity Router: one HTTP entry point for the
// network that sends /<namespace>/... and requests for Host
// <namespace>.<domain> to the gateway tier of the Cal that owns the
// namespace. Namespaces nest along the lineage and are assigned by the
// control plane, so a Cal is reachable only under its own namespace, and a
// parent's namespace is a suffix of its descendants'.
package router

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/soulfra/calnet/internal/caldir"
)

// Target is where a namespace routes. Its sockets are in the Cal's host
// directory, where the Cal cannot write, and every connection to them is
// checked to be the Cal's (caldir.Socket.Dial).
type Target struct {
	Cal string
	// Gateway is the unix socket of the Cal's gateway.
	Gateway caldir.Socket
	// Handoff, when set, is the gateway's handoff socket: connections
	// routed by Host are handed over to the gateway there (ListenHandoff).
	Handoff caldir.Socket
}

// Lookup resolves a namespace (lowercase, without the domain). It must be
// fast and safe for concurrent use.
type Lookup func(namespace string) (Target, bool)

// Router routes HTTP requests to Cal gateways.
type Router struct {
	domain string // ".calnet" form, lowercase, no trailing dot
	lookup Lookup

	// observe, when set, is told of every routed request (path routing)
	// or connection (Host routing: later requests on the handed-over
	// connection do not pass the router).
	observe func(cal string, byHost bool)

	mu         sync.Mutex
	transports map[caldir.Socket]*http.Transport
	pinned     map[net.Conn]struct{} // client connections spliced to a gateway
	closed     bool
}

// New returns a router for the DNS zone domain ("calnet.").
func New(domain string, lookup Lookup) *Router {
	return &Router{domain: suffix(domain), lookup: lookup, transports: map[caldir.Socket]*http.Transport{}, pinned: map[net.Conn]struct{}{}}
}

// Observe sets a function told of each routed request or connection (for
// the traffic matrix). Call it before serving.
func (rt *Router) Observe(fn func(cal string, byHost bool)) { rt.observe = fn }

// maxNamespace bounds a namespace (a DNS name).
const maxNamespace = 253

func jsonErr(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)}) // to a client that may be gone
}

// ServeHTTP implements http.Handler.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ns, rest := "", r.URL.Path
	host := hostOnly(r.Host)
	byHost := strings.HasSuffix(host, rt.domain)
	if byHost {
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
	if rt.observe != nil {
		rt.observe(t.Cal, byHost)
	}
	if byHost && pinnable(r) && rt.pin(w, r, t, ns) {
		return
	}
	rt.forward(w, r, t.Gateway, ns, rest)
}

// suffix is a DNS zone ("calnet.") as a host-name suffix (".calnet").
func suffix(domain string) string { return "." + strings.Trim(strings.ToLower(domain), ".") }

// hostOnly is a Host header lowercased and without its port.
func hostOnly(h string) string {
	h = strings.ToLower(h)
	if hh, _, err := net.SplitHostPort(h); err == nil {
		return hh
	}
	return h
}

// pinnable reports whether a request may open a pinned connection: HTTP/1.1
// keep-alive without a body, so that nothing of it is left unread.
func pinnable(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor == 1 && !r.Close && r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// pin takes over a connection routed by Host: its socket is handed to the
// gateway (Target.Handoff), which serves the client directly from then on,
// or, when the gateway has no handoff socket, it becomes a spliced byte
// stream to the gateway (splice(2) between the TCP and the unix socket).
// Either way no later request on it is parsed here, and every one reaches
// the same Cal: the gateway answers 421 Misdirected Request to one whose
// Host names another namespace (Misdirected), and the client retries on a
// new connection, as HTTP/2 clients do. pin returns false, with nothing
// written, when the connection cannot be taken over.
func (rt *Router) pin(w http.ResponseWriter, r *http.Request, t Target, ns string) bool {
	var hc *net.UnixConn
	if !t.Handoff.IsZero() {
		ctx, cancel := context.WithTimeout(r.Context(), handoffTimeout)
		hc, _ = t.Handoff.Dial(ctx)
		cancel()
	}
	var gw net.Conn
	if hc == nil {
		c, err := t.Gateway.Dial(r.Context())
		if err != nil {
			return false
		}
		gw = c
	}
	closeDialed := func() {
		if hc != nil {
			_ = hc.Close()
		}
		if gw != nil {
			gw.Close()
		}
	}
	rt.mu.Lock()
	closed := rt.closed
	rt.mu.Unlock()
	if closed {
		closeDialed()
		return false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		closeDialed()
		return false
	}
	conn.SetDeadline(time.Time{})
	prefix := firstRequest(r, ns, brw.Reader)
	if hc != nil {
		err := errNotSent
		if sc, ok := conn.(syscall.Conn); ok {
			err = sendConn(hc, sc, prefix)
		}
		_ = hc.Close()                   // the descriptor went with the message (or did not: err says)
		if !errors.Is(err, errNotSent) { // the gateway has it (or may have it)
			conn.Close()
			return true
		}
		c, err := t.Gateway.Dial(r.Context())
		if err != nil {
			conn.Close()
			return true
		}
		gw = c
	}
	rt.mu.Lock()
	rt.pinned[conn] = struct{}{}
	rt.mu.Unlock()
	go rt.splice(conn, gw, prefix)
	return true
}

// firstRequest is the request that opened a pinned connection, as the
// gateway gets it (with the routing headers), followed by the pipelined
// bytes already read.
func firstRequest(r *http.Request, ns string, buffered *bufio.Reader) []byte {
	first := &http.Request{
		Method: r.Method, URL: &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: r.Header.Clone(), Host: r.Host,
	}
	first.Header.Set("X-Calnet-Namespace", ns)
	first.Header.Set("X-Forwarded-Host", r.Host)
	first.Header.Set(PinnedHeader, "1")
	if first.Header.Get("User-Agent") == "" {
		first.Header["User-Agent"] = []string{""} // do not let Write invent one
	}
	var b bytes.Buffer
	_ = first.Write(&b) // into memory; the first request's body was already read
	if n := buffered.Buffered(); n > 0 {
		p, _ := buffered.Peek(n)
		b.Write(p)
	}
	return b.Bytes()
}

// splice writes the prefix to the gateway, then copies bytes both ways
// until either side closes.
func (rt *Router) splice(conn, gw net.Conn, prefix []byte) {
	defer func() {
		conn.Close()
		gw.Close()
		rt.mu.Lock()
		delete(rt.pinned, conn)
		rt.mu.Unlock()
	}()
	if _, err := gw.Write(prefix); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Either side closing ends the copy; its error says only that.
		_, _ = io.Copy(gw, conn) // splice(2): TCP -> unix socket
		if cw, ok := gw.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, _ = io.Copy(conn, gw) // splice(2): unix socket -> TCP
	conn.Close()
	<-done
}

// Close ends every spliced connection (the router's server is shutting
// down) and stops pinning new ones; handed-over ones belong to their Cals.
func (rt *Router) Close() {
	rt.mu.Lock()
	rt.closed = true
	conns := make([]net.Conn, 0, len(rt.pinned))
	for c := range rt.pinned {
		conns = append(conns, c)
	}
	rt.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// PinnedHeader marks the first request of a connection the router pinned
// to a gateway.
const PinnedHeader = "X-Calnet-Pinned"

type pinKey struct{}

// ConnContext is the http.Server ConnContext of a Cal gateway: it gives
// each connection the state Misdirected keeps.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	pinned := new(atomic.Bool)
	// A listener wrapper (connection limits) exposes the connection it wraps.
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	if _, ok := c.(*handedConn); ok {
		pinned.Store(true)
	}
	return context.WithValue(ctx, pinKey{}, pinned)
}

// Misdirected wraps a Cal gateway's handler. A request whose Host names
// another namespace of the domain gets 421 Misdirected Request and the
// connection is closed so that the client's retry is routed afresh; on a
// connection the router pinned (its first request carried PinnedHeader;
// the server needs ConnContext) every request must name this Cal's
// namespace in its Host, so a request meant for path routing cannot reach
// the pinned Cal either. namespace reports the Cal's own namespace and the
// domain; an empty domain turns the check off.
func Misdirected(namespace func() (ns, domain string), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ns, domain := namespace()
		if domain != "" {
			pinned, _ := r.Context().Value(pinKey{}).(*atomic.Bool)
			if pinned != nil && r.Header.Get(PinnedHeader) != "" {
				pinned.Store(true)
			}
			d := suffix(domain)
			host := hostOnly(r.Host)
			other := strings.HasSuffix(host, d) && strings.TrimSuffix(host, d) != ns
			if other || (pinned != nil && pinned.Load() && host != ns+d) {
				w.Header().Set("Connection", "close")
				jsonErr(w, http.StatusMisdirectedRequest, "host %q: not served on this connection, which belongs to namespace %q; retry on a new connection", host, ns)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hopHeaders are connection-level headers a proxy must not forward.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward sends the request to the gateway over a pooled unix-socket
// connection and streams the answer back: a lean path (no ReverseProxy
// rewriting) since every request of the network goes through it.
func (rt *Router) forward(w http.ResponseWriter, r *http.Request, socket caldir.Socket, ns, path string) {
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
	out.Header.Del(PinnedHeader)
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
	_, _ = io.CopyBuffer(w, resp.Body, *bp) // the status is sent: a client gone mid-body is all an error could say
	bufPool.Put(bp)
}

// transport returns the pooled transport of a gateway socket. Each new
// connection is checked to be the Cal's; pooled ones were.
func (rt *Router) transport(socket caldir.Socket) *http.Transport {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if t, ok := rt.transports[socket]; ok {
		return t
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := socket.Dial(ctx)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	rt.transports[socket] = t
	return t
}

// Forget drops the pooled connections to a gateway (a stopped Cal).
func (rt *Router) Forget(socket caldir.Socket) {
	rt.mu.Lock()
	t := rt.transports[socket]
	delete(rt.transports, socket)
	rt.mu.Unlock()
	if t != nil {
		t.CloseIdleConnections()
	}
}
