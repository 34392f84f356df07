package ledger

import (
	"encoding/base64"
	"fmt"

	"github.com/transparency-dev/merkle/proof"

	"github.com/soulfra/calnet/internal/strictjson"
)

// InclusionProof shows that a leaf is in the tree of a given size.
type InclusionProof struct {
	Index    uint64   `json:"index"`
	TreeSize uint64   `json:"tree_size"`
	LeafHash []byte   `json:"leaf_hash"`
	Hashes   [][]byte `json:"hashes"`
}

// ConsistencyProof shows that the tree of OldSize is a prefix of NewSize.
type ConsistencyProof struct {
	OldSize uint64   `json:"old_size"`
	NewSize uint64   `json:"new_size"`
	Hashes  [][]byte `json:"hashes"`
}

func decodeStd(s string) ([]byte, error) { return base64.StdEncoding.Strict().DecodeString(s) }

func checkHashes(field string, hs [][]byte) error {
	if len(hs) > MaxProofHashes {
		return fmt.Errorf("%s: %d hashes, over the limit of %d", field, len(hs), MaxProofHashes)
	}
	for i, h := range hs {
		if len(h) != 32 {
			return fmt.Errorf("%s[%d]: %d bytes, want 32", field, i, len(h))
		}
	}
	return nil
}

// ParseInclusionProof decodes an inclusion proof's JSON.
func ParseInclusionProof(b []byte) (*InclusionProof, error) {
	var p InclusionProof
	if err := strictjson.Unmarshal(b, MaxProofJSON, &p); err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	if len(p.LeafHash) != 32 {
		return nil, fmt.Errorf("inclusion proof: leaf_hash: %d bytes, want 32", len(p.LeafHash))
	}
	if p.Index >= p.TreeSize {
		return nil, fmt.Errorf("inclusion proof: index %d is not below tree_size %d", p.Index, p.TreeSize)
	}
	if err := checkHashes("inclusion proof: hashes", p.Hashes); err != nil {
		return nil, err
	}
	return &p, nil
}

// ParseConsistencyProof decodes a consistency proof's JSON.
func ParseConsistencyProof(b []byte) (*ConsistencyProof, error) {
	var p ConsistencyProof
	if err := strictjson.Unmarshal(b, MaxProofJSON, &p); err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	if p.OldSize > p.NewSize {
		return nil, fmt.Errorf("consistency proof: old_size %d is over new_size %d", p.OldSize, p.NewSize)
	}
	if err := checkHashes("consistency proof: hashes", p.Hashes); err != nil {
		return nil, err
	}
	return &p, nil
}

// Verify checks the proof against the root of a checkpoint of TreeSize.
func (p *InclusionProof) Verify(root []byte) error {
	if err := checkHashes("hashes", p.Hashes); err != nil {
		return err
	}
	return proof.VerifyInclusion(hasher, p.Index, p.TreeSize, p.LeafHash, p.Hashes, root)
}

// Verify checks the proof against the roots of two checkpoints.
func (p *ConsistencyProof) Verify(oldRoot, newRoot []byte) error {
	if err := checkHashes("hashes", p.Hashes); err != nil {
		return err
	}
	return proof.VerifyConsistency(hasher, p.OldSize, p.NewSize, p.Hashes, oldRoot, newRoot)
}

// LeafHash returns the RFC 6962 leaf hash of entry bytes.
func LeafHash(entry []byte) []byte { return hasher.HashLeaf(entry) }
