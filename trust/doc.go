// Package trust implements calnet's delegation model: blessings (signed,
// attenuating grants from a parent Cal to a child), soul chains (the path of
// blessings from the genesis root to a Cal, attested by the parent),
// revocations, and the verifier that checks a chain offline against the root
// keys, a point in time and a revocation view, explaining any failure by the
// link and the reason.
//
// The wire formats and their canonical signing encodings are documented in
// docs/formats.md; testdata/vectors holds golden vectors for other SDKs.
package trust
