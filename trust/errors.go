package trust

import (
	"errors"
	"fmt"
)

// ErrMalformed wraps every decoding and structural error.
var ErrMalformed = errors.New("malformed")

// FieldError names the field of a document that is wrong and why.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *FieldError) Unwrap() error { return ErrMalformed }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Reason classifies why a chain failed verification.
type Reason string

// The reasons a chain can fail. The trust chain validator shows them.
const (
	ReasonMalformed        Reason = "malformed"
	ReasonBadSignature     Reason = "bad-signature"
	ReasonEscalation       Reason = "escalation"
	ReasonExpired          Reason = "expired"
	ReasonNotYetValid      Reason = "not-yet-valid"
	ReasonDepthExceeded    Reason = "depth-exceeded"
	ReasonChildrenExceeded Reason = "children-exceeded"
	ReasonWrongNetwork     Reason = "wrong-network"
	ReasonRevoked          Reason = "revoked"
	ReasonRevokedAncestor  Reason = "revoked-ancestor"
)

// ChainError explains a failed verification: which link (0 is the
// genesis-blessed Master Cal), which Cal it blesses, and why.
type ChainError struct {
	Link   int    `json:"link"`
	Cal    string `json:"cal,omitempty"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail"`
}

func (e *ChainError) Error() string {
	cal := ""
	if e.Cal != "" {
		cal = " (cal " + e.Cal + ")"
	}
	return fmt.Sprintf("link %d%s: %s: %s", e.Link, cal, e.Reason, e.Detail)
}
