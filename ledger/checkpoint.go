package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/soulfra/calnet/identity"
)

// mldsaNoteType is the signed-note signature type of the ML-DSA-65 half:
// 0xff (a type without an assigned byte) followed by a longer identifier,
// as C2SP signed-note recommends.
const mldsaNoteType = "\xffcalnet-mldsa65"

// Checkpoint is a verified, signed tree head.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Note is the signed note, as served and stored.
	Note []byte
}

func ed25519KeyHash(name string, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', 0x01})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func mldsaKeyHash(name string, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n'})
	h.Write([]byte(mldsaNoteType))
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// VerifierKey returns the note verifier key of a log key, in the form
// golang.org/x/mod/sumdb/note and other signed-note tools take
// ("<origin>+<hash>+<key>"). It checks the Ed25519 half only.
func VerifierKey(origin string, logKey *identity.PublicKey) (string, error) {
	return note.NewEd25519VerifierKey(origin, logKey.Ed25519())
}

// hybridNoteSigner signs once with the hybrid key and hands each half to
// note.Sign through two note.Signers.
type hybridNoteSigner struct {
	name   string
	signer identity.Signer
	msg    []byte
	sig    *identity.Signature
}

func (h *hybridNoteSigner) sign(msg []byte) (*identity.Signature, error) {
	if h.sig == nil || !bytes.Equal(h.msg, msg) {
		sig, err := h.signer.Sign(identity.PurposeCheckpoint, msg)
		if err != nil {
			return nil, err
		}
		h.msg, h.sig = append([]byte(nil), msg...), sig
	}
	return h.sig, nil
}

type edHalf struct{ *hybridNoteSigner }

func (s edHalf) Name() string { return s.name }
func (s edHalf) KeyHash() uint32 {
	return ed25519KeyHash(s.name, s.signer.Public().Ed25519())
}
func (s edHalf) Sign(msg []byte) ([]byte, error) {
	sig, err := s.sign(msg)
	if err != nil {
		return nil, err
	}
	return sig.Ed25519, nil
}

type mlHalf struct{ *hybridNoteSigner }

func (s mlHalf) Name() string { return s.name }
func (s mlHalf) KeyHash() uint32 {
	return mldsaKeyHash(s.name, s.signer.Public().MLDSA())
}
func (s mlHalf) Sign(msg []byte) ([]byte, error) {
	sig, err := s.sign(msg)
	if err != nil {
		return nil, err
	}
	return sig.MLDSA, nil
}

// signCheckpoint returns the signed note for a tree head.
func signCheckpoint(origin string, size uint64, root []byte, signer identity.Signer) ([]byte, error) {
	text := log.Checkpoint{Origin: origin, Size: size, Hash: root}.Marshal()
	h := &hybridNoteSigner{name: origin, signer: signer}
	return note.Sign(&note.Note{Text: string(text)}, edHalf{h}, mlHalf{h})
}

// ErrCheckpoint wraps every checkpoint verification failure.
var ErrCheckpoint = errors.New("invalid checkpoint")

// VerifyCheckpoint parses a signed note and checks that both the Ed25519
// and the ML-DSA-65 signatures of logKey are on it and verify, and that the
// origin is the expected one.
func VerifyCheckpoint(raw []byte, origin string, logKey *identity.PublicKey) (*Checkpoint, error) {
	if len(raw) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrCheckpoint, len(raw), MaxCheckpointSize)
	}
	vkey, err := VerifierKey(origin, logKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	edV, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	cp, _, n, err := log.ParseCheckpoint(raw, origin, edV)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	var edSig, mlSig []byte
	wantML := mldsaKeyHash(origin, logKey.MLDSA())
	for _, s := range n.Sigs {
		if s.Hash == edV.KeyHash() {
			edSig = sigBytes(s.Base64)
		}
	}
	for _, s := range n.UnverifiedSigs {
		if s.Name == origin && s.Hash == wantML {
			mlSig = sigBytes(s.Base64)
		}
	}
	if mlSig == nil {
		return nil, fmt.Errorf("%w: no ML-DSA-65 signature by the log key", ErrCheckpoint)
	}
	if err := logKey.Verify(identity.PurposeCheckpoint, []byte(n.Text), &identity.Signature{Ed25519: edSig, MLDSA: mlSig}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	return &Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Note: raw}, nil
}

// sigBytes strips the 4-byte key hash from a note signature.
func sigBytes(b64 string) []byte {
	b, err := decodeStd(b64)
	if err != nil || len(b) < 4 {
		return nil
	}
	return b[4:]
}
