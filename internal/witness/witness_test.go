package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/ledger/tiles"
)

const origin = "calnet.test/witness"

func key(t testing.TB, label string) *identity.PrivateKey {
	seed := sha256.Sum256([]byte(label))
	k, err := identity.FromSeed(append(seed[:], seed[:]...))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newLog opens a log signed by the key of label.
func newLog(t testing.TB, label string) *ledger.Log {
	k := key(t, label)
	l, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: origin, LogKey: k.Public(), Signer: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func grow(t testing.TB, l *ledger.Log, tag string, n int) {
	var es []ledger.Entry
	for i := range n {
		es = append(es, ledger.Entry{Type: ledger.TypeAudit, Time: time.Unix(int64(i), 0).UTC(), Subject: fmt.Sprintf("%s-%d", tag, i), Data: json.RawMessage(`{}`)})
	}
	if _, err := l.Append(context.Background(), es...); err != nil {
		t.Fatal(err)
	}
}

func signer(t testing.TB, name string) *ledger.CosignatureSigner {
	seed := sha256.Sum256([]byte(name))
	s, err := ledger.NewCosignatureSigner(name, ed25519.NewKeyFromSeed(seed[:]), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newWitness(t testing.TB, stateFile string) *Witness {
	w, err := New(Config{Origin: origin, LogKey: key(t, "log").Public(), Signer: signer(t, "w1.example/witness"), StateFile: stateFile})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func post(t *testing.T, h http.Handler, req *AddRequest) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/add-checkpoint", bytes.NewReader(req.Marshal())))
	return rec.Code, rec.Body.String()
}

// TestAddCheckpoint drives the tlog-witness protocol: first checkpoint,
// a consistent newer one, the wrong old size, a bad proof, a fork, a
// rollback, another log key, another origin; then a restart keeps the
// state.
func TestAddCheckpoint(t *testing.T) {
	l := newLog(t, "log")
	fork := newLog(t, "log") // the same key, another history
	stateFile := filepath.Join(t.TempDir(), "state.json")
	w := newWitness(t, stateFile)
	h := w.Handler()

	grow(t, l, "a", 5)
	cp5 := l.Checkpoint()
	if code, body := post(t, h, &AddRequest{OldSize: 0, Checkpoint: cp5.Note}); code != 200 || !strings.HasPrefix(body, "\u2014 w1.example/witness ") {
		t.Fatalf("first checkpoint: %d %q", code, body)
	}
	grow(t, l, "b", 7)
	cp12 := l.Checkpoint()
	p, _ := l.Consistency(5, 12)
	grow(t, fork, "z", 12)
	forked := fork.Checkpoint()
	bad := &ledger.ConsistencyProof{Hashes: append([][]byte{bytes.Repeat([]byte{1}, 32)}, p.Hashes[1:]...)}
	other := newLog(t, "another log key")
	grow(t, other, "a", 13)
	tests := []struct {
		name   string
		req    *AddRequest
		status int
		body   string
	}{
		{"wrong old size", &AddRequest{OldSize: 3, Proof: p.Hashes, Checkpoint: cp12.Note}, 409, "5\n"},
		{"bad proof", &AddRequest{OldSize: 5, Proof: bad.Hashes, Checkpoint: cp12.Note}, 422, "log fork"},
		{"no proof", &AddRequest{OldSize: 5, Checkpoint: cp12.Note}, 422, "log fork"},
		{"another log key", &AddRequest{OldSize: 5, Checkpoint: other.Checkpoint().Note}, 403, "invalid checkpoint"},
		{"another origin", &AddRequest{OldSize: 5, Checkpoint: []byte("other.example/log\n1\nAAAA\n\n\u2014 x AAAA\n")}, 404, "unknown log"},
		{"consistent", &AddRequest{OldSize: 5, Proof: p.Hashes, Checkpoint: cp12.Note}, 200, "\u2014 w1.example/witness "},
		{"same again", &AddRequest{OldSize: 12, Checkpoint: cp12.Note}, 200, "\u2014 w1.example/witness "},
		{"fork at the same size", &AddRequest{OldSize: 12, Checkpoint: forked.Note}, 422, "two checkpoints of size 12 with different roots"},
		{"rollback", &AddRequest{OldSize: 12, Checkpoint: cp5.Note}, 409, "older than the one the witness cosigned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, h, tt.req)
			if code != tt.status || !strings.Contains(body, tt.body) {
				t.Fatalf("%d %q, want %d %q", code, body, tt.status, tt.body)
			}
		})
	}
	// The state survives a restart, and the restarted witness still
	// refuses the fork.
	w2 := newWitness(t, stateFile)
	if w2.Size() != 12 {
		t.Fatalf("restarted witness at size %d", w2.Size())
	}
	if _, err := w2.Add(context.Background(), 12, nil, forked.Note); !errors.Is(err, ledger.ErrFork) {
		t.Fatalf("restarted witness: %v", err)
	}
	// What it serves verifies with its key.
	wk := signer(t, "w1.example/witness").Verifier()
	if _, err := ledger.VerifyCosigned(w2.Latest(), origin, key(t, "log").Public(), ledger.WitnessPolicy{Witnesses: []*ledger.WitnessKey{wk}, Required: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestStateFileOfAnotherWitnessRefused(t *testing.T) {
	l := newLog(t, "log")
	grow(t, l, "a", 2)
	stateFile := filepath.Join(t.TempDir(), "state.json")
	w := newWitness(t, stateFile)
	if _, err := w.Add(context.Background(), 0, nil, l.Checkpoint().Note); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Origin: origin, LogKey: key(t, "log").Public(), Signer: signer(t, "w2.example/witness"), StateFile: stateFile})
	if !errors.Is(err, ledger.ErrTooFewCosignatures) {
		t.Fatalf("another witness's state: %v", err)
	}
	_, err = New(Config{Origin: origin + "x", LogKey: key(t, "log").Public(), Signer: signer(t, "w1.example/witness"), StateFile: stateFile})
	if err == nil || !strings.Contains(err.Error(), "witnesses log") {
		t.Fatalf("another origin's state: %v", err)
	}
}

// TestFollow: the pull witness proves consistency from the log's tiles
// and refuses a log that forks.
func TestFollow(t *testing.T) {
	ctx := context.Background()
	l := newLog(t, "log")
	grow(t, l, "a", 300)
	var src tiles.Source = l
	h := tiles.NewHandler(tiles.Config{Source: src, Rate: -1})
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := tiles.NewClient(tiles.ClientConfig{URL: srv.URL, Origin: origin, LogKey: key(t, "log").Public()})
	if err != nil {
		t.Fatal(err)
	}
	w := newWitness(t, filepath.Join(t.TempDir(), "state.json"))
	if err := w.Poll(ctx, c); err != nil || w.Size() != 300 {
		t.Fatalf("first poll: size %d, %v", w.Size(), err)
	}
	grow(t, l, "b", 20)
	if err := w.Poll(ctx, c); err != nil || w.Size() != 320 {
		t.Fatalf("second poll: size %d, %v", w.Size(), err)
	}
	// The log now serves another history of 330 entries.
	fork := newLog(t, "log")
	grow(t, fork, "z", 330)
	fsrv := httptest.NewServer(tiles.NewHandler(tiles.Config{Source: fork, Rate: -1}))
	defer fsrv.Close()
	fc, _ := tiles.NewClient(tiles.ClientConfig{URL: fsrv.URL, Origin: origin, LogKey: key(t, "log").Public()})
	if err := w.Poll(ctx, fc); !errors.Is(err, ledger.ErrFork) || w.Size() != 320 {
		t.Fatalf("fork: size %d, %v", w.Size(), err)
	}
}

func FuzzParseAddRequest(f *testing.F) {
	f.Add([]byte("old 0\n\norigin\n1\nAAAA\n\n\u2014 x AAAA\n"))
	f.Add([]byte("old 5\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\nx"))
	f.Add([]byte("old 05\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseAddRequest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("%q re-encodes as %q", b, r.Marshal())
		}
	})
}
