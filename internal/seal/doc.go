// Package seal keeps calnet's key-encryption keys sealed at rest.
//
// One random 256-bit root sealing key per network wraps every other
// key-encryption key calnet keeps: the age identity that encrypts the
// network's private keys (genesis, ledger, Master Cal) and each Cal's
// key-encryption identity in the state store. The root itself is stored
// only wrapped, in seal.json, by a Protector:
//
//   - passphrase: an AES-256-GCM key derived from the operator's passphrase
//     with Argon2id (memory-hard); the network starts sealed and is unsealed
//     with the passphrase;
//   - pkcs11: an AES-256 key held in an HSM token (non-extractable) wraps
//     the root; unsealing asks the token to unwrap it;
//   - file (the default): the root in seal.key, 0600, next to seal.json.
//     This keeps a newcomer's `calnet up` free of prompts; it protects
//     against a copy of the state store or a backup without seal.key, not
//     against whoever can read the whole data directory.
//
// A sealed blob (Root.Seal) is bound to its network and to its purpose
// (e.g. the Cal it belongs to): a blob of another network, another
// purpose, cut short or changed is refused with a named error.
package seal
