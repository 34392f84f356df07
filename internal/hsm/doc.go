// Package hsm protects a network's root sealing key with a key held in a
// PKCS#11 token (an HSM; SoftHSM2 in tests).
//
// The calnet binary is built without cgo (its sandbox needs that), and a
// PKCS#11 module is a C library, so the token is driven by a separate
// helper, calnet-pkcs11 (cmd/calnet-pkcs11, built with cgo, using
// ThalesGroup/crypto11): calnet starts it, speaks JSON lines with it over
// its standard input and output, and stops it when done. The vendor's
// library thus never loads into the control plane, and the PIN crosses
// only that pipe.
//
// The token holds an AES-256 key (CKA_SENSITIVE, not extractable, made on
// the token on first use) that wraps the root with CKM_AES_GCM; the root
// is unwrapped into the control plane's locked memory at unseal.
package hsm
