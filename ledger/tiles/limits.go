package tiles

import "time"

// Limits on what the server accepts and the client reads.
const (
	// MaxPathLen bounds a tile path (after the prefix): the longest valid
	// one, "tile/entries/x001/x234/x567/x890/x123/x456/789.p/255", is 52
	// bytes.
	MaxPathLen = 64
	// MaxTileSize bounds a hash tile (256 hashes of 32 bytes).
	MaxTileSize = 256 * 32
	// MaxBundleSize bounds an entry bundle: 256 entries of at most 65535
	// bytes and their 2-byte lengths.
	MaxBundleSize = 256 * (2 + 65535)
	// DefaultRate and DefaultBurst bound each client address's requests
	// per second.
	DefaultRate  = 200
	DefaultBurst = 400
	// maxClients bounds the per-address limiters kept; when full they are
	// dropped (a fresh burst for everyone, not an unbounded map).
	maxClients = 10000
	// cacheBytes bounds the tiles and bundles kept in memory.
	cacheBytes = 32 << 20
	// requestTimeout bounds one client request.
	requestTimeout = 30 * time.Second
)

// Cache-Control of each kind of response: a full tile never changes; a
// partial tile is a prefix of one (still served, but a client should ask
// for the full one once the tree has grown); the checkpoint moves with
// every commit.
const (
	cacheFull       = "public, max-age=31536000, immutable"
	cachePartial    = "public, max-age=60"
	cacheCheckpoint = "public, max-age=1, must-revalidate"
)
