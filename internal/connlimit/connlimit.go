// Package connlimit bounds the connections a server holds, so that no
// client can take every file descriptor of the process: a listener admits
// at most Limits.Total connections, at most Limits.PerClient from one
// client (a remote IP, or the peer uid on a unix socket), and never more
// than a Budget shared by every listener of the process leaves free.
//
// When a limit is reached a new connection is not simply refused: the
// oldest idle connection (one waiting for its first or its next request)
// of the same client, or else of anyone, is closed to make room, so that
// a client holding thousands of idle keep-alive connections cannot keep
// others out. Only when every connection is busy is the new one refused
// (an HTTP listener answers 503 with Retry-After). Busy connections are
// bounded elsewhere: header and body timeouts, and per-principal limits on
// long-lived streams.
package connlimit

import (
	"container/list"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits are one listener's limits. Zero means no limit of that kind.
type Limits struct {
	// Total is the most connections the listener holds at once.
	Total int
	// PerClient is the most connections one client holds at once.
	PerClient int
}

// Budget is the number of connections all listeners of a process may hold
// together: the file descriptors left once a reserve for everything else
// (files, pipes, Cals) is set aside. It is safe for concurrent use.
type Budget struct {
	max  int64
	used atomic.Int64

	mu        sync.Mutex
	listeners []*Listener // that draw on the budget: a full budget closes their oldest idle connection
}

// NewBudget returns a budget of n connections (n <= 0: unlimited).
func NewBudget(n int) *Budget { return &Budget{max: int64(n)} }

func (b *Budget) take() bool {
	if b == nil || b.max <= 0 {
		return true
	}
	if b.used.Add(1) > b.max {
		b.used.Add(-1)
		return false
	}
	return true
}

func (b *Budget) give() {
	if b != nil && b.max > 0 {
		b.used.Add(-1)
	}
}

func (b *Budget) add(l *Listener) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.listeners = append(b.listeners, l)
	b.mu.Unlock()
}

func (b *Budget) remove(l *Listener) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.listeners = slices.DeleteFunc(b.listeners, func(x *Listener) bool { return x == l })
	b.mu.Unlock()
}

// evictOldest closes the connection idle the longest on any listener of
// the budget, so that a flood on one listener does not keep the others
// out. It reports whether it closed one.
func (b *Budget) evictOldest() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	ls := slices.Clone(b.listeners)
	b.mu.Unlock()
	var victim *Conn
	var since time.Time
	for _, l := range ls {
		l.mu.Lock()
		if v := oldest(l.idle); v != nil && (victim == nil || v.idleSince.Before(since)) {
			victim, since = v, v.idleSince
		}
		l.mu.Unlock()
	}
	return victim != nil && victim.l.evict(victim)
}

// InUse reports the connections held against the budget.
func (b *Budget) InUse() int { return int(b.used.Load()) }

// Config configures a Listener.
type Config struct {
	Limits Limits
	// Budget is shared by the process's listeners (nil: none).
	Budget *Budget
	// HTTP makes a refused connection get "503 Service Unavailable" with
	// Retry-After before it is closed (plain-text HTTP listeners only).
	HTTP bool
	// Name names the listener in logs.
	Name   string
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Listener is a net.Listener that enforces Limits. Set ConnState as the
// http.Server's ConnState so that it knows which connections are idle.
type Listener struct {
	net.Listener
	cfg Config

	mu      sync.Mutex
	total   int
	clients map[string]*clientConns
	idle    *list.List // of *Conn, oldest first: idle connections of anyone
	refused atomic.Int64
	evicted atomic.Int64
}

type clientConns struct {
	n    int
	idle *list.List // of *Conn, oldest first
}

// New wraps ln.
func New(ln net.Listener, cfg Config) *Listener {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Listener{Listener: ln, cfg: cfg, clients: map[string]*clientConns{}, idle: list.New()}
	cfg.Budget.add(l)
	return l
}

// Close stops listening; the connections it admitted stay open.
func (l *Listener) Close() error {
	l.cfg.Budget.remove(l)
	return l.Listener.Close()
}

// evict closes c if it is still idle.
func (l *Listener) evict(c *Conn) bool {
	l.mu.Lock()
	ok := !c.gone && c.idleAll != nil
	if ok {
		l.forgetLocked(c)
	}
	l.mu.Unlock()
	if ok {
		l.evicted.Add(1)
		c.Conn.Close()
	}
	return ok
}

// Stats are a listener's counters.
type Stats struct {
	Open, Idle        int
	Refused, Evicted  int64
	Clients           int
	BudgetInUse, Left int
}

// Stats reports the listener's counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{Open: l.total, Idle: l.idle.Len(), Refused: l.refused.Load(), Evicted: l.evicted.Load(), Clients: len(l.clients)}
	if b := l.cfg.Budget; b != nil {
		st.BudgetInUse = b.InUse()
		st.Left = int(b.max) - st.BudgetInUse
	}
	return st
}

// Accept waits for a connection the limits admit; it makes room by closing
// idle connections, and refuses (closes) the ones it cannot admit.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if wc := l.admit(c); wc != nil {
			return wc, nil
		}
	}
}

func (l *Listener) admit(c net.Conn) *Conn {
	key := ClientKey(c)
	// The process's budget first, outside l.mu: making room may close an
	// idle connection of another listener.
	if !l.cfg.Budget.take() && !(l.cfg.Budget.evictOldest() && l.cfg.Budget.take()) {
		l.refuse(c, key)
		return nil
	}
	var victims []*Conn
	l.mu.Lock()
	cc := l.clients[key]
	if cc == nil {
		cc = &clientConns{idle: list.New()}
	}
	admitted := true
	// Room for this client: its own oldest idle connection goes first.
	if lim := l.cfg.Limits.PerClient; lim > 0 && cc.n >= lim {
		if v := oldest(cc.idle); v != nil {
			victims = append(victims, v)
			l.forgetLocked(v)
		} else {
			admitted = false
		}
	}
	// Room on the listener: anyone's oldest idle connection goes.
	if admitted && l.cfg.Limits.Total > 0 && l.total >= l.cfg.Limits.Total {
		if v := oldest(l.idle); v != nil {
			victims = append(victims, v)
			l.forgetLocked(v)
		} else {
			admitted = false
		}
	}
	var wc *Conn
	if admitted {
		wc = &Conn{Conn: c, l: l, key: key}
		l.clients[key] = cc
		cc.n++
		l.total++
		wc.setIdleLocked(true) // no request yet
	} else {
		l.cfg.Budget.give()
	}
	l.mu.Unlock()
	for _, v := range victims {
		l.evicted.Add(1)
		v.Conn.Close()
	}
	if !admitted {
		l.refuse(c, key)
	}
	return wc
}

func oldest(idle *list.List) *Conn {
	if e := idle.Front(); e != nil {
		return e.Value.(*Conn)
	}
	return nil
}

// refuse closes a connection it cannot admit, telling an HTTP client to
// come back.
func (l *Listener) refuse(c net.Conn, key string) {
	if n := l.refused.Add(1); n == 1 || n%1000 == 0 {
		l.cfg.Logger.Warn("connection refused: limits reached", "listener", l.cfg.Name, "client", key, "refused", n,
			"per_client", l.cfg.Limits.PerClient, "total", l.cfg.Limits.Total)
	}
	if l.cfg.HTTP {
		c.SetWriteDeadline(l.cfg.Now().Add(100 * time.Millisecond))
		io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 59\r\n\r\n"+
			`{"error":"server busy: connection limits reached; retry"}`+"\n\n")
	}
	c.Close()
}

// forgetLocked removes c from the counts (it is being closed).
func (l *Listener) forgetLocked(c *Conn) {
	if c.gone {
		return
	}
	c.gone = true
	c.setIdleLocked(false)
	l.total--
	if cc := l.clients[c.key]; cc != nil {
		cc.n--
		if cc.n == 0 {
			delete(l.clients, c.key)
		}
	}
	l.cfg.Budget.give()
}

// ConnState is the http.Server ConnState hook: it tells the listener
// which connections wait for a request (and may be closed to make room).
func (l *Listener) ConnState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*Conn)
	if !ok || c.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.gone {
		return
	}
	switch st {
	case http.StateNew, http.StateIdle:
		c.setIdleLocked(true)
	case http.StateActive, http.StateHijacked:
		c.setIdleLocked(false)
	}
}

// Conn is an admitted connection; closing it frees its place.
type Conn struct {
	net.Conn
	l   *Listener
	key string

	// guarded by l.mu
	idleSince  time.Time
	gone       bool
	idleAll    *list.Element
	idleClient *list.Element
	closeOnce  sync.Once
}

func (c *Conn) setIdleLocked(idle bool) {
	cc := c.l.clients[c.key]
	if idle && c.idleAll == nil && !c.gone {
		c.idleSince = c.l.cfg.Now()
		c.idleAll = c.l.idle.PushBack(c)
		if cc != nil {
			c.idleClient = cc.idle.PushBack(c)
		}
	}
	if !idle && c.idleAll != nil {
		c.l.idle.Remove(c.idleAll)
		c.idleAll = nil
		if cc != nil && c.idleClient != nil {
			cc.idle.Remove(c.idleClient)
		}
		c.idleClient = nil
	}
}

// Close closes the connection and frees its place.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		c.l.forgetLocked(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// NetConn returns the connection it wraps.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// SyscallConn exposes the socket (the router hands it to a Cal's gateway).
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connlimit: not a socket")
	}
	return sc.SyscallConn()
}

// ReadFrom lets io.Copy into the connection use splice(2) when the socket
// supports it.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// WriteTo lets io.Copy out of the connection use splice(2) when the
// socket supports it.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}

// ClientKey is who a connection comes from: its remote IP, or on a unix
// socket the peer's uid (each Cal runs as its own uid).
func ClientKey(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UDPAddr:
		return a.IP.String()
	}
	if uc, ok := c.(*net.UnixConn); ok {
		if uid, err := peerUID(uc); err == nil {
			return fmt.Sprintf("uid:%d", uid)
		}
	}
	return "unknown"
}

func peerUID(uc *net.UnixConn) (uint32, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return cred.Uid, nil
}
