package faultcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/ledger"
)

// maxCheckpoint bounds a served checkpoint note.
const maxCheckpoint = 64 << 10

// Seen is a checkpoint a server served during the run, its signature
// verified.
type Seen struct {
	Server string
	At     time.Time
	Size   uint64
	Root   []byte
}

// Checkpoints polls the servers' public checkpoints (GET /ledger/checkpoint)
// and keeps each distinct one, its signature checked with the network's
// log key. Run it for the whole fault run; a server that is down or
// stopped is skipped until it answers again.
type Checkpoints struct {
	// Servers are the servers to poll.
	Servers []Server
	// Interval is the time between polls (default 100 ms).
	Interval time.Duration

	mu   sync.Mutex
	seen []Seen
	bad  []string // checkpoints that did not verify
}

// Run polls until ctx ends.
func (c *Checkpoints) Run(ctx context.Context) error {
	iv := c.Interval
	if iv <= 0 {
		iv = 100 * time.Millisecond
	}
	nets := map[string]*netdir.Network{}
	for _, s := range c.Servers {
		n, err := netdir.Load(s.NetworkDir, netdir.Options{})
		if err != nil {
			return fmt.Errorf("server %s: %w", s.Name, err)
		}
		nets[s.Name] = n
	}
	hc := &http.Client{Timeout: time.Second}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		for _, s := range c.Servers {
			c.poll(ctx, hc, s, nets[s.Name])
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *Checkpoints) poll(ctx context.Context, hc *http.Client, s Server, n *netdir.Network) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Addr()+"/ledger/checkpoint", nil)
	if err != nil {
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		return // down, stopped or restarting
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckpoint))
	if err != nil || resp.StatusCode != http.StatusOK {
		return
	}
	cp, err := ledger.VerifyCheckpoint(raw, n.Info.Origin, n.Info.LogKey)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad = append(c.bad, fmt.Sprintf("server %s served a checkpoint that does not verify: %v", s.Name, err))
		return
	}
	for _, old := range c.seen {
		if old.Server == s.Name && old.Size == cp.Size && string(old.Root) == string(cp.Root) {
			return
		}
	}
	c.seen = append(c.seen, Seen{Server: s.Name, At: time.Now(), Size: cp.Size, Root: cp.Root})
}

// Seen returns the distinct checkpoints seen.
func (c *Checkpoints) Seen() []Seen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Seen(nil), c.seen...)
}

// ledgerView is what one server's ledger records, read from its disk.
type ledgerView struct {
	size     uint64
	root     []byte
	blessed  map[string]time.Time // Cal ID -> blessing time
	parent   map[string]string    // Cal ID -> parent Cal ID
	revoked  map[string]time.Time // revocation target -> time
	verified error                // the audit and trust replay's verdict
	lg       *ledger.Log
}

// readLedger opens a server's ledger read-only, audits it (hashes,
// signatures, every checkpoint consistent; as `calnet ledger verify`),
// replays its trust history, and reads its blessings and revocations.
// The caller closes v.lg.
func readLedger(ctx context.Context, s Server) (*ledgerView, error) {
	n, err := netdir.Load(s.NetworkDir, netdir.Options{})
	if err != nil {
		return nil, err
	}
	lg, err := n.OpenLedger(false)
	if err != nil {
		return nil, err
	}
	v := &ledgerView{lg: lg, size: lg.Size(), blessed: map[string]time.Time{}, parent: map[string]string{}, revoked: map[string]time.Time{}}
	if _, err := lg.Audit(ctx); err != nil {
		v.verified = fmt.Errorf("audit: %w", err)
	} else if _, err := n.Replay(ctx, lg); err != nil {
		v.verified = fmt.Errorf("trust history: %w", err)
	}
	if v.root, err = lg.Root(v.size); err != nil {
		return v, errors.Join(err, lg.Close())
	}
	for i := range v.size {
		raw, err := lg.Entry(i)
		if err != nil {
			return v, errors.Join(fmt.Errorf("entry %d: %w", i, err), lg.Close())
		}
		e, err := ledger.DecodeEntry(raw)
		if err != nil {
			return v, errors.Join(fmt.Errorf("entry %d: %w", i, err), lg.Close())
		}
		switch e.Type {
		case ledger.TypeBlessing:
			v.blessed[e.Subject] = e.Time
			v.parent[e.Subject] = e.Actor
		case ledger.TypeRevocation:
			if _, ok := v.revoked[e.Subject]; !ok {
				v.revoked[e.Subject] = e.Time
			}
		}
	}
	return v, nil
}

// revokedAt is when id was revoked, itself or through an ancestor: the
// earliest such revocation.
func (v *ledgerView) revokedAt(id string) (time.Time, bool) {
	var at time.Time
	found := false
	for cur, hops := id, 0; cur != "" && hops < 64; cur, hops = v.parent[cur], hops+1 {
		if t, ok := v.revoked[cur]; ok && (!found || t.Before(at)) {
			at, found = t, true
		}
	}
	return at, found
}
