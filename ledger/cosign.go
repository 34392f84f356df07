package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/soulfra/calnet/identity"
)

// C2SP tlog-cosignature: a witness cosigns a checkpoint it has checked to
// be consistent with every earlier one it saw, with an Ed25519 key, as a
// signed-note signature of type 0x04 over
//
//	cosignature/v1
//	time <unix seconds>
//	<the checkpoint's note text>
//
// whose bytes are the 8-byte big-endian time followed by the Ed25519
// signature. A verifier requires N valid cosignatures from a witness set it
// chose.
const cosignatureV1Type = 0x04

// Errors of cosigned-checkpoint verification, each wrapped with the detail.
var (
	// ErrCosignature: a signature line carries the name and key hash of a
	// trusted witness but does not verify (tampered, or of another text).
	ErrCosignature = errors.New("invalid cosignature")
	// ErrTooFewCosignatures: fewer trusted witnesses cosigned than required.
	ErrTooFewCosignatures = errors.New("too few witness cosignatures")
	// ErrWitnessKey: a witness verifier key is malformed.
	ErrWitnessKey = errors.New("invalid witness key")
	// ErrFork: two checkpoints of one log at the same size with different
	// roots, or a consistency proof between two that fails: the log showed
	// two histories.
	ErrFork = errors.New("log fork")
)

// WitnessKey is a witness's public key: it verifies the witness's
// cosignatures (a note.Verifier).
type WitnessKey struct {
	name string
	key  ed25519.PublicKey
	hash uint32
}

var _ note.Verifier = (*WitnessKey)(nil)

func validNoteName(name string) bool {
	return name != "" && len(name) <= maxNameLen && utf8.ValidString(name) &&
		strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

func cosignKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', cosignatureV1Type})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// NewWitnessKey returns the witness key of name and an Ed25519 public key.
func NewWitnessKey(name string, pub ed25519.PublicKey) (*WitnessKey, error) {
	if !validNoteName(name) {
		return nil, fmt.Errorf("%w: name %q: want 1..%d bytes without spaces or '+'", ErrWitnessKey, name, maxNameLen)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %d-byte public key, want %d", ErrWitnessKey, len(pub), ed25519.PublicKeySize)
	}
	return &WitnessKey{name: name, key: slices.Clone(pub), hash: cosignKeyHash(name, pub)}, nil
}

// ParseWitnessKey parses a witness's verifier key in the signed-note form
// "<name>+<key hash, 8 hex digits>+<base64 of 0x04 and the Ed25519 key>".
func ParseWitnessKey(vkey string) (*WitnessKey, error) {
	if len(vkey) > MaxWitnessKeyLen {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrWitnessKey, len(vkey), MaxWitnessKeyLen)
	}
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%w: want <name>+<hash>+<key>", ErrWitnessKey)
	}
	h, err := strconv.ParseUint(hash16, 16, 32)
	if err != nil || len(hash16) != 8 {
		return nil, fmt.Errorf("%w: key hash %q: want 8 hex digits", ErrWitnessKey, hash16)
	}
	key, err := decodeStd(key64)
	if err != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != cosignatureV1Type {
		return nil, fmt.Errorf("%w: key: want base64 of the byte 0x04 and a 32-byte Ed25519 key", ErrWitnessKey)
	}
	w, err := NewWitnessKey(name, key[1:])
	if err != nil {
		return nil, err
	}
	if uint32(h) != w.hash {
		return nil, fmt.Errorf("%w: key hash %08x does not match the key (%08x)", ErrWitnessKey, h, w.hash)
	}
	return w, nil
}

// Name returns the witness's name.
func (w *WitnessKey) Name() string { return w.name }

// KeyHash returns the signed-note key hash of the witness key.
func (w *WitnessKey) KeyHash() uint32 { return w.hash }

// String returns the verifier key in signed-note form.
func (w *WitnessKey) String() string {
	return fmt.Sprintf("%s+%08x+%s", w.name, w.hash, base64.StdEncoding.EncodeToString(append([]byte{cosignatureV1Type}, w.key...)))
}

// Verify reports whether sig is this witness's cosignature of the
// checkpoint text msg.
func (w *WitnessKey) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	m, err := cosignedMessage(t, msg)
	if err != nil {
		return false
	}
	return ed25519.Verify(w.key, m, sig[8:])
}

// cosignedMessage is what a cosignature/v1 signs; msg must be a checkpoint
// body of three lines (no extension lines, which the formats of this log
// never carry).
func cosignedMessage(t uint64, msg []byte) ([]byte, error) {
	if t > 1<<63-1 {
		return nil, errors.New("cosignature time out of range")
	}
	if bytes.Count(msg, []byte{'\n'}) != 3 || !bytes.HasSuffix(msg, []byte{'\n'}) {
		return nil, errors.New("not a three-line checkpoint")
	}
	return fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", t, msg), nil
}

// CosignatureSigner cosigns checkpoints with a witness's Ed25519 key (a
// note.Signer). Clock gives the cosignature's time.
type CosignatureSigner struct {
	key   *WitnessKey
	priv  ed25519.PrivateKey
	clock func() time.Time
}

var _ note.Signer = (*CosignatureSigner)(nil)

// NewCosignatureSigner returns the signer of witness name with priv; clock
// nil means time.Now.
func NewCosignatureSigner(name string, priv ed25519.PrivateKey, clock func() time.Time) (*CosignatureSigner, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: %d-byte private key", ErrWitnessKey, len(priv))
	}
	k, err := NewWitnessKey(name, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	if clock == nil {
		clock = time.Now
	}
	return &CosignatureSigner{key: k, priv: priv, clock: clock}, nil
}

// Name returns the witness's name.
func (s *CosignatureSigner) Name() string { return s.key.name }

// KeyHash returns the witness key's hash.
func (s *CosignatureSigner) KeyHash() uint32 { return s.key.hash }

// Verifier returns the witness's public key.
func (s *CosignatureSigner) Verifier() *WitnessKey { return s.key }

// Sign returns the cosignature of the checkpoint text msg.
func (s *CosignatureSigner) Sign(msg []byte) ([]byte, error) {
	t := uint64(max(s.clock().Unix(), 0))
	m, err := cosignedMessage(t, msg)
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint64(nil, t), ed25519.Sign(s.priv, m)...), nil
}

// WitnessPolicy is what a verifier requires of a checkpoint beyond the
// log's own signature: Required valid cosignatures from distinct witnesses
// of Witnesses. The zero policy requires none.
type WitnessPolicy struct {
	Witnesses []*WitnessKey
	Required  int
}

// Validate checks the policy itself.
func (p WitnessPolicy) Validate() error {
	if p.Required < 0 || p.Required > len(p.Witnesses) {
		return fmt.Errorf("witness policy: %d cosignatures required of %d witnesses", p.Required, len(p.Witnesses))
	}
	if len(p.Witnesses) > MaxWitnesses {
		return fmt.Errorf("witness policy: %d witnesses, over the limit of %d", len(p.Witnesses), MaxWitnesses)
	}
	seen := map[string]bool{}
	for _, w := range p.Witnesses {
		id := w.name + "+" + strconv.FormatUint(uint64(w.hash), 16)
		if seen[id] || seen[w.name] {
			return fmt.Errorf("witness policy: witness %s listed twice", w.name)
		}
		seen[id], seen[w.name] = true, true
	}
	return nil
}

// Cosigned is a checkpoint verified against the log key and a witness
// policy.
type Cosigned struct {
	*Checkpoint
	// Witnesses names the trusted witnesses whose cosignatures verified,
	// and CosignedAt their cosignatures' times, in the same order.
	Witnesses  []string
	CosignedAt []time.Time
	// Unknown counts signature lines from keys neither the log's nor in
	// the witness set; they are ignored.
	Unknown int
}

// VerifyCosigned verifies a checkpoint's log signatures (VerifyCheckpoint)
// and then its cosignatures against policy. A signature line naming a
// trusted witness that does not verify is refused (ErrCosignature), even if
// enough others do; lines from unknown keys are counted and ignored; fewer
// than policy.Required valid ones is ErrTooFewCosignatures.
func VerifyCosigned(raw []byte, origin string, logKey *identity.PublicKey, policy WitnessPolicy) (*Cosigned, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	cp, err := VerifyCheckpoint(raw, origin, logKey)
	if err != nil {
		return nil, err
	}
	out := &Cosigned{Checkpoint: cp}
	vs := make([]note.Verifier, len(policy.Witnesses))
	for i, w := range policy.Witnesses {
		vs[i] = w
	}
	var invalid *note.InvalidSignatureError
	var unverified *note.UnverifiedNoteError
	n, err := note.Open(raw, note.VerifierList(vs...))
	switch {
	case errors.As(err, &invalid):
		return nil, fmt.Errorf("%w: the signature of witness %s (key hash %08x) does not verify", ErrCosignature, invalid.Name, invalid.Hash)
	case errors.As(err, &unverified):
		n = unverified.Note
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	edHash := ed25519KeyHash(origin, logKey.Ed25519())
	mlHash := mldsaKeyHash(origin, logKey.MLDSA())
	var unknown []string
	for _, s := range n.UnverifiedSigs {
		if s.Name == origin && (s.Hash == edHash || s.Hash == mlHash) {
			continue
		}
		out.Unknown++
		unknown = append(unknown, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	for _, s := range n.Sigs {
		b, err := decodeStd(s.Base64)
		if err != nil || len(b) < 12 {
			return nil, fmt.Errorf("%w: witness %s: malformed signature", ErrCosignature, s.Name)
		}
		out.Witnesses = append(out.Witnesses, s.Name)
		out.CosignedAt = append(out.CosignedAt, time.Unix(int64(binary.BigEndian.Uint64(b[4:12])&(1<<63-1)), 0).UTC())
	}
	if len(out.Witnesses) < policy.Required {
		msg := fmt.Sprintf("%d of the %d required", len(out.Witnesses), policy.Required)
		if len(out.Witnesses) > 0 {
			msg += " (from " + strings.Join(out.Witnesses, ", ") + ")"
		}
		if len(unknown) > 0 {
			msg += "; signatures from witnesses not in the trusted set were ignored: " + strings.Join(unknown, ", ")
		}
		return nil, fmt.Errorf("%w: checkpoint of size %d has %s", ErrTooFewCosignatures, cp.Size, msg)
	}
	return out, nil
}

// CheckFork compares two verified checkpoints of one log: the same size
// with different roots is ErrFork. With a consistency proof from the
// smaller to the larger (nil when the sizes are equal) it also proves the
// larger extends the smaller, else ErrFork.
func CheckFork(a, b *Checkpoint, p *ConsistencyProof) error {
	if a.Origin != b.Origin {
		return fmt.Errorf("checkpoints of two logs: %q and %q", a.Origin, b.Origin)
	}
	if a.Size > b.Size {
		a, b = b, a
	}
	if a.Size == b.Size {
		if !bytes.Equal(a.Root, b.Root) {
			return fmt.Errorf("%w: two checkpoints of size %d with different roots %x and %x", ErrFork, a.Size, a.Root, b.Root)
		}
		return nil
	}
	if p == nil {
		return fmt.Errorf("consistency from size %d to %d: no proof given", a.Size, b.Size)
	}
	if p.OldSize != a.Size || p.NewSize != b.Size {
		return fmt.Errorf("consistency proof is for sizes %d to %d, not %d to %d", p.OldSize, p.NewSize, a.Size, b.Size)
	}
	if err := p.Verify(a.Root, b.Root); err != nil {
		return fmt.Errorf("%w: the tree of size %d is not a prefix of the tree of size %d: %w", ErrFork, a.Size, b.Size, err)
	}
	return nil
}
