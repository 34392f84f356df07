package trust

// Limits on untrusted input. Every decoder checks these before doing work.
const (
	// MaxChainDepth is the deepest chain calnet accepts: the genesis-blessed
	// Master Cal has depth 1.
	MaxChainDepth = 32
	// MaxBlessingJSON bounds one encoded blessing.
	MaxBlessingJSON = 16 << 10
	// MaxChainJSON bounds an encoded soul chain.
	MaxChainJSON = MaxChainDepth*MaxBlessingJSON + 16<<10
	// MaxRevocationJSON bounds an encoded revocation.
	MaxRevocationJSON = 16 << 10
	// MaxChildren bounds the max_children constraint.
	MaxChildren = 1 << 20
	// MaxCPUMillis bounds the CPU quota (milli-cores).
	MaxCPUMillis = 1 << 20
	// MaxMemoryBytes bounds the memory quota (1 PiB).
	MaxMemoryBytes = 1 << 50
	// MaxDiskBytes bounds the disk quota (1 PiB); a version 1 blessing,
	// which has no disk quota, reads as this.
	MaxDiskBytes = 1 << 50
	// MaxPIDs bounds the PIDs quota.
	MaxPIDs = 1 << 22
	// NonceSize is the exact size of a blessing or revocation nonce.
	NonceSize = 16
	// MaxReasonLen bounds a revocation's free-text reason.
	MaxReasonLen = 512
)
