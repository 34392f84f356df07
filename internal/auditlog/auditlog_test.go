package auditlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soulfra/calnet/api"
)

const testNet = "k7x2m4qpk7x2m4qpk7x2m4qpk7x2m4qp"

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func openTest(t *testing.T, dir string, cfg Config) *Log {
	t.Helper()
	cfg.Dir, cfg.Network = dir, testNet
	l, err := Open(cfg)
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

func ev(i int) api.Event {
	types := []string{"spawn.admitted", "cal.running", "cal.revoked", "token.created"}
	return api.Event{Time: t0.Add(time.Duration(i) * time.Minute), Type: types[i%4], Cal: fmt.Sprintf("c%03dabcdef", i%7), Actor: []string{"admin", "dev:alice"}[i%2], Reason: "r"}
}

func fill(t *testing.T, l *Log, from, n int) []api.AuditRecord {
	t.Helper()
	var out []api.AuditRecord
	for i := from; i < from+n; i++ {
		r, err := l.Append(ev(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSeqContinuesAcrossRestarts is reliability finding 13: the sequence
// number restarted at 1 after a restart. It now goes on, and so does the
// chain.
func TestSeqContinuesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Config{})
	recs := fill(t, l, 0, 5)
	if recs[0].Seq != 1 || recs[0].Prev != Genesis(testNet) || recs[4].Seq != 5 {
		t.Fatalf("first records: %+v", recs[0])
	}
	must(t, l.Close())
	l2 := openTest(t, dir, Config{})
	seq, head := l2.Head()
	if seq != 5 || head != recs[4].Hash {
		t.Fatalf("after reopen: head %d %s", seq, head)
	}
	r, _ := l2.Append(ev(5))
	if r.Seq != 6 || r.Prev != recs[4].Hash {
		t.Fatalf("the record after a restart: seq %d prev %s", r.Seq, r.Prev)
	}
	must(t, l2.Close())
	rep, err := Verify(context.Background(), dir, testNet, nil)
	if err != nil || !rep.OK || rep.Records != 6 || rep.LastSeq != 6 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// TestAppendIsDurableAndGroupCommitted: many concurrent appenders share
// fsyncs; Sync returns only once everything appended is on disk; a line a
// crash cut short is dropped at the next open.
func TestAppendIsDurableAndGroupCommitted(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Config{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := l.Append(ev(w*100 + i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, segName(1)))
	if n := bytes.Count(b, []byte("\n")); n != 800 {
		t.Fatalf("%d lines on disk after Sync, want 800", n)
	}
	must(t, l.Close())
	// A torn last line.
	f, err := os.OpenFile(filepath.Join(dir, segName(1)), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(`{"seq":801,"time":"2026-`)
	must(t, errors.Join(err, f.Close()))
	rep, _ := Verify(context.Background(), dir, testNet, nil)
	if !rep.OK || !rep.TornTail {
		t.Fatalf("a torn tail: %+v", rep)
	}
	l2 := openTest(t, dir, Config{})
	if seq, _ := l2.Head(); seq != 800 {
		t.Fatalf("after a torn line: seq %d", seq)
	}
	fill(t, l2, 900, 1)
	if rep, _ := Verify(context.Background(), dir, testNet, nil); !rep.OK || rep.TornTail || rep.Records != 801 {
		t.Fatalf("after reopening: %+v", rep)
	}
}

func TestRotationAndRetention(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Config{MaxSegment: 2000, KeepSegments: 3})
	recs := fill(t, l, 0, 60)
	segs, _ := listSegments(dir)
	if len(segs) != 3 {
		t.Fatalf("%d segments kept, want 3", len(segs))
	}
	for _, s := range segs {
		if s.size > 2000 {
			t.Fatalf("%s is %d bytes, over the segment size", s.path, s.size)
		}
	}
	anchors := []Anchor{{AnchorData{Seq: 3, Hash: recs[2].Hash}, 7}, {AnchorData{Seq: 59, Hash: recs[58].Hash}, 9}}
	rep, err := Verify(context.Background(), dir, testNet, anchors)
	if err != nil || !rep.OK || !rep.Pruned || rep.LastSeq != 60 || rep.FirstSeq != segs[0].first || rep.AnchorsChecked != 1 || rep.AnchorsBefore != 1 {
		t.Fatalf("verify after retention: %v %+v", err, rep)
	}
	// Queries see the kept segments, across their boundaries.
	p, err := l.Query(context.Background(), Query{After: segs[0].first, Limit: 1000})
	if err != nil || len(p.Records) != int(60-segs[0].first) || p.Records[0].Seq != segs[0].first+1 {
		t.Fatalf("query across segments: %v %d", err, len(p.Records))
	}
	must(t, l.Close())
	l2 := openTest(t, dir, Config{MaxSegment: 2000, KeepSegments: 3})
	if seq, h := l2.Head(); seq != 60 || h != recs[59].Hash {
		t.Fatal("reopen after rotation")
	}
}

func TestQuery(t *testing.T) {
	l := openTest(t, t.TempDir(), Config{})
	fill(t, l, 0, 40)
	ctx := context.Background()
	tests := []struct {
		name  string
		q     Query
		seqs  []uint64 // first and last, and count
		count int
		more  bool
	}{
		{"newest page", Query{Limit: 5}, []uint64{36, 40}, 5, true},
		{"all", Query{}, []uint64{1, 40}, 40, false},
		{"after", Query{After: 10, Limit: 3}, []uint64{11, 13}, 3, true},
		{"before", Query{Before: 10, Limit: 3}, []uint64{7, 9}, 3, true},
		{"since and until", Query{Since: t0.Add(10 * time.Minute), Until: t0.Add(20 * time.Minute)}, []uint64{11, 20}, 10, false},
		{"actor", Query{Actor: "dev:alice"}, []uint64{2, 40}, 20, false},
		{"type", Query{Type: "cal.revoked"}, []uint64{3, 39}, 10, false},
		{"type prefix", Query{Type: "cal."}, []uint64{2, 39}, 20, false},
		{"cal prefix", Query{Cal: "c003abc"}, []uint64{4, 39}, 6, false},
		{"everything at once", Query{Actor: "admin", Type: "spawn.", Since: t0.Add(4 * time.Minute), Limit: 2}, []uint64{33, 37}, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := l.Query(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Records) != tt.count || p.More != tt.more || p.HeadSeq != 40 {
				t.Fatalf("%d records, more %v, head %d", len(p.Records), p.More, p.HeadSeq)
			}
			if p.Records[0].Seq != tt.seqs[0] || p.Records[len(p.Records)-1].Seq != tt.seqs[1] {
				t.Fatalf("seqs %d..%d", p.Records[0].Seq, p.Records[len(p.Records)-1].Seq)
			}
		})
	}
	for _, q := range []Query{{Limit: MaxQueryLimit + 1}, {Cal: "ab"}, {After: 1, Before: 2}, {Since: t0, Until: t0}} {
		if _, err := l.Query(ctx, q); err == nil {
			t.Errorf("query %+v accepted", q)
		}
	}
}

// TestVerifyDetects: every way of changing the trail is found and named;
// a rewrite that recomputes every hash after an edit is found by the
// ledger anchor past it.
func TestVerifyDetects(t *testing.T) {
	lines := func(t *testing.T, dir string) [][]byte {
		b, err := os.ReadFile(filepath.Join(dir, segName(1)))
		must(t, err)
		return bytes.SplitAfter(b, []byte("\n"))[:10]
	}
	write := func(t *testing.T, dir string, ls [][]byte) {
		must(t, os.WriteFile(filepath.Join(dir, segName(1)), bytes.Join(ls, nil), 0o600))
	}
	reencode := func(ls [][]byte, from int) {
		// Recompute each line's prev and hash from line from on, as an
		// attacker without the ledger key can.
		var prev string
		for i := range ls {
			rec, _, _ := decode(bytes.TrimSuffix(ls[i], []byte("\n")))
			if i >= from {
				rec.Prev = prev
				b, _ := encode(&rec)
				ls[i] = append(b, '\n')
			}
			prev = rec.Hash
		}
	}
	tests := []struct {
		name   string
		change func(ls [][]byte) [][]byte
		want   string
	}{
		{"an edited line", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`"actor":"admin"`), []byte(`"actor":"nobody"`), 1)
			return ls
		}, ":5 (seq 5): the line's hash does not match its content: it was edited"},
		{"an edited line with its hash recomputed", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`"actor":"admin"`), []byte(`"actor":"nobody"`), 1)
			reencode(ls[:5], 4)
			return ls
		}, ":6 (seq 6): prev is not the hash of seq 5 before it"},
		{"the chain rewritten after an edit", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`"actor":"admin"`), []byte(`"actor":"nobody"`), 1)
			reencode(ls, 4)
			return ls
		}, "(seq 8): the ledger anchored this seq with hash"},
		{"a removed line", func(ls [][]byte) [][]byte { return append(ls[:3], ls[4:]...) }, ":4 (seq 5): seq 5 follows seq 3: 1 records were removed"},
		{"two lines swapped", func(ls [][]byte) [][]byte { ls[3], ls[4] = ls[4], ls[3]; return ls }, ":4 (seq 5): seq 5 follows seq 3"},
		{"cut back past an anchor", func(ls [][]byte) [][]byte { return ls[:6] }, "the ledger anchored seq 8 (entry 42) but the trail ends at seq 6"},
		{"not a record", func(ls [][]byte) [][]byte { ls[2] = []byte("hello\n"); return ls }, ":3: not an audit record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTest(t, dir, Config{})
			recs := fill(t, l, 0, 10)
			must(t, l.Close())
			anchors := []Anchor{{AnchorData{Seq: 8, Hash: recs[7].Hash}, 42}}
			if rep, _ := Verify(context.Background(), dir, testNet, anchors); !rep.OK {
				t.Fatalf("intact trail: %+v", rep.Problems)
			}
			write(t, dir, tt.change(lines(t, dir)))
			rep, err := Verify(context.Background(), dir, testNet, anchors)
			if err != nil {
				t.Fatal(err)
			}
			var all []string
			for _, p := range rep.Problems {
				all = append(all, p.String())
			}
			if rep.OK || !strings.Contains(strings.Join(all, "\n"), tt.want) {
				t.Fatalf("problems %q, want %q", all, tt.want)
			}
		})
	}
	// Another network's trail does not verify as this one's.
	dir := t.TempDir()
	l := openTest(t, dir, Config{})
	fill(t, l, 0, 2)
	must(t, l.Close())
	if rep, _ := Verify(context.Background(), dir, "other", nil); rep.OK {
		t.Fatal("a trail verified for another network")
	}
}

func TestLongReasonIsCut(t *testing.T) {
	l := openTest(t, t.TempDir(), Config{})
	e := ev(1)
	e.Reason = strings.Repeat("x", 2*MaxLine)
	r, err := l.Append(e)
	if err != nil || !strings.HasSuffix(r.Reason, "[cut]") {
		t.Fatalf("long reason: %v", err)
	}
	must(t, l.Sync(context.Background()))
	if p, _ := l.Query(context.Background(), Query{}); len(p.Records) != 1 || p.Records[0].Hash != r.Hash {
		t.Fatal("the cut record does not read back")
	}
}

func FuzzDecode(f *testing.F) {
	rec := api.AuditRecord{Event: ev(3), Prev: Genesis(testNet)}
	rec.Seq = 4
	line, _ := encode(&rec)
	f.Add(line)
	f.Add([]byte(`{"seq":1,"time":"2026-12-01T10:00:00Z","type":"x","prev":"` + strings.Repeat("0", 64) + `","hash":"` + strings.Repeat("0", 64) + `"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, ok, err := decode(b)
		if err != nil || !ok {
			return
		}
		// A line whose hash checks out re-encodes to itself.
		again, err := encode(&rec)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %q\nfrom %q", again, b)
		}
	})
}

// TestSkippedEventsAreDeclared: events published while the disk is below
// the control plane's reserve are not written, but their sequence numbers
// are used (the event stream carries them), and the trail declares the gap
// in an audit.dropped record that verifies; an undeclared gap does not.
func TestSkippedEventsAreDeclared(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Config{})
	fill(t, l, 0, 3)
	if e := l.Skip(ev(3), "disk: below the reserve"); e.Seq != 4 {
		t.Fatalf("skipped seq %d", e.Seq)
	}
	l.Skip(ev(4), "disk: below the reserve")
	recs := fill(t, l, 5, 1)
	if recs[0].Seq != 7 {
		t.Fatalf("the event after the gap has seq %d, want 7", recs[0].Seq)
	}
	p, _ := l.Query(context.Background(), Query{Type: TypeDropped})
	if len(p.Records) != 1 || p.Records[0].Seq != 6 || fmt.Sprint(p.Records[0].Dropped) != "[4 5]" || !strings.Contains(p.Records[0].Reason, "2 events were published but not written: disk") {
		t.Fatalf("the declaration: %+v", p.Records)
	}
	must(t, l.Close())
	rep, _ := Verify(context.Background(), dir, testNet, nil)
	if !rep.OK || rep.Dropped != 2 || rep.LastSeq != 7 {
		t.Fatalf("verify with a declared gap: %+v", rep)
	}
	// Removing the line before the declaration is still a removal.
	b, _ := os.ReadFile(filepath.Join(dir, segName(1)))
	ls := bytes.SplitAfter(b, []byte("\n"))
	must(t, os.WriteFile(filepath.Join(dir, segName(1)), bytes.Join(append(ls[:2:2], ls[3:]...), nil), 0o600))
	if rep, _ := Verify(context.Background(), dir, testNet, nil); rep.OK {
		t.Fatal("a removed line before a declared gap went unnoticed")
	}
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
