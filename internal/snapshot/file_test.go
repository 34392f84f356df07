package snapshot

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWriteFile: the file appears complete and 0600, or not at all; a
// failed write leaves the file that was there and no temporary file.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.snapshot")
	must(t, WriteFile(p, func(w io.Writer) error { _, err := w.Write([]byte("one")); return err }))
	fi, err := os.Stat(p)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	boom := errors.New("disk full")
	if err := WriteFile(p, func(w io.Writer) error { _, _ = w.Write([]byte("tw")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed write: %v", err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "one" {
		t.Fatalf("the earlier file: %q %v", b, err)
	}
	ents, err := os.ReadDir(dir)
	must(t, err)
	if len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// TestPrune keeps the newest retain snapshots of the prefix, and nothing
// else is touched.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	names := []string{"calnet-n-20260101T000000.000Z.snapshot", "calnet-n-20260102T000000.000Z.snapshot", "calnet-n-20260103T000000.000Z.snapshot", "calnet-other-20250101T000000.000Z.snapshot", "notes.txt"}
	for _, n := range names {
		must(t, os.WriteFile(filepath.Join(dir, n), nil, 0o600))
	}
	removed, err := Prune(dir, "calnet-n-", 2)
	must(t, err)
	if !slices.Equal(removed, names[:1]) {
		t.Fatalf("removed %v", removed)
	}
	ents, err := os.ReadDir(dir)
	must(t, err)
	if len(ents) != 4 {
		t.Fatalf("left %v", ents)
	}
	if _, err := Prune(dir, "calnet-n-", 0); err == nil {
		t.Fatal("retain 0 accepted")
	}
}
