package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger"
)

// ledgerCluster is a test cluster whose servers each replicate a real
// ledger (its own directory, signed with the network's log key).
type ledgerCluster struct {
	*testCluster
	key     *identity.PrivateKey
	ledgers map[string]*ledger.Log
}

func newLedgerCluster(t testing.TB, n int, tune func(*RaftConfig)) *ledgerCluster {
	t.Helper()
	key, err := identity.Generate(rand.Reader)
	must(t, err)
	lc := &ledgerCluster{key: key, ledgers: map[string]*ledger.Log{}}
	lc.testCluster = newTestCluster(t, n, func(cfg *RaftConfig) {
		lc.openLedger(t, cfg)
		if tune != nil {
			tune(cfg)
		}
	})
	t.Cleanup(func() {
		for _, l := range lc.ledgers {
			_ = l.Close()
		}
	})
	return lc
}

// openLedger opens (reopens) a server's ledger beside its store.
func (lc *ledgerCluster) openLedger(t testing.TB, cfg *RaftConfig) {
	if old := lc.ledgers[cfg.ID]; old != nil {
		must(t, old.Close())
	}
	l, err := ledger.Open(ledger.Config{Dir: filepath.Join(cfg.Dir + "-ledger"), Origin: "test/ledger", LogKey: lc.key.Public(), Signer: lc.key})
	must(t, err)
	lc.ledgers[cfg.ID] = l
	cfg.Ledger = l
}

func entry(i int) []byte {
	b, err := (&ledger.Entry{Type: ledger.TypeAudit, Subject: fmt.Sprintf("s%d", i), Actor: "test", Data: []byte(`{}`)}).Encode()
	if err != nil {
		panic(err)
	}
	return b
}

// appendWith appends entries and writes a key in one transaction.
func appendWith(ctx context.Context, s Store, key string, leaves ...[]byte) (uint64, error) {
	var first uint64
	err := s.Update(ctx, func(tx Tx) error {
		lt, ok := tx.(LedgerTx)
		if !ok {
			return errors.New("not a LedgerTx")
		}
		var err error
		if first, err = lt.AppendLedger(leaves...); err != nil {
			return err
		}
		return tx.Put("k", key, []byte(fmt.Sprint(first)))
	})
	return first, err
}

// sameLedgers waits until every running server's ledger has size entries,
// then checks that their roots at every size are the same.
func (lc *ledgerCluster) sameLedgers(size uint64) {
	lc.t.Helper()
	eventually(lc.t, fmt.Sprintf("every ledger at %d entries", size), func() error {
		for _, nd := range lc.nodes {
			if nd.s == nil {
				continue
			}
			if got := lc.ledgers[nd.id].Size(); got != size {
				return fmt.Errorf("%s's ledger holds %d", nd.id, got)
			}
		}
		return nil
	})
	var want [][]byte
	for _, nd := range lc.nodes {
		if nd.s == nil {
			continue
		}
		l := lc.ledgers[nd.id]
		var roots [][]byte
		for n := uint64(1); n <= size; n++ {
			r, err := l.Root(n)
			must(lc.t, err)
			roots = append(roots, r)
		}
		if want == nil {
			want = roots
			continue
		}
		for i := range roots {
			if !bytes.Equal(roots[i], want[i]) {
				lc.t.Fatalf("%s's ledger root at size %d differs", nd.id, i+1)
			}
		}
	}
}

func TestRaftLedgerReplicated(t *testing.T) {
	ctx := context.Background()
	lc := newLedgerCluster(t, 3, nil)
	l := lc.leader()
	first, err := appendWith(ctx, l.s, "a", entry(0), entry(1))
	must(t, err)
	if first != 0 {
		t.Fatalf("first index %d", first)
	}
	first, err = appendWith(ctx, l.s, "b", entry(2))
	must(t, err)
	if first != 2 {
		t.Fatalf("first index %d", first)
	}
	// Acknowledged means in the leader's ledger at once.
	if got := lc.ledgers[l.id].Size(); got != 3 {
		t.Fatalf("leader's ledger holds %d after the acknowledgement", got)
	}
	lc.sameLedgers(3)
	lc.hasValue("k", "b", "2")

	// A failed transaction appends nothing.
	boom := errors.New("boom")
	err = l.s.Update(ctx, func(tx Tx) error {
		if _, err := tx.(LedgerTx).AppendLedger(entry(9)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	// Bad entries are refused before they reach the log.
	if _, err := appendWith(ctx, l.s, "c", nil); err == nil {
		t.Fatal("an empty ledger entry was taken")
	}
	if _, err := appendWith(ctx, l.s, "c", make([]byte, ledger.MaxEntrySize+1)); err == nil {
		t.Fatal("an oversized ledger entry was taken")
	}
	_, err = appendWith(ctx, l.s, "d", entry(3))
	must(t, err)
	lc.sameLedgers(4)

	// The single-server store has no replicated ledger.
	b, err := OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	must(t, err)
	defer func() { must(t, b.Close()) }()
	if _, err := appendWith(ctx, b, "x", entry(0)); err == nil {
		t.Fatal("bbolt store took ledger entries")
	}
}

func TestRaftLedgerFailover(t *testing.T) {
	ctx := context.Background()
	lc := newLedgerCluster(t, 3, func(cfg *RaftConfig) {
		cfg.SnapshotThreshold = 8
		cfg.TrailingLogs = 2
	})
	l := lc.leader()
	for i := range 5 {
		_, err := appendWith(ctx, l.s, fmt.Sprint(i), entry(i))
		must(t, err)
	}
	lc.sameLedgers(5)
	// The leader dies; a follower is down while the new leader appends
	// past a snapshot, then comes back and is sent it.
	lc.stop(l)
	nl := lc.leader()
	var down *testNode
	for _, nd := range lc.nodes {
		if nd != l && nd != nl {
			down = nd
		}
	}
	for i := 5; i < 10; i++ {
		eventually(t, "append on the new leader", func() error {
			_, err := appendWith(ctx, nl.s, fmt.Sprint(i), entry(i))
			return err
		})
	}
	lc.stop(down)
	// Alone: refused, nothing appended.
	eventually(t, "the minority refuses", func() error {
		if _, err := appendWith(ctx, nl.s, "x", entry(99)); !errors.Is(err, ErrNotLeader) {
			return fmt.Errorf("append on a minority: %v", err)
		}
		return nil
	})
	lc.start(l)
	lc.start(down)
	nl = lc.leader()
	for i := 10; i < 30; i++ {
		eventually(t, "append after healing", func() error {
			_, err := appendWith(ctx, nl.s, fmt.Sprint(i), entry(i))
			return err
		})
	}
	must(t, nl.s.Snapshot())
	// Appends whose outcome was unknown may be in the ledger: every server
	// holds the same one, whatever its size.
	size := lc.ledgers[nl.id].Size()
	if size < 30 {
		t.Fatalf("leader's ledger holds %d of at least 30 acknowledged entries", size)
	}
	lc.sameLedgers(size)

	// A server whose ledger and state are lost is rebuilt from the
	// snapshot and the log: the same ledger again.
	var lost *testNode
	for _, nd := range lc.nodes {
		if nd != nl {
			lost = nd
			break
		}
	}
	lc.stop(lost)
	must(t, lc.ledgers[lost.id].Close())
	delete(lc.ledgers, lost.id)
	must(t, removeAll(lost.dir, lost.dir+"-ledger"))
	must(t, nl.s.RemoveServer(ctx, lost.id))
	lc.start(lost)
	must(t, nl.s.AddVoter(ctx, lost.id, lost.addr))
	lc.sameLedgers(size)
	lc.hasValue("k", "29", fmt.Sprint(size-1))
}

func removeAll(dirs ...string) error {
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	return nil
}

// A server whose ledger holds other entries than the replicated log at the
// same indices stops applying (and says why) instead of appending after
// them.
func TestRaftLedgerDivergedRefused(t *testing.T) {
	key, err := identity.Generate(rand.Reader)
	must(t, err)
	l, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: "test/ledger", LogKey: key.Public(), Signer: key})
	must(t, err)
	defer func() { must(t, l.Close()) }()
	_, err = l.AppendRaw(context.Background(), entry(100))
	must(t, err)
	f := &fsm{ledger: l}
	appendLeaves := func(b *batch) error {
		p := leafPlan{size: l.Size(), next: l.Size()}
		if err := f.planLeaves(&p, b); err != nil {
			return err
		}
		if len(p.add) > 0 {
			_, err := l.AppendRaw(context.Background(), p.add...)
			return err
		}
		return nil
	}
	cases := []struct {
		name string
		b    batch
		want string
	}{
		{"other entry at the same index", batch{leafStart: 0, leaves: [][]byte{entry(0)}}, "diverged"},
		{"entries missing before the batch", batch{leafStart: 5, leaves: [][]byte{entry(5)}}, "missing"},
		{"the same entry again is skipped", batch{leafStart: 0, leaves: [][]byte{entry(100)}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := appendLeaves(&tc.b)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if l.Size() != 1 {
				t.Fatalf("ledger holds %d entries", l.Size())
			}
		})
	}
}

// failingLedger is a ledger whose appends fail while fail is set (a full
// or broken disk).
type failingLedger struct {
	Ledger
	fail atomic.Bool
}

func (l *failingLedger) AppendRaw(ctx context.Context, leaves ...[]byte) ([]uint64, error) {
	if l.fail.Load() {
		return nil, errors.New("no space left on device")
	}
	return l.Ledger.AppendRaw(ctx, leaves...)
}

// A server that cannot apply a committed batch (its disk failed) stops
// serving reads and refuses to snapshot, saying to restart it; the cluster
// goes on; after the restart it replays what it missed and holds the same
// state and ledger as the others. Nothing acknowledged is lost.
func TestRaftApplyFailureStopsAndRecovers(t *testing.T) {
	ctx := context.Background()
	wrapped := map[string]*failingLedger{}
	lc := newLedgerCluster(t, 3, func(cfg *RaftConfig) {
		fl := &failingLedger{Ledger: cfg.Ledger}
		wrapped[cfg.ID] = fl
		cfg.Ledger = fl
	})
	l := lc.leader()
	_, err := appendWith(ctx, l.s, "a", entry(0))
	must(t, err)
	lc.sameLedgers(1)
	var bad *testNode
	for _, nd := range lc.nodes {
		if nd != l {
			bad = nd
			break
		}
	}
	wrapped[bad.id].fail.Store(true)
	_, err = appendWith(ctx, l.s, "b", entry(1))
	must(t, err) // a quorum without the bad server
	eventually(t, "the bad server stops", func() error {
		if _, err := get(bad.s, "k", "a"); err == nil || !strings.Contains(err.Error(), "restart this server") {
			return fmt.Errorf("read on the failed server: %v", err)
		}
		return nil
	})
	if err := bad.s.Snapshot(); err == nil {
		t.Fatal("a server whose state stopped following the log made a snapshot")
	}
	_, err = appendWith(ctx, l.s, "c", entry(2))
	must(t, err)

	// Restarted (its disk fixed), it catches up.
	lc.stop(bad)
	lc.start(bad)
	lc.sameLedgers(3)
	lc.hasValue("k", "c", "2")
}
