package hsm

// Request is one message to the helper.
type Request struct {
	// Op is "login", "encrypt" or "decrypt".
	Op string `json:"op"`
	// Login: the module, token label and PIN.
	Module string `json:"module,omitempty"`
	Token  string `json:"token,omitempty"`
	PIN    string `json:"pin,omitempty"`
	// Encrypt and decrypt: the label of the AES key; Create makes it on
	// the token when missing (encrypt only).
	Key    string `json:"key,omitempty"`
	Create bool   `json:"create,omitempty"`
	// Data is the plaintext (encrypt) or nonce || ciphertext (decrypt);
	// AAD is authenticated with it.
	Data []byte `json:"data,omitempty"`
	AAD  []byte `json:"aad,omitempty"`
}

// Response is the helper's answer to one Request.
type Response struct {
	Data []byte `json:"data,omitempty"`
	// Error says what failed; Reason names it for callers to branch on.
	Error  string `json:"error,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Reasons a request fails.
const (
	ReasonNoModule  = "no-module"
	ReasonNoToken   = "no-token"
	ReasonWrongPIN  = "wrong-pin"
	ReasonNoKey     = "no-key"
	ReasonDecrypt   = "decrypt"
	ReasonBadInput  = "bad-input"
	ReasonHSM       = "hsm"
	ReasonNotLogged = "not-logged-in"
)

// Limits of the protocol.
const (
	// MaxMessage bounds one JSON line either way.
	MaxMessage = 64 << 10
	// NonceSize is the GCM nonce the helper uses.
	NonceSize = 12
)
