package identity

// Purpose separates the domains in which a key signs, so a signature made
// for one purpose never verifies for another. It is passed as the FIPS 204
// context string to ML-DSA and as the RFC 8032 Ed25519ctx context to Ed25519.
type Purpose string

// The purposes calnet signs for.
const (
	PurposeBlessing   Purpose = "calnet-blessing-v1"
	PurposeSoulChain  Purpose = "calnet-soul-chain-v1"
	PurposeRevocation Purpose = "calnet-revocation-v1"
	PurposeEntry      Purpose = "calnet-ledger-entry-v1"
	PurposeActivation Purpose = "calnet-activation-v1"
	// PurposeCheckpoint signs C2SP signed notes. Its Ed25519 half is plain
	// RFC 8032 Ed25519 over the note text, as signed-note verifiers
	// (golang.org/x/mod/sumdb/note) require; plain Ed25519 and Ed25519ctx are
	// domain-separated by RFC 8032's dom2 prefix, so this does not weaken the
	// other purposes.
	PurposeCheckpoint Purpose = "calnet-checkpoint-v1"
)

func (p Purpose) valid() bool {
	switch p {
	case PurposeBlessing, PurposeSoulChain, PurposeRevocation, PurposeEntry, PurposeActivation, PurposeCheckpoint:
		return true
	}
	return false
}
