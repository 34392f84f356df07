// Package snapshot is calnet's backup format and the code that writes and
// reads it: one file holding everything a network needs to come back on
// another machine, taken while the network runs.
//
// A snapshot file is an age stream (filippo.io/age) encrypted to one or
// more hybrid post-quantum recipients (age1pq1..., ML-KEM-768 + X25519):
// its payload is authenticated chunk by chunk and at its end, so a changed
// or cut file does not decrypt. The payload is a tar archive (POSIX pax) of
// regular files, in this order, each phase's names fixed:
//
//	manifest.json          the Manifest: format, network, time, ledger size
//	                       and root, the store's index, what is inside
//	files/<path>           files of the data directory (network identity,
//	                       sealed genesis, Master and log keys, credential,
//	                       templates, programs, audit trail)
//	cals/<id>/<name>       each Cal's sealed identity key and template, as
//	                       its sandbox holds them (identity.key, template.json)
//	state.db               the state store, as one consistent view
//	ledger/<first index>   ledger entries, each a u32 big-endian length then
//	                       its bytes, in order from entry 0
//	checkpoint             the ledger's signed checkpoint at the manifest's size
//	end.json               the number of items before it and the SHA-256 of
//	                       their names, sizes and contents
//
// Writer and Reader are the format alone, without encryption or a data
// directory: a Raft store's state-machine snapshots can use them as they
// are. Seal and Open add the encryption; capture and restore of a data
// directory are in Restore and in the control plane.
package snapshot
