package identity

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/soulfra/calnet/internal/strictjson"
)

// PublicKey is a parsed hybrid public key. Parsing the ML-DSA half is the
// expensive part (~60 us); callers that verify often keep parsed keys.
type PublicKey struct {
	_     [0]func() // not comparable with ==
	ed    ed25519.PublicKey
	ml    *mldsa65.PublicKey
	mlRaw []byte
	id    ID
}

// Signature is a hybrid signature: both halves must verify.
type Signature struct {
	_       [0]func()
	Ed25519 []byte
	MLDSA   []byte
}

// ErrBadSignature is returned when either half of a hybrid signature fails.
var ErrBadSignature = errors.New("bad signature")

// ParsePublicKey parses the two encoded halves of a hybrid public key,
// checking their sizes.
func ParsePublicKey(ed, ml []byte) (*PublicKey, error) {
	if len(ed) != Ed25519PublicKeySize {
		return nil, fmt.Errorf("ed25519 public key is %d bytes, want %d", len(ed), Ed25519PublicKeySize)
	}
	if len(ml) != MLDSAPublicKeySize {
		return nil, fmt.Errorf("mldsa65 public key is %d bytes, want %d", len(ml), MLDSAPublicKeySize)
	}
	var buf [mldsa65.PublicKeySize]byte
	copy(buf[:], ml)
	mpk := new(mldsa65.PublicKey)
	mpk.Unpack(&buf)
	pk := &PublicKey{ed: append(ed25519.PublicKey(nil), ed...), ml: mpk, mlRaw: append([]byte(nil), ml...)}
	pk.id = deriveID(calIDTag, pk.ed, pk.mlRaw)
	return pk, nil
}

// ID returns the Cal ID these keys name.
func (k *PublicKey) ID() ID { return k.id }

// NetworkID returns the network ID these keys name when they are a genesis root.
func (k *PublicKey) NetworkID() NetworkID { return NetworkID(deriveID(networkIDTag, k.ed, k.mlRaw)) }

// Ed25519 returns a copy of the Ed25519 half.
func (k *PublicKey) Ed25519() ed25519.PublicKey { return append(ed25519.PublicKey(nil), k.ed...) }

// MLDSA returns a copy of the encoded ML-DSA-65 half.
func (k *PublicKey) MLDSA() []byte { return append([]byte(nil), k.mlRaw...) }

// Equal reports whether k and o are the same key, in constant time.
func (k *PublicKey) Equal(o *PublicKey) bool {
	if k == nil || o == nil {
		return k == o
	}
	return subtle.ConstantTimeCompare(k.ed, o.ed)&subtle.ConstantTimeCompare(k.mlRaw, o.mlRaw) == 1
}

// Verify checks sig over msg for purpose p. Both halves must verify.
func (k *PublicKey) Verify(p Purpose, msg []byte, sig *Signature) error {
	if sig == nil || len(sig.Ed25519) != Ed25519SignatureSize || len(sig.MLDSA) != MLDSASignatureSize {
		return fmt.Errorf("%w: wrong signature size", ErrBadSignature)
	}
	if !p.valid() {
		return fmt.Errorf("unknown signing purpose %q", p)
	}
	var edOK bool
	if p == PurposeCheckpoint {
		edOK = ed25519.Verify(k.ed, msg, sig.Ed25519)
	} else {
		edOK = ed25519.VerifyWithOptions(k.ed, msg, sig.Ed25519, &ed25519.Options{Context: string(p)}) == nil
	}
	mlOK := mldsa65.Verify(k.ml, msg, []byte(p), sig.MLDSA)
	switch {
	case !edOK && !mlOK:
		return fmt.Errorf("%w: ed25519 and mldsa65 halves fail", ErrBadSignature)
	case !edOK:
		return fmt.Errorf("%w: ed25519 half fails", ErrBadSignature)
	case !mlOK:
		return fmt.Errorf("%w: mldsa65 half fails", ErrBadSignature)
	}
	return nil
}

// Signer signs for one identity. Implementations must be safe for concurrent
// use; the private key never leaves the Signer.
type Signer interface {
	// Public returns the signer's public key.
	Public() *PublicKey
	// Sign returns a hybrid signature over msg for purpose p.
	Sign(p Purpose, msg []byte) (*Signature, error)
}

// PrivateKey is an in-memory hybrid private key. It implements Signer.
type PrivateKey struct {
	_      [0]func()
	edSeed []byte
	mlSeed [mldsa65.SeedSize]byte
	ed     ed25519.PrivateKey
	ml     *mldsa65.PrivateKey
	pub    *PublicKey
	// deterministic makes ML-DSA signing deterministic (FIPS 204 allows both);
	// used only for reproducible test vectors.
	deterministic bool
}

var _ Signer = (*PrivateKey)(nil)

// seedSize is the length of each of the two seeds a key is derived from.
const seedSize = 32

// Generate creates a fresh hybrid key from rand (crypto/rand when nil).
func Generate(r io.Reader) (*PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	seed := make([]byte, 2*seedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return FromSeed(seed)
}

// FromSeed derives a key from 64 seed bytes: the Ed25519 seed then the
// ML-DSA-65 seed. It is how keys are restored from storage and how test
// vectors are made reproducible.
func FromSeed(seed []byte) (*PrivateKey, error) {
	if len(seed) != 2*seedSize {
		return nil, fmt.Errorf("key seed is %d bytes, want %d", len(seed), 2*seedSize)
	}
	k := &PrivateKey{edSeed: append([]byte(nil), seed[:seedSize]...)}
	copy(k.mlSeed[:], seed[seedSize:])
	k.ed = ed25519.NewKeyFromSeed(k.edSeed)
	mpk, msk := mldsa65.NewKeyFromSeed(&k.mlSeed)
	k.ml = msk
	raw, err := mpk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode mldsa65 public key: %w", err)
	}
	k.pub = &PublicKey{ed: k.ed.Public().(ed25519.PublicKey), ml: mpk, mlRaw: raw}
	k.pub.id = deriveID(calIDTag, k.pub.ed, k.pub.mlRaw)
	return k, nil
}

// Deterministic returns a copy of k whose ML-DSA signatures are
// deterministic. Only test-vector generation should need it.
func (k *PrivateKey) Deterministic() *PrivateKey {
	c := *k
	c.deterministic = true
	return &c
}

// Public implements Signer.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// Sign implements Signer.
func (k *PrivateKey) Sign(p Purpose, msg []byte) (*Signature, error) {
	if !p.valid() {
		return nil, fmt.Errorf("unknown signing purpose %q", p)
	}
	var edSig []byte
	if p == PurposeCheckpoint {
		edSig = ed25519.Sign(k.ed, msg)
	} else {
		var err error
		edSig, err = k.ed.Sign(nil, msg, &ed25519.Options{Context: string(p)})
		if err != nil {
			return nil, fmt.Errorf("ed25519 sign: %w", err)
		}
	}
	mlSig := make([]byte, mldsa65.SignatureSize)
	if err := mldsa65.SignTo(k.ml, msg, []byte(p), !k.deterministic, mlSig); err != nil {
		return nil, fmt.Errorf("mldsa65 sign: %w", err)
	}
	return &Signature{Ed25519: edSig, MLDSA: mlSig}, nil
}

// seed returns the 64 bytes the key derives from, for sealing to storage.
func (k *PrivateKey) seed() []byte {
	out := make([]byte, 0, 2*seedSize)
	out = append(out, k.edSeed...)
	return append(out, k.mlSeed[:]...)
}

// publicKeyJSON is the wire form of a PublicKey.
type publicKeyJSON struct {
	Ed25519 string `json:"ed25519"`
	MLDSA   string `json:"mldsa65"`
}

// MarshalJSON encodes k as {"ed25519":"<base64>","mldsa65":"<base64>"}.
func (k *PublicKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(publicKeyJSON{
		Ed25519: base64.StdEncoding.EncodeToString(k.ed),
		MLDSA:   base64.StdEncoding.EncodeToString(k.mlRaw),
	})
}

// UnmarshalJSON decodes and parses a public key.
func (k *PublicKey) UnmarshalJSON(b []byte) error {
	var j publicKeyJSON
	if err := strictjson.Unmarshal(b, MaxPublicKeyJSON, &j); err != nil {
		return err
	}
	p, err := PublicKeyFromBase64(j.Ed25519, j.MLDSA)
	if err != nil {
		return err
	}
	*k = PublicKey{ed: p.ed, ml: p.ml, mlRaw: p.mlRaw, id: p.id}
	return nil
}

// PublicKeyFromBase64 parses a key from its two base64 halves.
func PublicKeyFromBase64(ed, ml string) (*PublicKey, error) {
	edb, err := decodeB64("ed25519", ed, Ed25519PublicKeySize)
	if err != nil {
		return nil, err
	}
	mlb, err := decodeB64("mldsa65", ml, MLDSAPublicKeySize)
	if err != nil {
		return nil, err
	}
	return ParsePublicKey(edb, mlb)
}

// signatureJSON is the wire form of a Signature.
type signatureJSON struct {
	Ed25519 string `json:"ed25519"`
	MLDSA   string `json:"mldsa65"`
}

// MarshalJSON encodes sig as {"ed25519":"<base64>","mldsa65":"<base64>"}.
func (s *Signature) MarshalJSON() ([]byte, error) {
	return json.Marshal(signatureJSON{
		Ed25519: base64.StdEncoding.EncodeToString(s.Ed25519),
		MLDSA:   base64.StdEncoding.EncodeToString(s.MLDSA),
	})
}

// UnmarshalJSON decodes a signature, checking both halves' sizes.
func (s *Signature) UnmarshalJSON(b []byte) error {
	var j signatureJSON
	if err := strictjson.Unmarshal(b, 8<<10, &j); err != nil {
		return err
	}
	ed, err := decodeB64("signature.ed25519", j.Ed25519, Ed25519SignatureSize)
	if err != nil {
		return err
	}
	ml, err := decodeB64("signature.mldsa65", j.MLDSA, MLDSASignatureSize)
	if err != nil {
		return err
	}
	s.Ed25519, s.MLDSA = ed, ml
	return nil
}

// decodeB64 decodes standard base64 and checks the decoded length.
func decodeB64(field, s string, want int) ([]byte, error) {
	if base64.StdEncoding.EncodedLen(want) != len(s) {
		return nil, fmt.Errorf("%s: %d base64 characters, want %d (%d bytes)", field, len(s), base64.StdEncoding.EncodedLen(want), want)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: not base64: %w", field, err)
	}
	if len(b) != want {
		return nil, fmt.Errorf("%s: %d bytes, want %d", field, len(b), want)
	}
	return b, nil
}

// TLSSigner returns a crypto.Signer for the Ed25519 half, for TLS
// certificates bound to this identity. The key stays inside the returned
// value; Ed25519 signs the TLS transcript, which no other calnet purpose
// uses (they all use Ed25519ctx).
func (k *PrivateKey) TLSSigner() crypto.Signer { return edTLSSigner{k.ed} }

type edTLSSigner struct{ k ed25519.PrivateKey }

func (s edTLSSigner) Public() crypto.PublicKey { return s.k.Public() }

func (s edTLSSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.k.Sign(r, digest, opts)
}
