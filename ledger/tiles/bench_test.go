package tiles

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkServeTiles measures tile serving over real HTTP on loopback:
// clients in parallel fetch full level-0 hash tiles, full entry bundles
// (from the server's cache after the first read) and partial tiles. It
// reports requests/s and MB/s.
func BenchmarkServeTiles(b *testing.B) {
	const n = 100000
	l := newLog(b, n)
	srv := httptest.NewServer(NewHandler(Config{Source: l, Rate: -1}))
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	paths := []string{}
	for i := range n / 256 {
		paths = append(paths, fmt.Sprintf("/tile/0/%s", threeDigits(i)), fmt.Sprintf("/tile/entries/%s", threeDigits(i)))
	}
	paths = append(paths, "/tile/0/390.p/160", "/tile/entries/390.p/160", "/tile/1/001.p/134", "/checkpoint")
	for _, kind := range []struct {
		name  string
		pick  func(i int) string
		first int
	}{
		{"hash-tile", func(i int) string { return paths[(2*i)%(len(paths)-4)] }, 0},
		{"entry-bundle", func(i int) string { return paths[(2*i+1)%(len(paths)-4)] }, 0},
		{"partial-and-checkpoint", func(i int) string { return paths[len(paths)-4+i%4] }, 0},
	} {
		b.Run(kind.name, func(b *testing.B) {
			// Warm the server's cache: a first read of a bundle costs
			// its entries' disk reads (BenchmarkEntryBundleRead).
			for i := range len(paths) {
				resp, err := hc.Get(srv.URL + kind.pick(i))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			var bytes, ctr atomic.Int64
			b.SetParallelism(8)
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p := kind.pick(int(ctr.Add(1)))
					resp, err := hc.Get(srv.URL + p)
					if err != nil {
						b.Error(err)
						return
					}
					k, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("%s: %d", p, resp.StatusCode)
						return
					}
					bytes.Add(k)
				}
			})
			el := time.Since(start).Seconds()
			b.ReportMetric(float64(b.N)/el, "req/s")
			b.ReportMetric(float64(bytes.Load())/el/1e6, "MB/s")
		})
	}
}

// BenchmarkEntryBundleRead is the cost of a first read of a full entry
// bundle: 256 entries read from disk and checked against their leaves.
func BenchmarkEntryBundleRead(b *testing.B) {
	const n = 100000
	l := newLog(b, n)
	for i := 0; b.Loop(); i++ {
		if _, err := l.EntryBundle(uint64(i%(n/256)), 0); err != nil {
			b.Fatal(err)
		}
	}
}

func threeDigits(i int) string {
	s := fmt.Sprintf("%03d", i%1000)
	for i /= 1000; i > 0; i /= 1000 {
		s = fmt.Sprintf("x%03d/", i%1000) + s
	}
	return s
}

// BenchmarkRemoteInclusion measures a cold remote inclusion proof: a new
// client fetches and verifies the checkpoint (hybrid Ed25519 + ML-DSA-65),
// fetches the tiles the proof needs over HTTP, verifies them against the
// root and checks the proof, for a random entry of a 100,000-entry log.
func BenchmarkRemoteInclusion(b *testing.B) {
	const n = 100000
	l := newLog(b, n)
	srv := httptest.NewServer(NewHandler(Config{Source: l, Rate: -1}))
	defer srv.Close()
	key := logKey(b, "tiles test log").Public()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c, err := NewClient(ClientConfig{URL: srv.URL, Origin: origin, LogKey: key})
		if err != nil {
			b.Fatal(err)
		}
		cp, err := c.Checkpoint(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Inclusion(ctx, cp.Checkpoint, uint64(i*7919)%n); err != nil {
			b.Fatal(err)
		}
	}
}
