package ledger

import (
	"context"
	"sync"
	"testing"
)

// TestStageThenWait: staged entries take their places at once, in staging
// order; one Wait makes every entry staged before it durable (one commit
// shared); they survive a reopen.
func TestStageThenWait(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, true)
	ctx := context.Background()
	var staged []*Staged
	for i := range 5 {
		st, err := l.Stage(testEntry(i))
		if err != nil {
			t.Fatal(err)
		}
		if st.Indices[0] != uint64(i) {
			t.Fatalf("entry %d staged at %d", i, st.Indices[0])
		}
		staged = append(staged, st)
	}
	if l.Size() != 0 {
		t.Fatalf("%d entries durable before any Wait", l.Size())
	}
	if err := staged[4].Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Size() != 5 {
		t.Fatalf("after waiting for the last: %d durable, want 5", l.Size())
	}
	for _, st := range staged[:4] {
		if err := st.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Concurrent stagers each see their own entries durable.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			st, err := l.Stage(testEntry(100 + i))
			if err == nil {
				err = st.Wait(ctx)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	must(t, l.Close())
	l = openLog(t, dir, false)
	closeAtEnd(t, l)
	if l.Size() != 25 {
		t.Fatalf("reopened with %d entries, want 25", l.Size())
	}
	for i := range 5 {
		b, err := l.Entry(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := func() ([]byte, error) { e := testEntry(i); return e.Encode() }()
		if string(b) != string(want) {
			t.Fatalf("entry %d: got %s", i, b)
		}
	}
}
