// Package spiffeca is the network's X.509 authority: it issues the
// X.509-SVIDs that make a Cal's identity usable by SPIFFE-aware software
// (go-spiffe, Envoy, SPIRE federation).
//
// The root of the authority is the genesis key: the root certificate's key
// is the Ed25519 half of the network's root keys, self-signed over a
// certificate derived only from the network (its ID and creation time), so
// every control plane of the network makes the same root, byte for byte,
// and anyone holding the network's root public keys checks a trust bundle
// by comparing its key (RootMatches). The root signs an online issuing
// (intermediate) CA whose ECDSA P-256 key lives only in the control
// plane's memory; it is replaced at half its life, and at every start.
// The issuing CA signs short-lived SVIDs: a Cal's own (its identity key,
// spiffe://<network>/cal/<id>, carrying its blessing's digest) and its
// workload's (a key made for it, spiffe://<network>/cal/<id>/workload).
//
// Verify checks an SVID chain against a bundle and names why it fails
// (Reason): expired, not yet valid, wrong trust domain, unknown
// authority, revoked.
package spiffeca
