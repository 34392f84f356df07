package ledger

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// tileLog returns a log of n test entries.
func tileLog(t *testing.T, n int) *Log {
	t.Helper()
	l := openLog(t, t.TempDir(), true)
	var batch []Entry
	for i := range n {
		batch = append(batch, testEntry(i))
		if len(batch) == 1000 || i == n-1 {
			if _, err := l.Append(context.Background(), batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return l
}

// storedHashes is every stored hash of a tree in x/mod/sumdb/tlog's
// numbering, computed by tlog from the leaf hashes alone: a reference
// independent of the log's tile code.
type storedHashes []tlog.Hash

func newStoredHashes(t *testing.T, leaves []tlog.Hash) storedHashes {
	var all storedHashes
	for i, l := range leaves {
		hs, err := tlog.StoredHashesForRecordHash(int64(i), l, all)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, hs...)
	}
	return all
}

func (s storedHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for k, x := range idx {
		out[k] = s[x]
	}
	return out, nil
}

// TestTileHashesMatchTlog checks every tile the log serves against the
// tiles x/mod/sumdb/tlog computes from the same leaves.
func TestTileHashesMatchTlog(t *testing.T) {
	const n = 70000 // three levels: 273 full level-0 tiles, a level-1 tile, a level-2 one
	l := tileLog(t, n)
	var leaves []tlog.Hash
	for i := range uint64(n) {
		p, err := l.Inclusion(i, 0)
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, tlog.Hash(p.LeafHash))
	}
	ref := newStoredHashes(t, leaves)
	for _, tile := range tlog.NewTiles(TileHeight, 0, n) {
		want, err := tlog.ReadTileData(tile, ref)
		if err != nil {
			t.Fatal(err)
		}
		w := tile.W
		if w == TileWidth {
			w = 0
		}
		got, err := l.TileHashes(tile.L, uint64(tile.N), w)
		if err != nil {
			t.Fatalf("tile %v: %v", tile.Path(), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("tile %v differs from tlog's", tile.Path())
		}
	}
	root, _ := l.Root(n)
	th, err := tlog.TreeHash(n, ref)
	if err != nil || !bytes.Equal(th[:], root) {
		t.Fatalf("tree hash %x, root %x (%v)", th, root, err)
	}
}

func TestTileRequestsBeyondTheTree(t *testing.T) {
	l := tileLog(t, 300)
	tests := []struct {
		name         string
		level        int
		index        uint64
		width, wantN int
	}{
		{"full level 0", 0, 0, 0, 256 * 32},
		{"partial level 0", 0, 1, 44, 44 * 32},
		{"partial within a full tile", 0, 0, 3, 3 * 32},
		{"partial level 1", 1, 0, 1, 32},
		{"partial wider than the tree", 0, 1, 45, -1},
		{"full tile not yet full", 0, 1, 0, -1},
		{"index beyond", 0, 5, 1, -1},
		{"level beyond the tree", 2, 0, 1, -1},
		{"level beyond the limit", 8, 0, 1, -1},
		{"negative level", -1, 0, 1, -1},
		{"width 256", 0, 0, 256, -1},
		{"huge index", 0, 1 << 62, 1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := l.TileHashes(tt.level, tt.index, tt.width)
			if tt.wantN < 0 {
				if !errors.Is(err, ErrNoTile) {
					t.Fatalf("err = %v, want ErrNoTile", err)
				}
				return
			}
			if err != nil || len(b) != tt.wantN {
				t.Fatalf("len = %d, err = %v; want %d bytes", len(b), err, tt.wantN)
			}
		})
	}
}

func TestEntryBundleRoundTrip(t *testing.T) {
	l := tileLog(t, 300)
	b, err := l.EntryBundle(1, 44)
	if err != nil {
		t.Fatal(err)
	}
	es, err := ParseEntryBundle(b, 44)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		want, _ := l.Entry(256 + uint64(i))
		if !bytes.Equal(e, want) {
			t.Fatalf("entry %d differs", i)
		}
	}
	if _, err := l.EntryBundle(1, 0); !errors.Is(err, ErrNoTile) {
		t.Fatalf("full bundle of a partial tile: %v", err)
	}
	bad := []struct {
		name string
		b    []byte
		want int
	}{
		{"truncated length", b[:1], 44},
		{"truncated entry", b[:len(b)-1], 44},
		{"fewer entries", b, 45},
		{"trailing bytes", append(append([]byte(nil), b...), 0, 0), 44},
		{"width 0", b, 0},
	}
	for _, tt := range bad {
		if _, err := ParseEntryBundle(tt.b, tt.want); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func FuzzParseEntryBundle(f *testing.F) {
	f.Add([]byte{0, 1, 'x', 0, 0}, 2)
	f.Add([]byte{0xff, 0xff}, 1)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		es, err := ParseEntryBundle(b, want)
		if err != nil {
			return
		}
		if len(es) != want {
			t.Fatalf("%d entries, want %d", len(es), want)
		}
		var re []byte
		for _, e := range es {
			re = append(re, byte(len(e)>>8), byte(len(e)))
			re = append(re, e...)
		}
		if !bytes.Equal(re, b) {
			t.Fatal("bundle does not re-encode to its bytes")
		}
	})
}
