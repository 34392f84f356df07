package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger"
)

func (a *app) verifyProofOffline(origin string, key *identity.PublicKey, proofFile, cpFile, oldCPFile string) error {
	if proofFile == "" || cpFile == "" {
		return errors.New("--proof and --checkpoint: both are needed to check a proof")
	}
	readCP := func(path string) (*ledger.Checkpoint, error) {
		b, err := readSmall(path, ledger.MaxCheckpointSize)
		if err != nil {
			return nil, err
		}
		return ledger.VerifyCheckpoint(b, origin, key)
	}
	cp, err := readCP(cpFile)
	if err != nil {
		return fmt.Errorf("--checkpoint: %w", err)
	}
	pb, err := readSmall(proofFile, ledger.MaxProofJSON)
	if err != nil {
		return err
	}
	if strings.Contains(string(pb), `"old_size"`) {
		if oldCPFile == "" {
			return errors.New("--old-checkpoint: needed to check a consistency proof")
		}
		old, err := readCP(oldCPFile)
		if err != nil {
			return fmt.Errorf("--old-checkpoint: %w", err)
		}
		p, err := ledger.ParseConsistencyProof(pb)
		if err != nil {
			return err
		}
		if p.OldSize != old.Size || p.NewSize != cp.Size {
			return fmt.Errorf("proof is for sizes %d -> %d, the checkpoints are %d and %d", p.OldSize, p.NewSize, old.Size, cp.Size)
		}
		if err := p.Verify(old.Root, cp.Root); err != nil {
			return fmt.Errorf("consistency proof does not verify: %w", err)
		}
		return a.print(map[string]any{"ok": true, "old_size": old.Size, "new_size": cp.Size}, func(w io.Writer) {
			fmt.Fprintf(w, "OK  the tree of %d entries is a prefix of the tree of %d entries\n", old.Size, cp.Size)
		})
	}
	p, err := ledger.ParseInclusionProof(pb)
	if err != nil {
		return err
	}
	if p.TreeSize != cp.Size {
		return fmt.Errorf("proof is for tree_size %d, the checkpoint covers %d", p.TreeSize, cp.Size)
	}
	if err := p.Verify(cp.Root); err != nil {
		return fmt.Errorf("inclusion proof does not verify: %w", err)
	}
	return a.print(map[string]any{"ok": true, "index": p.Index, "tree_size": p.TreeSize}, func(w io.Writer) {
		fmt.Fprintf(w, "OK  entry %d is in the tree of %d entries signed by the checkpoint\n", p.Index, p.TreeSize)
	})
}
