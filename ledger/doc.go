// Package ledger is calnet's immutable ledger: an append-only Merkle log
// with RFC 6962 hashing of typed trust events (genesis, blessing,
// revocation, spawn, activation, rotation, policy), persisted on disk, with
// signed checkpoints in the C2SP tlog-checkpoint signed-note format and
// inclusion and consistency proofs that any RFC 6962 verifier can check.
//
// On disk a log is four files (docs/formats.md has the bytes):
//
//	entries      framed entry bytes: u32 length, u32 CRC-32C, payload
//	index        per entry: u64 offset into entries, then its 32-byte leaf hash
//	checkpoints  numbered records of signed checkpoints, each header and note
//	             checksummed; compacted to the latest one every 32 commits
//	head         the number, size and root of the latest acknowledged
//	             checkpoint, in two alternating slots
//
// Appends are group-committed: entries and index are synced, then a signed
// checkpoint covering them is appended and synced, then the head names it.
// An entry is durable once a checkpoint covers it, and acknowledged once
// the head does. Opening a log drops only what lies beyond the last
// acknowledged checkpoint; every other inconsistency between the files (a
// damaged or missing record, a file cut short or replaced by an older copy)
// is an error wrapping ErrDamaged that names the file and the record, and
// Repair rebuilds only what the files still prove. One writer at a time
// holds the directory's lock.
package ledger
