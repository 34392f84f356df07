// Package witness is calnet's transparency-log witness (`calnet witness`):
// it keeps the newest checkpoint of one log it has verified, accepts a
// newer one only with a proof that it extends that one, and cosigns what
// it accepted with its own Ed25519 key (C2SP tlog-cosignature).
// Checkpoints arrive two ways: the log pushes them (C2SP tlog-witness,
// POST /add-checkpoint), or the witness pulls them from the log's
// tlog-tiles endpoint and proves consistency from the tiles. Its state is
// one file, replaced atomically, so a restart never cosigns a checkpoint
// inconsistent with one it cosigned before.
package witness
