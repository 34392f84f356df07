package snapshot

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// FuzzReader feeds arbitrary payloads (as if decrypted) to the decoder:
// it never panics, never returns an item beyond its limits, and anything
// it refuses wraps ErrCorrupt.
func FuzzReader(f *testing.F) {
	var good bytes.Buffer
	m := &Manifest{Format: Format, Network: "net", Origin: "origin", CreatedAt: time.Unix(1, 0), Ledger: LedgerHead{Size: 2, Root: string(bytes.Repeat([]byte("ab"), 32))}, Store: StoreView{Index: 1, Size: 3}}
	sw, err := NewWriter(&good, m)
	if err != nil {
		f.Fatal(err)
	}
	must(f, sw.File("network/network.json", 0o644, 2, bytes.NewReader([]byte("{}"))))
	must(f, sw.CalFile("abcd", "identity.key", []byte("k")))
	must(f, sw.State(3, bytes.NewReader([]byte("abc"))))
	must(f, sw.Ledger(0, [][]byte{[]byte("e0"), []byte("e1")}))
	must(f, sw.Checkpoint([]byte("note")))
	must(f, sw.Close())
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:len(good.Bytes())/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, m, err := NewReader(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("refusal not ErrCorrupt: %v", err)
			}
			return
		}
		if m.Validate() != nil {
			t.Fatal("an invalid manifest accepted")
		}
		for range MaxItems + 1 {
			it, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("refusal not ErrCorrupt: %v", err)
				}
				return
			}
			if it.Kind == KindCalFile && it.Size > MaxCalFile || it.Kind == KindLedger && uint64(len(it.Entries)) > m.Ledger.Size {
				t.Fatalf("item over its limits: %+v", it)
			}
			if _, err := io.Copy(io.Discard, it); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read error not ErrCorrupt: %v", err)
			}
		}
		t.Fatal("more items than MaxItems")
	})
}

// TestReaderRoundTrip: what Writer writes, Reader reads back in order.
func TestReaderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	m := &Manifest{Format: Format, Network: "net", Origin: "origin", CreatedAt: time.Unix(1, 0), Ledger: LedgerHead{Size: 2, Root: string(bytes.Repeat([]byte("ab"), 32))}, Store: StoreView{Index: 1, Size: 3}}
	sw, err := NewWriter(&buf, m)
	must(t, err)
	must(t, sw.File("network/b", 0o600, 1, bytes.NewReader([]byte("b"))))
	if err := sw.File("network/a", 0o600, 1, bytes.NewReader([]byte("a"))); err == nil {
		t.Fatal("an item out of order was written")
	}
	var w2 bytes.Buffer
	sw, err = NewWriter(&w2, m)
	must(t, err)
	if err := sw.File("../etc/passwd", 0o600, 1, bytes.NewReader([]byte("x"))); err == nil {
		t.Fatal("a path out of the data directory was written")
	}
	if err := sw.Checkpoint([]byte("n")); err != nil {
		t.Fatal(err)
	}
	// The end marker of a snapshot without state refuses at read.
	must(t, sw.Close())
	r, _, err := NewReader(&w2)
	must(t, err)
	if _, err := r.Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a snapshot without state: %v", err)
	}
}
