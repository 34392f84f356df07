package ledger

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/soulfra/calnet/internal/strictjson"
)

// EntryType names the kind of trust event an entry records.
type EntryType string

// The entry types. Later parts of calnet add their events here.
const (
	TypeGenesis    EntryType = "genesis"
	TypeBlessing   EntryType = "blessing"
	TypeRevocation EntryType = "revocation"
	TypeSpawn      EntryType = "spawn"
	TypeActivation EntryType = "activation"
	TypeRotation   EntryType = "rotation"
	TypePolicy     EntryType = "policy"
	TypeAudit      EntryType = "audit"
)

func (t EntryType) valid() bool {
	switch t {
	case TypeGenesis, TypeBlessing, TypeRevocation, TypeSpawn, TypeActivation, TypeRotation, TypePolicy, TypeAudit:
		return true
	}
	return false
}

// Entry is one ledger record. Its encoded JSON bytes are the Merkle leaf.
type Entry struct {
	Type EntryType `json:"type"`
	// Time is when the event was recorded.
	Time time.Time `json:"time"`
	// Subject is the Cal (or network) the event is about, if any.
	Subject string `json:"subject,omitempty"`
	// Actor is who caused it: a Cal ID, "authority", "admin", a token name.
	Actor string `json:"actor,omitempty"`
	// Data is the event's document (a blessing, a revocation, ...).
	Data json.RawMessage `json:"data,omitempty"`
}

// Encode returns the leaf bytes of e, checking its type and size.
func (e *Entry) Encode() ([]byte, error) {
	if !e.Type.valid() {
		return nil, fmt.Errorf("entry type %q is unknown", e.Type)
	}
	if len(e.Subject) > maxNameLen || len(e.Actor) > maxNameLen {
		return nil, fmt.Errorf("entry subject or actor over the limit of %d bytes", maxNameLen)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode entry: %w", err)
	}
	if len(b) > MaxBundleEntrySize {
		return nil, fmt.Errorf("entry is %d bytes, over the limit of %d", len(b), MaxBundleEntrySize)
	}
	return b, nil
}

// DecodeEntry parses leaf bytes.
func DecodeEntry(b []byte) (*Entry, error) {
	var e Entry
	if err := strictjson.Unmarshal(b, MaxEntrySize, &e); err != nil {
		return nil, fmt.Errorf("decode entry: %w", err)
	}
	if !e.Type.valid() {
		return nil, fmt.Errorf("decode entry: type %q is unknown", e.Type)
	}
	if len(e.Subject) > maxNameLen || len(e.Actor) > maxNameLen {
		return nil, fmt.Errorf("decode entry: subject or actor over the limit of %d bytes", maxNameLen)
	}
	return &e, nil
}
