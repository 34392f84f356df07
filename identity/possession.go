package identity

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"

	"github.com/soulfra/calnet/internal/strictjson"
)

// Limits on a possession challenge: long enough to be unpredictable, short
// enough to bound the work of an untrusted verifier's request.
const (
	MinChallengeSize = 16
	MaxChallengeSize = 256
)

// PossessionProof is a non-interactive zero-knowledge proof that the prover
// knows the secret scalar of a Cal's Ed25519 identity key: a Schnorr proof
// (RFC 8235) made non-interactive with Fiat-Shamir and bound to the Cal's ID
// and to a verifier's challenge, so it cannot be replayed elsewhere. It
// reveals nothing about the key beyond possession (honest-verifier zero
// knowledge in the random-oracle model).
//
// It covers the Ed25519 half. Possession of the ML-DSA-65 half, which has no
// comparable proof, is shown by a hybrid signature over the same challenge
// (PurposeActivation); a Cal activating presents both.
type PossessionProof struct {
	// Commitment is V = [v]B for the prover's random v.
	Commitment []byte
	// Response is r = v - c*x mod L.
	Response []byte
}

const possessionTag = "calnet-possession-v1"

func possessionChallenge(id ID, pub, commitment, challenge []byte) (*edwards25519.Scalar, error) {
	h := sha512.New()
	h.Write([]byte(possessionTag))
	for _, part := range [][]byte{edwards25519.NewGeneratorPoint().Bytes(), commitment, pub, id[:], challenge} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
}

func checkChallenge(c []byte) error {
	if len(c) < MinChallengeSize || len(c) > MaxChallengeSize {
		return fmt.Errorf("challenge is %d bytes, want %d..%d", len(c), MinChallengeSize, MaxChallengeSize)
	}
	return nil
}

// ProvePossession answers a verifier's challenge with a possession proof.
// rnd is crypto/rand when nil.
func (k *PrivateKey) ProvePossession(challenge []byte, rnd io.Reader) (*PossessionProof, error) {
	if err := checkChallenge(challenge); err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	hs := sha512.Sum512(k.edSeed)
	x, err := edwards25519.NewScalar().SetBytesWithClamping(hs[:32])
	if err != nil {
		return nil, err
	}
	var vb [64]byte
	if _, err := io.ReadFull(rnd, vb[:]); err != nil {
		return nil, fmt.Errorf("prove possession: %w", err)
	}
	v, err := edwards25519.NewScalar().SetUniformBytes(vb[:])
	if err != nil {
		return nil, err
	}
	commitment := new(edwards25519.Point).ScalarBaseMult(v).Bytes()
	c, err := possessionChallenge(k.pub.id, k.pub.ed, commitment, challenge)
	if err != nil {
		return nil, err
	}
	r := edwards25519.NewScalar().Subtract(v, edwards25519.NewScalar().Multiply(c, x))
	return &PossessionProof{Commitment: commitment, Response: r.Bytes()}, nil
}

// ErrNoPossession is returned when a possession proof does not verify.
var ErrNoPossession = errors.New("possession proof does not verify")

// VerifyPossession checks a proof against the challenge the verifier sent.
func (k *PublicKey) VerifyPossession(challenge []byte, p *PossessionProof) error {
	if err := checkChallenge(challenge); err != nil {
		return err
	}
	if p == nil || len(p.Commitment) != 32 || len(p.Response) != 32 {
		return fmt.Errorf("%w: commitment and response must be 32 bytes each", ErrNoPossession)
	}
	r, err := edwards25519.NewScalar().SetCanonicalBytes(p.Response)
	if err != nil {
		return fmt.Errorf("%w: response is not a canonical scalar", ErrNoPossession)
	}
	a, err := new(edwards25519.Point).SetBytes(k.ed)
	if err != nil {
		return fmt.Errorf("%w: identity key is not a valid point", ErrNoPossession)
	}
	c, err := possessionChallenge(k.id, k.ed, p.Commitment, challenge)
	if err != nil {
		return err
	}
	// V must equal [r]B + [c]A.
	want := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(c, a, r).Bytes()
	if string(want) != string(p.Commitment) {
		return ErrNoPossession
	}
	return nil
}

type possessionJSON struct {
	Commitment []byte `json:"commitment"`
	Response   []byte `json:"response"`
}

// MarshalJSON encodes the proof as {"commitment":"<base64>","response":"<base64>"}.
func (p *PossessionProof) MarshalJSON() ([]byte, error) {
	return json.Marshal(possessionJSON{p.Commitment, p.Response})
}

// ParsePossessionProof decodes a proof's JSON.
func ParsePossessionProof(b []byte) (*PossessionProof, error) {
	var j possessionJSON
	if err := strictjson.Unmarshal(b, 1024, &j); err != nil {
		return nil, fmt.Errorf("possession proof: %w", err)
	}
	if len(j.Commitment) != 32 || len(j.Response) != 32 {
		return nil, fmt.Errorf("possession proof: commitment and response must be 32 bytes each")
	}
	return &PossessionProof{Commitment: j.Commitment, Response: j.Response}, nil
}
