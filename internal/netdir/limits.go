package netdir

// Limits on the files of a network directory and an identity directory,
// which `calnet verify` reads from anyone (every read goes through
// internal/limitedfile: regular files only, at most the limit).
const (
	// maxInfoFile bounds network.json.
	maxInfoFile = 64 << 10
	// maxKEKFile bounds the key-encryption identity (an age identity).
	maxKEKFile = 16 << 10
)
