package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger"
)

// The benchmarks compare durable writes on the single embedded bbolt
// store with the same writes through a 3-server Raft cluster over mutual
// TLS on loopback (all on one machine: every server's fsyncs share one
// disk). Results are in BENCHMARKS.md.

var benchValue = make([]byte, 256)

func benchStores(b *testing.B, fn func(b *testing.B, s Store)) {
	b.Run("bolt", func(b *testing.B) {
		s, err := OpenBolt(filepath.Join(b.TempDir(), "state.db"))
		must(b, err)
		defer func() { must(b, s.Close()) }()
		fn(b, s)
	})
	b.Run("raft3", func(b *testing.B) {
		c := newTestCluster(b, 3, nil)
		fn(b, c.leader().s)
	})
}

// BenchmarkStoreUpdate: one writer, one small put per transaction.
func BenchmarkStoreUpdate(b *testing.B) {
	benchStores(b, func(b *testing.B, s Store) {
		ctx := context.Background()
		i := 0
		for b.Loop() {
			i++
			must(b, s.Update(ctx, func(tx Tx) error { return tx.Put("bench", fmt.Sprint(i), benchValue) }))
		}
	})
}

// BenchmarkStoreUpdateParallel: 16 concurrent writers.
func BenchmarkStoreUpdateParallel(b *testing.B) {
	benchStores(b, func(b *testing.B, s Store) {
		ctx := context.Background()
		var n atomic.Int64
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := fmt.Sprint(n.Add(1))
				must(b, s.Update(ctx, func(tx Tx) error { return tx.Put("bench", k, benchValue) }))
			}
		})
	})
}

// BenchmarkLedgerAppend: one ledger entry per durable append, 16
// concurrent appenders: the ledger alone (group commit) against the
// ledger replicated through Raft (one entry and its state write per
// transaction).
func BenchmarkLedgerAppend(b *testing.B) {
	e := ledger.Entry{Type: ledger.TypeAudit, Subject: "bench", Actor: "bench", Data: []byte(`{"bench":true}`)}
	leaf, err := e.Encode()
	must(b, err)
	b.Run("ledger", func(b *testing.B) {
		key, err := identity.Generate(rand.Reader)
		must(b, err)
		l, err := ledger.Open(ledger.Config{Dir: b.TempDir(), Origin: "bench/ledger", LogKey: key.Public(), Signer: key})
		must(b, err)
		defer func() { must(b, l.Close()) }()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.AppendRaw(context.Background(), leaf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("raft3", func(b *testing.B) {
		lc := newLedgerCluster(b, 3, nil)
		s := lc.leader().s
		var n atomic.Int64
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := appendWith(context.Background(), s, fmt.Sprint(n.Add(1)), leaf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
