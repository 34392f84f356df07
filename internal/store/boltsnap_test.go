package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestBoltSnapshot: the view is the state when it was taken (a write after
// it is closed is not in its copy), and RestoreBolt brings exactly that
// view back. (No write runs while the view is open: bbolt's writer waits
// for open views when it grows the file, see Snapshot.)
func TestBoltSnapshot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenBolt(filepath.Join(dir, "state.db"))
	must(t, err)
	defer func() { must(t, s.Close()) }()
	must(t, s.Update(ctx, func(tx Tx) error { return tx.Put("b", "k", []byte("before")) }))
	snap, err := s.Snapshot(ctx)
	must(t, err)
	must(t, snap.View(func(tx Tx) error {
		v, err := tx.Get("b", "k")
		if err != nil || string(v) != "before" {
			t.Fatalf("view sees %q %v", v, err)
		}
		return nil
	}))
	var buf bytes.Buffer
	n, err := snap.WriteTo(&buf)
	must(t, err)
	if n != snap.Size() || int64(buf.Len()) != n {
		t.Fatalf("wrote %d, size %d, buffer %d", n, snap.Size(), buf.Len())
	}
	idx := snap.Index()
	must(t, snap.Close())
	must(t, s.Update(ctx, func(tx Tx) error { return tx.Put("b", "k", []byte("after")) }))

	out := filepath.Join(dir, "restored.db")
	got, err := RestoreBolt(ctx, out, bytes.NewReader(buf.Bytes()), n)
	must(t, err)
	if got != idx {
		t.Fatalf("restored index %d, snapshot index %d", got, idx)
	}
	r, err := OpenBolt(out)
	must(t, err)
	must(t, r.View(ctx, func(tx Tx) error {
		v, err := tx.Get("b", "k")
		if err != nil || string(v) != "before" {
			t.Fatalf("restored %q %v", v, err)
		}
		return nil
	}))
	must(t, r.Close())

	// A restore never overwrites, and a short or damaged copy is refused
	// and leaves nothing behind.
	if _, err := RestoreBolt(ctx, out, bytes.NewReader(buf.Bytes()), n); !errors.Is(err, os.ErrExist) {
		t.Fatalf("restore over an existing file: %v", err)
	}
	short := filepath.Join(dir, "short.db")
	if _, err := RestoreBolt(ctx, short, bytes.NewReader(buf.Bytes()[:n/2]), n); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short copy: %v", err)
	}
	garbage := bytes.Repeat([]byte{0x5a}, int(n))
	if _, err := RestoreBolt(ctx, short, bytes.NewReader(garbage), n); err == nil {
		t.Fatal("a file of garbage restored")
	}
	if _, err := os.Stat(short); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore left %s: %v", short, err)
	}
}
