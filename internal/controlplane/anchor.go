package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/ledger"
)

// The ledger checks its own files against each other, but a consistent
// older copy of the whole ledger directory (a backup restored over it, or
// files copied back by someone with write access to the data directory)
// cannot be told apart from the inside. The control plane therefore keeps
// the size and root of the newest ledger it has seen in its state store
// (state.db, outside the ledger directory), and refuses to start on a
// ledger that is shorter or whose history differs at that size: blessings
// and revocations recorded since would silently be missing.

const anchorKey = "ledger_anchor"

// ledgerAnchor is the newest ledger checkpoint the control plane saw.
type ledgerAnchor struct {
	Size uint64    `json:"size"`
	Root []byte    `json:"root"`
	At   time.Time `json:"at"`
}

// ErrLedgerRollback is returned by Open when the ledger is older than the
// state store's anchor.
var ErrLedgerRollback = errors.New("the ledger is older than the control plane's state store")

// checkLedgerAnchor compares lg with the anchor in st. accept replaces a
// mismatching anchor (the operator accepted the loss) instead of refusing.
func checkLedgerAnchor(ctx context.Context, st store.Store, lg *ledger.Log, ledgerDir, storePath string, accept bool, log *slog.Logger, now time.Time) error {
	var a ledgerAnchor
	err := st.View(ctx, func(tx store.Tx) error { return store.GetJSON(tx, bucketMeta, anchorKey, &a) })
	if errors.Is(err, store.ErrNotFound) {
		return writeLedgerAnchor(ctx, st, lg.Checkpoint(), now)
	}
	if err != nil {
		return err
	}
	cp := lg.Checkpoint()
	var problem string
	if cp.Size < a.Size {
		problem = fmt.Sprintf("the ledger in %s holds %d entries, but the state store %s recorded %d entries (root %x) at %s",
			ledgerDir, cp.Size, storePath, a.Size, a.Root, a.At.Format(time.RFC3339))
	} else if root, err := lg.Root(a.Size); err != nil || !bytes.Equal(root, a.Root) {
		problem = fmt.Sprintf("the ledger in %s has a different history at entry %d than the state store %s recorded (root %x at %s)",
			ledgerDir, a.Size, storePath, a.Root, a.At.Format(time.RFC3339))
	}
	if problem == "" {
		return writeLedgerAnchor(ctx, st, cp, now)
	}
	if !accept {
		return fmt.Errorf("%w: %s. The ledger directory was replaced by an older copy or lost entries, so revocations and blessings recorded since may be missing. "+
			"Restore the newest copy of %s (the files entries, index, checkpoints and head, together) and start again; "+
			"if no newer copy exists and you accept that loss, start once with --accept-ledger-rollback", ErrLedgerRollback, problem, ledgerDir)
	}
	log.Warn("ledger rollback accepted by the operator", "problem", problem)
	return writeLedgerAnchor(ctx, st, cp, now)
}

func writeLedgerAnchor(ctx context.Context, st store.Store, cp *ledger.Checkpoint, now time.Time) error {
	return st.Update(ctx, func(tx store.Tx) error {
		return store.PutJSON(tx, bucketMeta, anchorKey, ledgerAnchor{Size: cp.Size, Root: cp.Root, At: now})
	})
}

// anchorLedger records the ledger's latest checkpoint in the state store if
// it grew since the last time.
func (s *Server) anchorLedger(ctx context.Context) {
	cp := s.lg.Checkpoint()
	if cp.Size <= s.anchored.Load() {
		return
	}
	if err := writeLedgerAnchor(ctx, s.store, cp, s.now()); err != nil {
		s.log.Error("recording the ledger's size in the state store", "err", err)
		return
	}
	s.anchored.Store(cp.Size)
}

// kickAnchor asks anchorLoop to record the ledger now (after a revocation).
func (s *Server) kickAnchor() {
	select {
	case s.anchorKick <- struct{}{}:
	default:
	}
}

// anchorLoop records the ledger's size every second, at once when kicked,
// and a last time when ctx ends.
func (s *Server) anchorLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.anchorLedger(context.Background())
			return
		case <-t.C:
		case <-s.anchorKick:
		}
		s.anchorLedger(ctx)
	}
}
