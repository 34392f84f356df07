package controlplane

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/soulfra/calnet/ledger"
)

// A control plane restarted right after a crash waits for the ledger's
// lock, which a child of the dead one may hold for a moment; a writer
// that keeps it is still refused.
func TestOpenLedgerWaitsForItsLock(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, s.store.Close()) }()
	if _, err := openLedgerWaiting(ctx, s.net, 100*time.Millisecond); !errors.Is(err, ledger.ErrLocked) {
		t.Fatalf("open while the lock is held for good: %v, want ErrLocked", err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		if err := s.lg.Close(); err != nil {
			t.Error(err)
		}
		close(released)
	}()
	lg, err := openLedgerWaiting(ctx, s.net, time.Minute)
	if err != nil {
		t.Fatalf("open once the lock is released: %v", err)
	}
	<-released
	must(t, lg.Close())
}
