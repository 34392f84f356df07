// Package identity holds a Cal's hybrid post-quantum identity: an Ed25519 key
// and an ML-DSA-65 (FIPS 204) key used together. A signature is valid only when
// both halves verify over the same bytes under the same purpose, so breaking
// either algorithm alone forges nothing.
//
// Private keys are reachable only through the Signer interface and are stored
// at rest encrypted with age (a post-quantum hybrid recipient or a passphrase)
// in 0600 files. Key types hold a [0]func() field so they cannot be compared
// with ==; compare IDs instead.
package identity
