package identity

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// IDSize is the length in bytes of a Cal ID or a network ID.
const IDSize = 20

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// idStringLen is the length of an ID's text form.
var idStringLen = idEncoding.EncodedLen(IDSize)

// ID names a Cal: a truncated SHA-256 of its public keys under a domain tag.
// Its text form is 32 lowercase base32 characters, safe in DNS labels,
// SPIFFE IDs and file names.
type ID [IDSize]byte

// NetworkID names a network: a truncated SHA-256 of the genesis root keys
// under a tag distinct from Cal IDs, so the two can never collide.
type NetworkID [IDSize]byte

const (
	calIDTag     = "calnet/cal-id/v1\x00"
	networkIDTag = "calnet/network-id/v1\x00"
)

func deriveID(tag string, ed, ml []byte) [IDSize]byte {
	h := sha256.New()
	h.Write([]byte(tag))
	h.Write(ed)
	h.Write(ml)
	var out [IDSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// IDFromKeys computes the Cal ID of encoded public key halves without
// parsing them, which is much cheaper than ParsePublicKey.
func IDFromKeys(ed, ml []byte) ID { return deriveID(calIDTag, ed, ml) }

// String returns the full text form of id.
func (id ID) String() string { return idEncoding.EncodeToString(id[:]) }

// Short returns a human-friendly prefix such as "k7x2-m4qp" for display.
// It is not unique across a large network; use String to address a Cal.
func (id ID) Short() string { s := id.String(); return s[:4] + "-" + s[4:8] }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := parseID(string(b))
	*id = ID(v)
	return err
}

// ParseID parses the text form of a Cal ID.
func ParseID(s string) (ID, error) { v, err := parseID(s); return ID(v), err }

// String returns the full text form of n.
func (n NetworkID) String() string { return idEncoding.EncodeToString(n[:]) }

// Short returns a human-friendly prefix of n for display.
func (n NetworkID) Short() string { return ID(n).Short() }

// MarshalText implements encoding.TextMarshaler.
func (n NetworkID) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (n *NetworkID) UnmarshalText(b []byte) error {
	v, err := parseID(string(b))
	*n = NetworkID(v)
	return err
}

// ParseNetworkID parses the text form of a network ID.
func ParseNetworkID(s string) (NetworkID, error) { v, err := parseID(s); return NetworkID(v), err }

// ErrBadID reports an ID whose text form is not 32 base32 characters.
var ErrBadID = errors.New("malformed ID")

func parseID(s string) ([IDSize]byte, error) {
	var out [IDSize]byte
	if len(s) != idStringLen {
		return out, fmt.Errorf("%w: %d characters, want %d", ErrBadID, len(s), idStringLen)
	}
	if strings.ToLower(s) != s {
		return out, fmt.Errorf("%w: must be lowercase", ErrBadID)
	}
	b, err := idEncoding.DecodeString(s)
	if err != nil || len(b) != IDSize {
		return out, fmt.Errorf("%w: not base32", ErrBadID)
	}
	copy(out[:], b)
	// Reject non-canonical encodings (trailing bits set).
	if idEncoding.EncodeToString(out[:]) != s {
		return out, fmt.Errorf("%w: non-canonical encoding", ErrBadID)
	}
	return out, nil
}
