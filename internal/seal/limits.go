package seal

// Limits on untrusted input.
const (
	// MaxBlob bounds a sealed blob (a Cal's key-encryption identity is
	// about 2.5 KiB sealed).
	MaxBlob = 64 << 10
	// MaxConfigFile bounds seal.json.
	MaxConfigFile = 16 << 10
	// MaxPurpose bounds a blob's purpose label.
	MaxPurpose = 200
	// MaxNetwork bounds a blob's network label.
	MaxNetwork = 200
	// MaxPassphrase bounds a passphrase.
	MaxPassphrase = 1 << 10
	// MinPassphrase is the shortest passphrase accepted when a network is
	// sealed with one.
	MinPassphrase = 12
	// maxKDFMemoryKiB and maxKDFTime bound the Argon2id cost read from
	// seal.json, so a changed file cannot make unsealing take the host's
	// memory or hours.
	maxKDFMemoryKiB = 4 << 20
	maxKDFTime      = 64
	maxKDFThreads   = 64
)
