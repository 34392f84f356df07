package tiles

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/time/rate"

	"github.com/soulfra/calnet/ledger"
)

// Source is the log a Handler serves; *ledger.Log is one. Its methods must
// be safe for concurrent use.
type Source interface {
	// Checkpoint returns the latest signed checkpoint.
	Checkpoint() *ledger.Checkpoint
	// TileHashes and EntryBundle return a tile (width 0: full) or
	// ledger.ErrNoTile.
	TileHashes(level int, index uint64, width int) ([]byte, error)
	EntryBundle(index uint64, width int) ([]byte, error)
}

// Config configures a Handler.
type Config struct {
	Source Source
	// Checkpoint, if set, returns the signed note to serve at /checkpoint
	// (the latest checkpoint with the witnesses' cosignatures); nil serves
	// Source.Checkpoint().Note.
	Checkpoint func() []byte
	// Rate and Burst bound the requests per second of each client address
	// (0: DefaultRate and DefaultBurst; a negative Rate: no limit).
	Rate  float64
	Burst int
	// ClientAddr names the client of a request for rate limiting; nil uses
	// the connection's remote IP.
	ClientAddr func(*http.Request) string
	Logger     *slog.Logger
}

// Handler serves a log as tlog-tiles. Mount it with http.StripPrefix so
// that it sees "/checkpoint" and "/tile/...".
type Handler struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	clients map[string]*rate.Limiter
	cache   *lru
}

// NewHandler returns a tlog-tiles handler of cfg.Source.
func NewHandler(cfg Config) *Handler {
	if cfg.Rate == 0 {
		cfg.Rate, cfg.Burst = DefaultRate, DefaultBurst
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(cfg.Rate))
	}
	if cfg.ClientAddr == nil {
		cfg.ClientAddr = remoteIP
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, clients: map[string]*rate.Limiter{}, cache: newLRU(cacheBytes)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) allow(r *http.Request) bool {
	if h.cfg.Rate < 0 {
		return true
	}
	addr := h.cfg.ClientAddr(r)
	h.mu.Lock()
	defer h.mu.Unlock()
	lim := h.clients[addr]
	if lim == nil {
		if len(h.clients) >= maxClients {
			clear(h.clients)
		}
		lim = rate.NewLimiter(rate.Limit(h.cfg.Rate), h.cfg.Burst)
		h.clients[addr] = lim
	}
	return lim.Allow()
}

// httpError answers a plain-text error (tlog-tiles clients read only the
// status).
func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, format+"\n", args...)
}

// ServeHTTP answers GET and HEAD of /checkpoint and /tile/...
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, "method %s: the log is read-only", r.Method)
		return
	}
	if !h.allow(r) {
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusTooManyRequests, "over the limit of %g requests per second per address", h.cfg.Rate)
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	path := strings.TrimPrefix(r.URL.Path, "/")
	if path == "checkpoint" {
		note := h.checkpoint()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", cacheCheckpoint)
		w.Header().Set("Content-Length", strconv.Itoa(len(note)))
		_, _ = w.Write(note) // the client has gone
		return
	}
	tile, err := ParsePath(path)
	if err != nil {
		httpError(w, http.StatusNotFound, "%v", err)
		return
	}
	data, err := h.tile(tile)
	switch {
	case errors.Is(err, ledger.ErrNoTile):
		httpError(w, http.StatusNotFound, "%s: %v", path, err)
		return
	case err != nil:
		h.log.Error("tlog-tiles: reading a tile", "path", path, "err", err)
		httpError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if tile.W == ledger.TileWidth {
		w.Header().Set("Cache-Control", cacheFull)
	} else {
		w.Header().Set("Cache-Control", cachePartial)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data) // the client has gone
}

func (h *Handler) checkpoint() []byte {
	if h.cfg.Checkpoint != nil {
		if b := h.cfg.Checkpoint(); b != nil {
			return b
		}
	}
	return h.cfg.Source.Checkpoint().Note
}

// tile reads a tile, from the cache if it was read before: a tile's bytes
// at a given path never change (a partial tile of width W is the first W
// hashes or entries of the full one), so any of them may be cached, and an
// entry bundle, which costs up to 256 reads from disk, is read only once.
func (h *Handler) tile(t Tile) ([]byte, error) {
	key := Path(t)
	if b, ok := h.cache.get(key); ok {
		return b, nil
	}
	w := t.W
	if w == ledger.TileWidth {
		w = 0
	}
	var b []byte
	var err error
	if t.L < 0 {
		b, err = h.cfg.Source.EntryBundle(uint64(t.N), w)
	} else {
		b, err = h.cfg.Source.TileHashes(t.L, uint64(t.N), w)
	}
	if err == nil {
		h.cache.put(key, b)
	}
	return b, err
}

// lru keeps tiles, which never change, up to a number of bytes.
type lru struct {
	mu    sync.Mutex
	max   int
	bytes int
	order *list.List // of *lruItem, most recent first
	items map[string]*list.Element
}

type lruItem struct {
	key string
	val []byte
}

func newLRU(maxBytes int) *lru {
	return &lru{max: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(k string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruItem).val, true
}

func (c *lru) put(k string, v []byte) {
	if len(v) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.order.PushFront(&lruItem{k, v})
	c.bytes += len(v)
	for c.bytes > c.max {
		e := c.order.Back()
		it := e.Value.(*lruItem)
		c.order.Remove(e)
		delete(c.items, it.key)
		c.bytes -= len(it.val)
	}
}
