// Package netdir manages a network directory on disk: the genesis root key,
// the ledger and its log key, the Master Cal, and identity directories of
// other Cals (identity.key, identity.pub, blessing.json, soul-chain.sig).
// It carries out the offline trust workflow: init, keygen, bless, verify
// and revoke, each recorded in the ledger.
//
// Layout of a network directory:
//
//	network.json        network ID, origin, root and log public keys
//	kek.age             age post-quantum hybrid identity sealing the keys (0600)
//	genesis/            the genesis root identity (the network authority)
//	ledger/             the Merkle log, and log.key
//	master/             the Master Cal's identity, blessing and soul chain
package netdir
