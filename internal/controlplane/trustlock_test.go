package controlplane

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/ledger"
)

// gateSigner signs checkpoints only once the gate opens: a ledger commit
// stalled on its disk and signature, for as long as the test wants.
type gateSigner struct {
	*identity.PrivateKey
	stall   atomic.Bool
	gate    chan struct{}
	signing chan struct{}
	once    sync.Once
}

func (g *gateSigner) Sign(p identity.Purpose, msg []byte) (*identity.Signature, error) {
	if g.stall.Load() {
		g.once.Do(func() { close(g.signing) })
		<-g.gate
	}
	return g.PrivateKey.Sign(p, msg)
}

// TestTrustLockNotHeldAcrossCommit (reliability issue, finding 7): while
// one trust event's ledger commit is stalled, the trust state can be read
// (as every Cal's TLS handshake does) and a second event takes its place
// in the ledger, and both are then made durable. trustMu used to be held
// across the whole append, fsyncs included.
func TestTrustLockNotHeldAcrossCommit(t *testing.T) {
	seed := sha256.Sum256([]byte("trust lock test"))
	key, err := identity.FromSeed(append(seed[:], seed[:]...))
	if err != nil {
		t.Fatal(err)
	}
	g := &gateSigner{PrivateKey: key, gate: make(chan struct{}), signing: make(chan struct{})}
	lg, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: "calnet/test", LogKey: key.Public(), Signer: g})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, lg.Close()) }()
	g.stall.Store(true)
	s := &Server{lg: lg, state: &netdir.State{}}
	s.prom = newPromMetrics(s)
	ctx := context.Background()
	entry := func(subject string) ledger.Entry {
		return ledger.Entry{Type: ledger.TypeSpawn, Time: time.Unix(1, 0).UTC(), Subject: subject}
	}
	applied := 0
	first := make(chan error, 1)
	go func() {
		_, err := s.commitTrust(ctx, entry("a"), func() error { return nil }, func() { applied++ })
		first <- err
	}()
	<-g.signing // the first commit is under way and stalled
	readDone := make(chan struct{})
	go func() {
		s.trustMu.RLock()
		_ = applied
		s.trustMu.RUnlock()
		close(readDone)
	}()
	second := make(chan error, 1)
	staged := make(chan struct{})
	go func() {
		_, err := s.commitTrust(ctx, entry("b"), func() error { return nil }, func() { applied++; close(staged) })
		second <- err
	}()
	deadline := time.After(30 * time.Second)
	for _, c := range []chan struct{}{readDone, staged} {
		select {
		case <-c:
		case <-deadline:
			close(g.gate)
			t.Fatal("the trust state stayed locked while a ledger commit was stalled")
		}
	}
	close(g.gate)
	for _, c := range []chan error{first, second} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if lg.Size() != 2 || applied != 2 {
		t.Fatalf("ledger holds %d entries, %d applied; want 2 and 2", lg.Size(), applied)
	}
}
