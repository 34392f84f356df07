package tiles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger"
)

const origin = "calnet.test/tiles"

func logKey(t testing.TB, label string) *identity.PrivateKey {
	seed := sha256.Sum256([]byte(label))
	k, err := identity.FromSeed(append(seed[:], seed[:]...))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newLog returns a log of n entries.
func newLog(t testing.TB, n int) *ledger.Log {
	t.Helper()
	k := logKey(t, "tiles test log")
	l, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: origin, LogKey: k.Public(), Signer: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	appendN(t, l, 0, n)
	return l
}

func appendN(t testing.TB, l *ledger.Log, from, n int) {
	t.Helper()
	var batch []ledger.Entry
	for i := from; i < from+n; i++ {
		batch = append(batch, ledger.Entry{Type: ledger.TypeAudit, Time: time.Unix(int64(i), 0).UTC(), Subject: fmt.Sprintf("e%d", i), Data: json.RawMessage(`{"pad":"` + strings.Repeat("x", i%300) + `"}`)})
		if len(batch) == 500 || i == from+n-1 {
			if _, err := l.Append(context.Background(), batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func serve(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestIndependentClient reads the served log with x/mod/sumdb/tlog's tile
// hash reader over torchwood's tlog-tiles fetcher and client (neither of
// them calnet code) and proves inclusion and consistency with tlog.
func TestIndependentClient(t *testing.T) {
	ctx := context.Background()
	l := newLog(t, 700)
	old := l.Checkpoint()
	appendN(t, l, 700, 300)
	srv := serve(t, NewHandler(Config{Source: l, Rate: -1}))

	tf, err := torchwood.NewTileFetcher(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tf.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := ledger.VerifierKey(origin, logKey(t, "tiles test log").Public())
	v, _ := note.NewVerifier(vkey)
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		t.Fatalf("x/mod/sumdb/note refuses the checkpoint: %v", err)
	}
	c, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil || c.N != 1000 {
		t.Fatalf("checkpoint %+v, %v", c, err)
	}
	tree := c.Tree
	hr := torchwood.TileHashReaderWithContext(ctx, tree, tf)
	for _, i := range []int64{0, 1, 255, 256, 511, 699, 999} {
		p, err := tlog.ProveRecord(tree.N, i, hr)
		if err != nil {
			t.Fatalf("ProveRecord(%d): %v", i, err)
		}
		e, _ := l.Entry(uint64(i))
		if err := tlog.CheckRecord(p, tree.N, tree.Hash, i, tlog.RecordHash(e)); err != nil {
			t.Fatalf("CheckRecord(%d): %v", i, err)
		}
	}
	tp, err := tlog.ProveTree(tree.N, int64(old.Size), hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, tree.N, tree.Hash, int64(old.Size), tlog.Hash(old.Root)); err != nil {
		t.Fatalf("CheckTree: %v", err)
	}
	// Every entry, through torchwood's client, which checks each bundle
	// against the tiles.
	tc, err := torchwood.NewClient(tf)
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	for i, e := range tc.Entries(ctx, tree, 0) {
		want, _ := l.Entry(uint64(i))
		if !bytes.Equal(e, want) {
			t.Fatalf("entry %d differs", i)
		}
		got = i + 1
	}
	if err := tc.Err(); err != nil {
		t.Fatal(err)
	}
	// torchwood stops before the trailing partial bundle by design.
	if got < 768 {
		t.Fatalf("read %d entries", got)
	}
}

func TestClient(t *testing.T) {
	ctx := context.Background()
	l := newLog(t, 300)
	old := l.Checkpoint()
	appendN(t, l, 300, 20)
	srv := serve(t, NewHandler(Config{Source: l, Rate: -1}))
	c, err := NewClient(ClientConfig{URL: srv.URL, Origin: origin, LogKey: logKey(t, "tiles test log").Public()})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{0, 255, 256, 319} {
		p, err := c.Inclusion(ctx, cp.Checkpoint, i)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := l.Inclusion(i, 0)
		if fmt.Sprint(p) != fmt.Sprint(want) {
			t.Fatalf("remote proof of %d differs from the log's", i)
		}
	}
	cons, err := c.Consistency(ctx, old, cp.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := l.Consistency(old.Size, 0)
	if fmt.Sprint(cons) != fmt.Sprint(want) {
		t.Fatal("remote consistency proof differs from the log's")
	}
	es, err := c.Entries(ctx, cp.Checkpoint, 250, 320)
	if err != nil || len(es) != 70 {
		t.Fatalf("%d entries, %v", len(es), err)
	}
	for i, e := range es {
		w, _ := l.Entry(250 + uint64(i))
		if !bytes.Equal(e, w) {
			t.Fatalf("entry %d differs", 250+i)
		}
	}
}

// tamper serves the log with one response altered.
type tamper struct {
	h    http.Handler
	path string
	edit func([]byte) []byte
}

func (t tamper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	b := rec.Body.Bytes()
	if r.URL.Path == t.path {
		b = t.edit(bytes.Clone(b))
	}
	w.WriteHeader(rec.Code)
	w.Write(b)
}

func flip(i int) func([]byte) []byte {
	return func(b []byte) []byte {
		b[i%len(b)] ^= 1
		return b
	}
}

// TestTamperedLogRefused: each altered response is caught by the client
// with a named reason, and by tlog where tlog reads it.
func TestTamperedLogRefused(t *testing.T) {
	ctx := context.Background()
	l := newLog(t, 600)
	old := l.Checkpoint()
	appendN(t, l, 600, 10)
	h := NewHandler(Config{Source: l, Rate: -1})
	other := newLogKeyed(t, "another key", 610)
	tests := []struct {
		name string
		srv  http.Handler
		op   string
		want error
		msg  string
	}{
		{"hash tile", tamper{h, "/tile/0/001", flip(100)}, "inclusion", ErrRemote, "inconsistent"},
		{"partial hash tile", tamper{h, "/tile/0/002.p/98", flip(5)}, "inclusion", ErrRemote, "inconsistent"},
		{"level 1 tile", tamper{h, "/tile/1/000.p/2", flip(3)}, "consistency", ErrRemote, "inconsistent"},
		{"entry bundle", tamper{h, "/tile/entries/002.p/98", flip(40)}, "entries", ErrRemote, "do not hash to the leaf"},
		{"checkpoint root", tamper{h, "/checkpoint", func(b []byte) []byte { return bytes.Replace(b, []byte("\n610\n"), []byte("\n611\n"), 1) }}, "checkpoint", ledger.ErrCheckpoint, ""},
		{"checkpoint of another key", other, "checkpoint", ledger.ErrCheckpoint, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.srv)
			c, _ := NewClient(ClientConfig{URL: srv.URL, Origin: origin, LogKey: logKey(t, "tiles test log").Public()})
			var err error
			switch tt.op {
			case "checkpoint":
				_, err = c.Checkpoint(ctx)
			case "inclusion":
				_, err = c.Inclusion(ctx, l.Checkpoint(), 300)
				if err == nil {
					_, err = c.Inclusion(ctx, l.Checkpoint(), 600)
				}
			case "consistency":
				_, err = c.Consistency(ctx, old, l.Checkpoint())
			case "entries":
				_, err = c.Entries(ctx, l.Checkpoint(), 512, 610)
			}
			if !errors.Is(err, tt.want) || !strings.Contains(fmt.Sprint(err), tt.msg) {
				t.Fatalf("err = %v, want %v (%q)", err, tt.want, tt.msg)
			}
		})
	}
	// tlog itself refuses the tampered tile.
	srv := serve(t, tamper{h, "/tile/0/001", flip(100)})
	tf, _ := torchwood.NewTileFetcher(srv.URL)
	cp := l.Checkpoint()
	hr := torchwood.TileHashReaderWithContext(ctx, tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Root)}, tf)
	if _, err := tlog.ProveRecord(int64(cp.Size), 300, hr); err == nil {
		t.Fatal("tlog accepted a tampered tile")
	}
}

func newLogKeyed(t *testing.T, label string, n int) http.Handler {
	k := logKey(t, label)
	l, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: origin, LogKey: k.Public(), Signer: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	appendN(t, l, 0, n)
	return NewHandler(Config{Source: l, Rate: -1})
}

func TestHandlerResponses(t *testing.T) {
	l := newLog(t, 300)
	h := NewHandler(Config{Source: l, Rate: -1})
	tests := []struct {
		method, path string
		status       int
		cache        string
		size         int
	}{
		{"GET", "/checkpoint", 200, cacheCheckpoint, -1},
		{"HEAD", "/checkpoint", 200, cacheCheckpoint, -1},
		{"GET", "/tile/0/000", 200, cacheFull, 256 * 32},
		{"GET", "/tile/0/001.p/44", 200, cachePartial, 44 * 32},
		{"GET", "/tile/0/000.p/10", 200, cachePartial, 10 * 32},
		{"GET", "/tile/1/000.p/1", 200, cachePartial, 32},
		{"GET", "/tile/entries/000", 200, cacheFull, -1},
		{"GET", "/tile/entries/001.p/44", 200, cachePartial, -1},
		{"GET", "/tile/0/001", 404, "no-store", -1},
		{"GET", "/tile/0/001.p/45", 404, "no-store", -1},
		{"GET", "/tile/2/000.p/1", 404, "no-store", -1},
		{"GET", "/tile/8/000", 404, "no-store", -1},
		{"GET", "/tile/0/x000/000", 404, "no-store", -1},
		{"GET", "/tile/0/0", 404, "no-store", -1},
		{"GET", "/tile/0/000.p/256", 404, "no-store", -1},
		{"GET", "/tile/0/000.p/0", 404, "no-store", -1},
		{"GET", "/tile/0/" + strings.Repeat("x999/", 20) + "000", 404, "no-store", -1},
		{"GET", "/tile/data/000", 404, "no-store", -1},
		{"GET", "/entries", 404, "no-store", -1},
		{"POST", "/checkpoint", 405, "no-store", -1},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.status || rec.Header().Get("Cache-Control") != tt.cache {
				t.Fatalf("status %d, Cache-Control %q: %s", rec.Code, rec.Header().Get("Cache-Control"), rec.Body)
			}
			if tt.size >= 0 && rec.Body.Len() != tt.size {
				t.Fatalf("%d bytes, want %d", rec.Body.Len(), tt.size)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	l := newLog(t, 1)
	h := NewHandler(Config{Source: l, Rate: 1, Burst: 3})
	codes := map[int]int{}
	for range 5 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/checkpoint", nil))
		codes[rec.Code]++
		if rec.Code == 429 && rec.Header().Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if codes[200] < 3 || codes[429] < 1 || codes[200]+codes[429] != 5 {
		t.Fatalf("codes %v", codes)
	}
	// Another address has its own budget.
	req := httptest.NewRequest("GET", "/checkpoint", nil)
	req.RemoteAddr = "192.0.2.9:1234"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("another address: %d", rec.Code)
	}
}

func TestParsePath(t *testing.T) {
	good := []string{"tile/0/000", "tile/0/x001/234.p/5", "tile/entries/000.p/255", "tile/7/x999/x999/999"}
	for _, p := range good {
		tl, err := ParsePath(p)
		if err != nil || Path(tl) != p {
			t.Errorf("%s: %v %v", p, tl, err)
		}
	}
	bad := []string{"tile/0/0", "tile/0/000.p/256", "tile/0/000.p/0", "tile/0/000.p/", "tile/8/000", "tile/-1/000", "tile/data/000", "tile/0/x000/001", "tile//000", strings.Repeat("a", MaxPathLen+1), "tile/0/000/", "tile/0/000.p/05"}
	for _, p := range bad {
		if _, err := ParsePath(p); !errors.Is(err, ErrPath) {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/entries/x001/234.p/5", "tile/7/x999/x999/999", "tile/0/000.p/256"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tl, err := ParsePath(s)
		if err != nil {
			return
		}
		if Path(tl) != s || tl.W < 1 || tl.W > 256 || tl.L > ledger.MaxTileLevel || tl.L < -1 {
			t.Fatalf("%q parsed as %+v", s, tl)
		}
	})
}
