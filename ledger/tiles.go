package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// C2SP tlog-tiles: the tree is cut into tiles of height TileHeight. The
// tile at level L and index N holds, back to back, the hashes at tree level
// L*TileHeight from N*TileWidth on: up to TileWidth hashes of 32 bytes. An
// entry bundle (level "entries") holds the entries N*TileWidth onwards,
// each as a big-endian uint16 length and the bytes.
const (
	// TileHeight is the height of every tile (C2SP tlog-tiles fixes 8).
	TileHeight = 8
	// TileWidth is the number of hashes or entries in a full tile.
	TileWidth = 1 << TileHeight
	// MaxTileLevel is the highest tile level of a tree of up to 2^63
	// entries.
	MaxTileLevel = 7
	// MaxBundleEntrySize is the largest entry an entry bundle can carry
	// (its length is a uint16).
	MaxBundleEntrySize = 1<<16 - 1
)

// ErrNoTile is returned for a tile the tree does not (yet) hold.
var ErrNoTile = errors.New("no such tile")

// tileWidth checks a tile request against the number of nodes n available
// at the tile's level and returns how many hashes or entries it holds.
// width 0 asks for the full tile.
func tileWidth(index uint64, width int, n uint64) (int, error) {
	if width < 0 || width >= TileWidth {
		return 0, fmt.Errorf("%w: partial width %d: want 1..%d", ErrNoTile, width, TileWidth-1)
	}
	if index > (n / TileWidth) {
		return 0, fmt.Errorf("%w: index %d is beyond the tree", ErrNoTile, index)
	}
	have := n - index*TileWidth
	want := uint64(width)
	if width == 0 {
		want = TileWidth
	}
	if have < want {
		return 0, fmt.Errorf("%w: the tree holds %d of the %d wanted", ErrNoTile, have, want)
	}
	return int(want), nil
}

// TileHashes returns the hash tile at level (0..MaxTileLevel) and index:
// full when width is 0, else its first width (1..255) hashes. Only what the
// latest checkpoint covers is served; a full tile never changes once the
// tree holds it, and a partial one is a prefix of it.
func (l *Log) TileHashes(level int, index uint64, width int) ([]byte, error) {
	if level < 0 || level > MaxTileLevel {
		return nil, fmt.Errorf("%w: level %d: want 0..%d", ErrNoTile, level, MaxTileLevel)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := level * TileHeight
	if k >= len(l.tree.levels) {
		return nil, fmt.Errorf("%w: level %d is beyond the tree", ErrNoTile, level)
	}
	// Nodes at tree level k that the latest checkpoint covers (the tree in
	// memory may hold staged entries beyond it).
	n := l.durable >> uint(k)
	w, err := tileWidth(index, width, n)
	if err != nil {
		return nil, err
	}
	start := index * TileWidth * 32
	return append([]byte(nil), l.tree.levels[k][start:start+uint64(w)*32]...), nil
}

// EntryBundle returns the entry bundle at index: full when width is 0,
// else its first width (1..255) entries, each read from disk and checked
// against its leaf hash.
func (l *Log) EntryBundle(index uint64, width int) ([]byte, error) {
	w, err := tileWidth(index, width, l.Size())
	if err != nil {
		return nil, err
	}
	var out []byte
	for i := range uint64(w) {
		e, err := l.Entry(index*TileWidth + i)
		if err != nil {
			return nil, err
		}
		if len(e) > MaxBundleEntrySize {
			return nil, fmt.Errorf("entry %d: %d bytes, over the entry bundle's limit of %d", index*TileWidth+i, len(e), MaxBundleEntrySize)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out, nil
}

// ParseEntryBundle splits an entry bundle into its entries. want is the
// number of entries expected (the tile's width).
func ParseEntryBundle(b []byte, want int) ([][]byte, error) {
	if want < 1 || want > TileWidth {
		return nil, fmt.Errorf("entry bundle: width %d: want 1..%d", want, TileWidth)
	}
	out := make([][]byte, 0, want)
	for len(b) > 0 {
		if len(out) == want {
			return nil, fmt.Errorf("entry bundle: %d bytes after entry %d", len(b), want-1)
		}
		if len(b) < 2 {
			return nil, fmt.Errorf("entry bundle: entry %d: truncated length", len(out))
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b)-2 < n {
			return nil, fmt.Errorf("entry bundle: entry %d: length %d, but %d bytes remain", len(out), n, len(b)-2)
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("entry bundle: %d entries, want %d", len(out), want)
	}
	return out, nil
}
