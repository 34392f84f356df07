package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// benchEntry is a typical small event (~120 bytes encoded).
func benchEntry(i int) []byte {
	b, _ := json.Marshal(Entry{Type: TypeSpawn, Time: time.Unix(1767225600, 0).UTC(), Subject: fmt.Sprintf("k7x2m4qp%024d", i), Actor: "admin"})
	return b
}

// BenchmarkAppendDurable measures durable appends per second: each Append
// returns only after fsync and a signed checkpoint cover its entry.
// Concurrent writers share commits (group commit), as control-plane
// requests do.
func BenchmarkAppendDurable(b *testing.B) {
	for _, writers := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l := openLog(b, b.TempDir(), true)
			ctx := context.Background()
			start := time.Now()
			var wg sync.WaitGroup
			per := b.N/writers + 1
			for w := range writers {
				wg.Go(func() {
					for i := range per {
						if _, err := l.AppendRaw(ctx, benchEntry(w*per+i)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*writers)/time.Since(start).Seconds(), "appends/s")
		})
	}
}

// BenchmarkAppendBatch measures durable appends in batches of 1,000 from
// one writer.
func BenchmarkAppendBatch(b *testing.B) {
	l := openLog(b, b.TempDir(), true)
	ctx := context.Background()
	batch := make([][]byte, 1000)
	start := time.Now()
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = benchEntry(n)
			n++
		}
		if _, err := l.AppendRaw(ctx, batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "appends/s")
}

var (
	bigOnce sync.Once
	bigLog  *Log
	bigErr  error
)

const bigSize = 1_000_000

// millionLog builds (once per run) a log of 1,000,000 entries.
func millionLog(b *testing.B) *Log {
	bigOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			bigErr = err
			return
		}
		k := testKey(b)
		bigLog, bigErr = Open(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k})
		if bigErr != nil {
			return
		}
		batch := make([][]byte, MaxBatch)
		for n := 0; n < bigSize; {
			for i := range batch {
				batch[i] = benchEntry(n + i)
			}
			if _, bigErr = bigLog.AppendRaw(context.Background(), batch...); bigErr != nil {
				return
			}
			n += len(batch)
		}
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigLog
}

// BenchmarkInclusionProof1M generates inclusion proofs in a log of 1M entries.
func BenchmarkInclusionProof1M(b *testing.B) {
	l := millionLog(b)
	i := uint64(0)
	for b.Loop() {
		if _, err := l.Inclusion(i%bigSize, 0); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}

// BenchmarkVerifyInclusion1M verifies an inclusion proof of a 1M-entry log.
func BenchmarkVerifyInclusion1M(b *testing.B) {
	l := millionLog(b)
	p, err := l.Inclusion(123_457, 0)
	if err != nil {
		b.Fatal(err)
	}
	root := l.Checkpoint().Root
	for b.Loop() {
		if err := p.Verify(root); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConsistencyProof1M generates and verifies a consistency proof
// between 500,000 and 1,000,000 entries.
func BenchmarkConsistencyProof1M(b *testing.B) {
	l := millionLog(b)
	oldRoot, _ := l.Root(bigSize / 2)
	root := l.Checkpoint().Root
	for b.Loop() {
		p, err := l.Consistency(bigSize/2+1, 0)
		if err != nil {
			b.Fatal(err)
		}
		_ = p
	}
	p, _ := l.Consistency(bigSize/2, 0)
	if err := p.Verify(oldRoot, root); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkVerifyCheckpoint verifies a signed checkpoint (both signatures).
func BenchmarkVerifyCheckpoint(b *testing.B) {
	k := testKey(b)
	note, _ := signCheckpoint(testOrigin, 3, make([]byte, 32), k)
	for b.Loop() {
		if _, err := VerifyCheckpoint(note, testOrigin, k.Public()); err != nil {
			b.Fatal(err)
		}
	}
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "calnet-ledger-bench-") }

// BenchmarkDiskPerEntry reports the bytes on disk per entry (all of the
// log's files) for one writer appending one ~107-byte entry per commit, the
// worst case for checkpoint overhead.
func BenchmarkDiskPerEntry(b *testing.B) {
	dir := b.TempDir()
	l := openLog(b, dir, true)
	ctx := context.Background()
	n := 0
	for b.Loop() {
		if _, err := l.AppendRaw(ctx, benchEntry(n)); err != nil {
			b.Fatal(err)
		}
		n++
	}
	var total int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
	}
	b.ReportMetric(float64(total)/float64(n), "disk-B/entry")
	b.ReportMetric(float64(len(benchEntry(0))), "entry-B")
}
