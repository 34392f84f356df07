package tiles

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL is the log's prefix: URL+"/checkpoint" is its checkpoint.
	URL string
	// Origin and LogKey verify the log's checkpoints.
	Origin string
	LogKey *identity.PublicKey
	// Witnesses is the cosignature policy every checkpoint must meet.
	Witnesses ledger.WitnessPolicy
	// HTTPClient makes the requests (nil: one with a 30 s timeout).
	HTTPClient *http.Client
}

// Client reads a remote tlog-tiles log and verifies everything it reads
// against checkpoints it verified. It is safe for concurrent use.
type Client struct {
	cfg ClientConfig
	hc  *http.Client

	mu    sync.Mutex
	tiles map[string][]byte // verified full tiles
}

// ErrRemote wraps failures of the remote log: a status other than 200, a
// body over its limit, a tile that does not hash to the checkpoint's root.
var ErrRemote = errors.New("remote log")

// NewClient returns a client of the log at cfg.URL.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.URL == "" || cfg.Origin == "" || cfg.LogKey == nil {
		return nil, errors.New("tiles client: URL, Origin and LogKey are required")
	}
	if err := cfg.Witnesses.Validate(); err != nil {
		return nil, err
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: requestTimeout}
	}
	return &Client{cfg: cfg, hc: hc, tiles: map[string][]byte{}}, nil
}

func (c *Client) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.URL+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRemote, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%w: %s: %s: %s", ErrRemote, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRemote, path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s: over the limit of %d bytes", ErrRemote, path, limit)
	}
	return b, nil
}

// Checkpoint fetches the log's checkpoint and verifies its signatures and
// the witness policy.
func (c *Client) Checkpoint(ctx context.Context) (*ledger.Cosigned, error) {
	b, err := c.get(ctx, "checkpoint", ledger.MaxCheckpointSize)
	if err != nil {
		return nil, err
	}
	return ledger.VerifyCosigned(b, c.cfg.Origin, c.cfg.LogKey, c.cfg.Witnesses)
}

// tileReader is a tlog.TileReader over the client, for one call.
type tileReader struct {
	c   *Client
	ctx context.Context
}

func (r tileReader) Height() int { return ledger.TileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := Path(t)
		r.c.mu.Lock()
		b, ok := r.c.tiles[p]
		r.c.mu.Unlock()
		if ok {
			out[i] = b
			continue
		}
		b, err := r.c.get(r.ctx, p, MaxTileSize)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// SaveTiles keeps the full tiles tlog verified.
func (r tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	for i, t := range tiles {
		if t.W == ledger.TileWidth && len(r.c.tiles) < maxClientTiles {
			r.c.tiles[Path(t)] = data[i]
		}
	}
}

// maxClientTiles bounds the verified tiles a Client keeps (8 KiB each).
const maxClientTiles = 4096

// hashReader returns tlog's tile hash reader of the tree of cp: every tile
// it reads is checked against cp's root.
func (c *Client) hashReader(ctx context.Context, cp *ledger.Checkpoint) (tlog.Tree, tlog.HashReader) {
	tree := tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Root)}
	return tree, tlog.TileHashReader(tree, tileReader{c: c, ctx: ctx})
}

func hashes(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// Inclusion returns the proof, built from the remote tiles, that entry
// index is in the tree of cp, checked against cp's root.
func (c *Client) Inclusion(ctx context.Context, cp *ledger.Checkpoint, index uint64) (*ledger.InclusionProof, error) {
	if index >= cp.Size {
		return nil, fmt.Errorf("entry %d is not in a tree of size %d", index, cp.Size)
	}
	tree, hr := c.hashReader(ctx, cp)
	p, err := tlog.ProveRecord(tree.N, int64(index), hr)
	if err != nil {
		return nil, fmt.Errorf("%w: inclusion of entry %d: %w", ErrRemote, index, err)
	}
	leaf, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, int64(index))})
	if err != nil {
		return nil, fmt.Errorf("%w: leaf %d: %w", ErrRemote, index, err)
	}
	ip := &ledger.InclusionProof{Index: index, TreeSize: cp.Size, LeafHash: leaf[0][:], Hashes: hashes(p)}
	if err := ip.Verify(cp.Root); err != nil {
		return nil, fmt.Errorf("%w: inclusion of entry %d: %w", ErrRemote, index, err)
	}
	return ip, nil
}

// Consistency returns the proof, built from the remote tiles of the newer
// tree, that old's tree is a prefix of newer's, checked against both roots.
func (c *Client) Consistency(ctx context.Context, old, newer *ledger.Checkpoint) (*ledger.ConsistencyProof, error) {
	if old.Size > newer.Size {
		return nil, fmt.Errorf("consistency: old size %d is over new size %d", old.Size, newer.Size)
	}
	tree, hr := c.hashReader(ctx, newer)
	p, err := tlog.ProveTree(tree.N, int64(old.Size), hr)
	if err != nil {
		return nil, fmt.Errorf("%w: consistency %d to %d: %w", ErrRemote, old.Size, newer.Size, err)
	}
	cp := &ledger.ConsistencyProof{OldSize: old.Size, NewSize: newer.Size, Hashes: hashes(p)}
	if err := ledger.CheckFork(old, newer, cp); err != nil {
		return nil, err
	}
	return cp, nil
}

// Entries returns the entries [from, to) of the tree of cp, each checked
// against its leaf hash in the verified tiles.
func (c *Client) Entries(ctx context.Context, cp *ledger.Checkpoint, from, to uint64) ([][]byte, error) {
	if from > to || to > cp.Size {
		return nil, fmt.Errorf("entries [%d, %d) of a tree of size %d", from, to, cp.Size)
	}
	_, hr := c.hashReader(ctx, cp)
	var out [][]byte
	for n := from / ledger.TileWidth; n*ledger.TileWidth < to; n++ {
		w := min(uint64(ledger.TileWidth), cp.Size-n*ledger.TileWidth)
		t := tlog.Tile{H: ledger.TileHeight, L: -1, N: int64(n), W: int(w)}
		b, err := c.get(ctx, Path(t), MaxBundleSize)
		if err != nil {
			return nil, err
		}
		es, err := ledger.ParseEntryBundle(b, int(w))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrRemote, Path(t), err)
		}
		idx := make([]int64, w)
		for i := range idx {
			idx[i] = tlog.StoredHashIndex(0, int64(n*ledger.TileWidth)+int64(i))
		}
		leaves, err := hr.ReadHashes(idx)
		if err != nil {
			return nil, fmt.Errorf("%w: leaves of %s: %w", ErrRemote, Path(t), err)
		}
		for i, e := range es {
			k := n*ledger.TileWidth + uint64(i)
			if k < from || k >= to {
				continue
			}
			if tlog.RecordHash(e) != leaves[i] {
				return nil, fmt.Errorf("%w: entry %d: its bytes do not hash to the leaf of the verified tree", ErrRemote, k)
			}
			out = append(out, e)
		}
	}
	return out, nil
}
