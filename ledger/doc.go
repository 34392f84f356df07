// Package ledger is calnet's immutable ledger: an append-only Merkle log
// with RFC 6962 hashing of typed trust events (genesis, blessing,
// revocation, spawn, activation, rotation, policy), persisted on disk, with
// signed checkpoints in the C2SP tlog-checkpoint signed-note format and
// inclusion and consistency proofs that any RFC 6962 verifier can check.
//
// On disk a log is three append-only files:
//
//	entries      framed entry bytes: u32 length, u32 CRC-32C, payload
//	index        per entry: u64 offset into entries, then its 32-byte leaf hash
//	checkpoints  framed signed notes, one per commit; the last valid one wins
//
// Appends are group-committed: entries and index are synced, then a signed
// checkpoint covering them is appended and synced. An entry is durable once
// a checkpoint covers it. Opening a log truncates whatever a crash left
// beyond the last checkpoint and checks that the rebuilt tree has the
// checkpoint's root, so a writer killed at any point leaves a log that
// reopens consistent with its last checkpoint.
package ledger
