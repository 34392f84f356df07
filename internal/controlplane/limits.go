package controlplane

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxCalAnswer bounds what the control plane reads of a Cal's answer (a
// Cal is not trusted: its answers are decoded strictly).
const maxCalAnswer = 4 << 20

// limiter holds the network-wide and per-parent spawn token buckets.
type limiter struct {
	cfg     Limits
	global  *rate.Limiter
	mu      sync.Mutex
	parents map[string]*rate.Limiter
}

func newLimiter(cfg Limits) *limiter {
	return &limiter{cfg: cfg, global: rate.NewLimiter(rate.Limit(cfg.SpawnRate), cfg.SpawnBurst), parents: map[string]*rate.Limiter{}}
}

// allow takes a token from both buckets, or reports which is empty and
// when to retry. A refused request takes no token.
func (l *limiter) allow(parent string, now time.Time) (ok bool, which string, retry time.Duration) {
	l.mu.Lock()
	p := l.parents[parent]
	if p == nil {
		p = rate.NewLimiter(rate.Limit(l.cfg.ParentRate), l.cfg.ParentBurst)
		l.parents[parent] = p
	}
	l.mu.Unlock()
	g := l.global.ReserveN(now, 1)
	if d := g.DelayFrom(now); d > 0 {
		g.CancelAt(now)
		return false, "network spawn rate", d
	}
	r := p.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		g.CancelAt(now)
		return false, "parent spawn rate", d
	}
	return true, "", 0
}
