package snapshot

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/soulfra/calnet/internal/strictjson"
)

// Format names this version of the snapshot format.
const Format = "calnet-snapshot/1"

// MaxManifest bounds manifest.json.
const MaxManifest = 1 << 20

// Manifest says what a snapshot holds.
type Manifest struct {
	// Format is Format.
	Format string `json:"format"`
	// Network is the network's ID; Origin its ledger's origin line.
	Network string `json:"network"`
	Origin  string `json:"origin"`
	// CreatedAt is when the state was captured.
	CreatedAt time.Time `json:"created_at"`
	// Ledger is the ledger's size and root hash (hex) in the snapshot.
	Ledger LedgerHead `json:"ledger"`
	// Store is the state store's view.
	Store StoreView `json:"store"`
	// Cals counts the Cals the state holds that may run again, and says
	// which of them have no sealed key in the snapshot, and why.
	Cals CalKeys `json:"cals"`
	// Bytes is the size of the files, the store's copy and the Cals'
	// files together; the ledger's entries come on top.
	Bytes int64 `json:"bytes"`
}

// LedgerHead is a ledger's size and root.
type LedgerHead struct {
	Size uint64 `json:"size"`
	Root string `json:"root"`
}

// StoreView identifies the store's view: its index (bbolt's transaction ID,
// a Raft index) and the size of its copy.
type StoreView struct {
	Index uint64 `json:"index"`
	Size  int64  `json:"size"`
}

// CalKeys is what the snapshot holds of the Cals' identities.
type CalKeys struct {
	Total   int          `json:"total"`
	WithKey int          `json:"with_key"`
	Missing []MissingKey `json:"missing,omitempty"`
}

// MissingKey is a Cal whose sealed key is not in the snapshot.
type MissingKey struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Validate checks the fields a reader relies on.
func (m *Manifest) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("manifest: format %q, want %q (a snapshot from another version of calnet, or not a snapshot)", m.Format, Format)
	}
	if m.Network == "" || len(m.Network) > 128 {
		return errors.New("manifest: network: want a network ID")
	}
	if m.Origin == "" || len(m.Origin) > 256 {
		return errors.New("manifest: origin: want the ledger's origin")
	}
	if m.CreatedAt.IsZero() {
		return errors.New("manifest: created_at: missing")
	}
	if root, err := hex.DecodeString(m.Ledger.Root); err != nil || len(root) != 32 {
		return fmt.Errorf("manifest: ledger.root %q: want 32 bytes in hex", m.Ledger.Root)
	}
	if m.Store.Size <= 0 {
		return fmt.Errorf("manifest: store.size %d: want the size of the store's copy", m.Store.Size)
	}
	if m.Bytes < 0 || m.Cals.Total < 0 || m.Cals.WithKey < 0 || m.Cals.WithKey > m.Cals.Total || len(m.Cals.Missing) > m.Cals.Total {
		return errors.New("manifest: bytes or cals: negative or inconsistent counts")
	}
	return nil
}

// LedgerRoot is the manifest's ledger root as bytes (after Validate).
func (m *Manifest) LedgerRoot() []byte {
	b, _ := hex.DecodeString(m.Ledger.Root)
	return b
}

func parseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := strictjson.Unmarshal(b, MaxManifest, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}
