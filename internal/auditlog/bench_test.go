package auditlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppend is the cost an event adds to its publisher (the spawn
// path): encoding, hashing and queueing; the disk is the writer's.
func BenchmarkAppend(b *testing.B) {
	l, err := Open(Config{Dir: b.TempDir(), Network: testNet})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { must(b, l.Close()) }()
	i := 0
	for b.Loop() {
		if _, err := l.Append(ev(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	must(b, l.Sync(context.Background()))
	b.ReportMetric(float64(i)/float64(l.syncs.Load()), "lines/fsync")
}

// BenchmarkAppendDurable: writers each append an event and wait until it
// is on disk, as a caller that needs durability would; group commit shares
// fsyncs among them.
func BenchmarkAppendDurable(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := Open(Config{Dir: b.TempDir(), Network: testNet})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { must(b, l.Close()) }()
			per := b.N/writers + 1
			start := time.Now()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range per {
						if _, err := l.Append(ev(w*per + i)); err != nil {
							b.Error(err)
							return
						}
						if err := l.Sync(context.Background()); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*writers)/time.Since(start).Seconds(), "lines/s")
			b.ReportMetric(float64(per*writers)/float64(l.syncs.Load()), "lines/fsync")
		})
	}
}

// BenchmarkFsyncPerLine is the baseline: write a line and fsync it, one at
// a time, as a naive durable log would on the spawn path.
func BenchmarkFsyncPerLine(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "x"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line := make([]byte, 250)
	line[249] = '\n'
	for b.Loop() {
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		must(b, f.Sync())
	}
}
