package spiffeca

import "time"

// Limits on what the authority issues and on what it reads from a Cal.
const (
	// MinTTL and MaxTTL bound an SVID's lifetime.
	MinTTL = 10 * time.Second
	MaxTTL = 24 * time.Hour
	// DefaultTTL is an SVID's lifetime unless the network sets another.
	DefaultTTL = time.Hour
	// IssuerTTL is the issuing CA's lifetime; it is replaced at half.
	IssuerTTL = 7 * 24 * time.Hour
	// RootTTL is the root certificate's lifetime from the network's birth.
	RootTTL = 100 * 365 * 24 * time.Hour
	// MaxCSR bounds a certificate request (DER) a Cal sends.
	MaxCSR = 4 << 10
	// MaxChain bounds the certificates of a presented chain.
	MaxChain = 4
	// backdate is how far before issue an SVID becomes valid, for clocks
	// a little behind.
	backdate = 10 * time.Second
)
