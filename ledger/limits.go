package ledger

// Limits on untrusted input.
const (
	// MaxEntrySize bounds one encoded entry.
	MaxEntrySize = 64 << 10
	// maxNameLen bounds an entry's subject and actor.
	maxNameLen = 256
	// MaxBatch bounds the entries of one Append call.
	MaxBatch = 10000
	// MaxCheckpointSize bounds a signed checkpoint note.
	MaxCheckpointSize = 16 << 10
	// MaxProofHashes bounds the hashes of a proof (a tree of 2^64 entries
	// needs at most 64 for inclusion and about 128 for consistency).
	MaxProofHashes = 130
	// MaxProofJSON bounds an encoded proof.
	MaxProofJSON = 16 << 10
	// MaxWitnessKeyLen bounds a witness verifier key.
	MaxWitnessKeyLen = 512
	// MaxWitnesses bounds a witness policy's set.
	MaxWitnesses = 64
)
