package tiles

import (
	"errors"
	"fmt"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/soulfra/calnet/ledger"
)

// Tile names a tile: x/mod/sumdb/tlog's coordinates with height 8; level
// -1 is an entry bundle.
type Tile = tlog.Tile

// ErrPath is wrapped by every refusal of a tile path.
var ErrPath = errors.New("invalid tile path")

// ParsePath parses a tlog-tiles tile path ("tile/<L>/<N>[.p/<W>]" or
// "tile/entries/<N>[.p/<W>]") and checks it against this log's limits.
func ParsePath(path string) (Tile, error) {
	if len(path) > MaxPathLen {
		return Tile{}, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrPath, len(path), MaxPathLen)
	}
	t, err := torchwood.ParseTilePath(path)
	if err != nil {
		return Tile{}, fmt.Errorf("%w: %q: want tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]", ErrPath, path)
	}
	if t.L > ledger.MaxTileLevel {
		return Tile{}, fmt.Errorf("%w: level %d: want 0..%d", ErrPath, t.L, ledger.MaxTileLevel)
	}
	if t.W < 1 || t.W > ledger.TileWidth || t.H != ledger.TileHeight || t.N < 0 {
		return Tile{}, fmt.Errorf("%w: %q", ErrPath, path)
	}
	// tlog accepts a few spellings of one tile; serve only the canonical
	// one, so each tile has one URL (and one cache entry).
	if Path(t) != path {
		return Tile{}, fmt.Errorf("%w: %q is not the canonical spelling %q", ErrPath, path, Path(t))
	}
	return t, nil
}

// Path returns the tlog-tiles path of a tile.
func Path(t Tile) string { return torchwood.TilePath(t) }
