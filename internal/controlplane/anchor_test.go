package controlplane

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/ledger"
)

// TestLedgerRollbackRefused: a consistent older copy of the whole ledger
// directory opens fine on its own (nothing inside it can tell), so the
// control plane compares it with the size and root its state store
// recorded, and refuses to start on it unless the operator accepts the loss.
func TestLedgerRollbackRefused(t *testing.T) {
	seed := sha256.Sum256([]byte("anchor test"))
	k, _ := identity.FromSeed(append(seed[:], seed[:]...))
	dir := filepath.Join(t.TempDir(), "ledger")
	old := filepath.Join(t.TempDir(), "old")
	cfg := ledger.Config{Dir: dir, Origin: "calnet.test/anchor", LogKey: k.Public(), Signer: k}
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, st.Close()) }()
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	log := slog.New(slog.DiscardHandler)
	entry := func(i int) ledger.Entry {
		return ledger.Entry{Type: ledger.TypeRevocation, Time: now, Subject: string(rune('a' + i))}
	}

	lg, err := ledger.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lg.Append(ctx, entry(0)); err != nil {
		t.Fatal(err)
	}
	if err := checkLedgerAnchor(ctx, st, lg, dir, "state.db", false, log, now); err != nil {
		t.Fatalf("first start: %v", err)
	}
	must(t, lg.Close())
	copyTree(t, dir, old)

	// Later: a revocation, recorded by the anchor.
	lg, _ = ledger.Open(cfg)
	if _, err := lg.Append(ctx, entry(1)); err != nil {
		t.Fatal(err)
	}
	if err := writeLedgerAnchor(ctx, st, lg.Checkpoint(), now); err != nil {
		t.Fatal(err)
	}
	must(t, lg.Close())

	// The older copy comes back.
	os.RemoveAll(dir)
	copyTree(t, old, dir)
	lg, err = ledger.Open(cfg)
	if err != nil {
		t.Fatalf("the older copy opens on its own: %v", err)
	}
	err = checkLedgerAnchor(ctx, st, lg, dir, "state.db", false, log, now)
	if !errors.Is(err, ErrLedgerRollback) || !strings.Contains(err.Error(), "holds 1 entries, but the state store state.db recorded 2") ||
		!strings.Contains(err.Error(), "Restore the newest copy of "+dir) || !strings.Contains(err.Error(), "--accept-ledger-rollback") {
		t.Fatalf("rolled-back ledger: %v", err)
	}
	// A forked history of the same size is refused too.
	if _, err := lg.Append(ctx, entry(7)); err != nil {
		t.Fatal(err)
	}
	if err := checkLedgerAnchor(ctx, st, lg, dir, "state.db", false, log, now); !errors.Is(err, ErrLedgerRollback) || !strings.Contains(err.Error(), "different history at entry 2") {
		t.Fatalf("forked ledger: %v", err)
	}
	// The operator accepts: the anchor follows the ledger from now on.
	if err := checkLedgerAnchor(ctx, st, lg, dir, "state.db", true, log, now); err != nil {
		t.Fatal(err)
	}
	if err := checkLedgerAnchor(ctx, st, lg, dir, "state.db", false, log, now); err != nil {
		t.Fatalf("after accepting: %v", err)
	}
	must(t, lg.Close())
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	must(t, os.MkdirAll(to, 0o700))
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(to, e.Name()), b, 0o600))
	}
}
