package identity

import "github.com/cloudflare/circl/sign/mldsa/mldsa65"

// Sizes of the encoded key and signature halves. Anything else is rejected.
const (
	Ed25519PublicKeySize = 32
	Ed25519SignatureSize = 64
	MLDSAPublicKeySize   = mldsa65.PublicKeySize
	MLDSASignatureSize   = mldsa65.SignatureSize

	// MaxKeyFileSize bounds an encrypted private-key file.
	MaxKeyFileSize = 64 << 10
	// MaxPublicKeyJSON bounds an encoded public key document.
	MaxPublicKeyJSON = 8 << 10
)
