package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/ledger"
)

// Errors a Witness refuses a checkpoint with (wrapped with detail).
var (
	// ErrConflict: the caller's idea of the witness's latest size is
	// wrong; ConflictError carries the right one (tlog-witness 409).
	ErrConflict = errors.New("old size does not match the witness's")
	// ErrRollback: a checkpoint smaller than one already cosigned.
	ErrRollback = errors.New("checkpoint older than the one the witness cosigned")
	// ErrUnknownLog: a checkpoint of another origin (tlog-witness 404).
	ErrUnknownLog = errors.New("unknown log")
)

// ConflictError says the witness's latest size (tlog-witness 409).
type ConflictError struct{ Size uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v: the witness is at size %d", ErrConflict, e.Size)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// Config configures a Witness.
type Config struct {
	// Origin and LogKey identify and verify the witnessed log.
	Origin string
	LogKey *identity.PublicKey
	// Signer cosigns with the witness's key.
	Signer *ledger.CosignatureSigner
	// StateFile keeps the latest cosigned checkpoint.
	StateFile string
	Logger    *slog.Logger
}

// state is the state file.
type state struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   []byte `json:"root"`
	// Note is the checkpoint with the witness's cosignature.
	Note []byte `json:"note"`
}

// maxStateFile bounds the state file.
const maxStateFile = 64 << 10

// Witness cosigns the checkpoints of one log. It is safe for concurrent
// use; a checkpoint is cosigned only once the state naming it is on disk.
type Witness struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	latest *state // nil: nothing cosigned yet
}

// New opens a witness, reading its state file if it exists.
func New(cfg Config) (*Witness, error) {
	if cfg.Origin == "" || cfg.LogKey == nil || cfg.Signer == nil || cfg.StateFile == "" {
		return nil, errors.New("witness: Origin, LogKey, Signer and StateFile are required")
	}
	w := &Witness{cfg: cfg, log: cfg.Logger}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	b, err := limitedfile.Read(cfg.StateFile, maxStateFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return w, nil
	case err != nil:
		return nil, fmt.Errorf("witness state: %w", err)
	}
	var st state
	if err := strictjson.Unmarshal(b, maxStateFile, &st); err != nil {
		return nil, fmt.Errorf("witness state %s: %w", cfg.StateFile, err)
	}
	if st.Origin != cfg.Origin {
		return nil, fmt.Errorf("witness state %s: it witnesses log %q, not %q", cfg.StateFile, st.Origin, cfg.Origin)
	}
	// The state must be what this witness cosigned of this log.
	cp, err := ledger.VerifyCosigned(st.Note, cfg.Origin, cfg.LogKey, ledger.WitnessPolicy{Witnesses: []*ledger.WitnessKey{cfg.Signer.Verifier()}, Required: 1})
	if err != nil {
		return nil, fmt.Errorf("witness state %s: %w", cfg.StateFile, err)
	}
	if cp.Size != st.Size || !bytes.Equal(cp.Root, st.Root) {
		return nil, fmt.Errorf("witness state %s: size and root do not match its checkpoint", cfg.StateFile)
	}
	w.latest = &st
	return w, nil
}

// Latest returns the latest cosigned checkpoint note, or nil.
func (w *Witness) Latest() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.latest == nil {
		return nil
	}
	return w.latest.Note
}

// Size returns the size of the latest cosigned checkpoint (0 if none).
func (w *Witness) Size() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.latest == nil {
		return 0
	}
	return w.latest.Size
}

// Add verifies a checkpoint note (the log's signatures) and a consistency
// proof from oldSize, which must be the witness's latest size, and cosigns
// it. It returns the witness's signature line ("— name base64\n"). A
// checkpoint of the witness's own size is cosigned again only if its root
// is the same (else ErrFork); an older one is ErrRollback.
func (w *Witness) Add(ctx context.Context, oldSize uint64, proof [][]byte, raw []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cp, err := ledger.VerifyCheckpoint(raw, w.cfg.Origin, w.cfg.LogKey)
	if err != nil {
		if first, _, _ := strings.Cut(string(raw), "\n"); first != w.cfg.Origin {
			return nil, fmt.Errorf("%w: origin %q", ErrUnknownLog, first)
		}
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var have uint64
	if w.latest != nil {
		have = w.latest.Size
	}
	if oldSize != have {
		return nil, &ConflictError{Size: have}
	}
	if cp.Size < have {
		return nil, fmt.Errorf("%w: size %d, the witness cosigned size %d", ErrRollback, cp.Size, have)
	}
	if w.latest != nil {
		old := &ledger.Checkpoint{Origin: w.cfg.Origin, Size: w.latest.Size, Root: w.latest.Root}
		var p *ledger.ConsistencyProof
		if cp.Size > have {
			p = &ledger.ConsistencyProof{OldSize: have, NewSize: cp.Size, Hashes: proof}
		}
		if err := ledger.CheckFork(old, cp, p); err != nil {
			w.log.Error("witness: refused a checkpoint", "origin", w.cfg.Origin, "size", cp.Size, "err", err)
			return nil, err
		}
	}
	line, cosigned, err := w.cosign(raw)
	if err != nil {
		return nil, err
	}
	st := &state{Origin: w.cfg.Origin, Size: cp.Size, Root: cp.Root, Note: cosigned}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(w.cfg.StateFile, b, 0o600); err != nil {
		return nil, fmt.Errorf("witness state: %w", err)
	}
	w.latest = st
	return line, nil
}

// cosign returns the witness's signature line for the note and the note
// with it (other witnesses' lines kept, an older line of this witness
// replaced).
func (w *Witness) cosign(raw []byte) (line, cosigned []byte, err error) {
	_, err = note.Open(raw, note.VerifierList())
	var unv *note.UnverifiedNoteError
	if !errors.As(err, &unv) {
		return nil, nil, fmt.Errorf("witness: parse the checkpoint note: %w", err)
	}
	n := unv.Note
	var keep []note.Signature
	for _, s := range n.UnverifiedSigs {
		if s.Name == w.cfg.Signer.Name() && s.Hash == w.cfg.Signer.KeyHash() {
			continue
		}
		keep = append(keep, s)
	}
	n.UnverifiedSigs = nil
	n.Sigs = keep
	out, err := note.Sign(n, w.cfg.Signer)
	if err != nil {
		return nil, nil, fmt.Errorf("witness: cosign: %w", err)
	}
	// The witness's line is the last one note.Sign wrote.
	trimmed := bytes.TrimSuffix(out, []byte("\n"))
	line = append(out[bytes.LastIndexByte(trimmed, '\n')+1:len(trimmed)], '\n')
	return bytes.Clone(line), out, nil
}

// GenerateKey returns a new witness private key file's bytes (the
// Ed25519 seed, base64) and its verifier key.
func GenerateKey(name string) (file []byte, vkey string, err error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, "", err
	}
	k, err := ledger.NewWitnessKey(name, pub)
	if err != nil {
		return nil, "", err
	}
	return []byte(name + "\n" + base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"), k.String(), nil
}

// LoadSigner reads a witness key file: its name on the first line, the
// base64 Ed25519 seed on the second.
func LoadSigner(path string, clock func() time.Time) (*ledger.CosignatureSigner, error) {
	b, err := limitedfile.Read(path, 1024)
	if err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	name, seed64, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	seed, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(seed64))
	if !ok || err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("witness key %s: want the witness's name, then its base64 32-byte Ed25519 seed", path)
	}
	return ledger.NewCosignatureSigner(strings.TrimSpace(name), ed25519.NewKeyFromSeed(seed), clock)
}
