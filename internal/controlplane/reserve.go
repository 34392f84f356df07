package controlplane

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/store"
)

// The disk reserve: the control plane refuses to write its ledger, state
// and audit trail while the filesystem of its data directory has less
// free space than Limits.MinFreeDisk, so a full disk never cuts a write
// in half. Writes that take a Cal's rights away (revocations) may use
// half of the reserve.

type criticalKey struct{}

// critical marks ctx's writes as ones that may use half of the reserve.
func critical(ctx context.Context) context.Context {
	return context.WithValue(ctx, criticalKey{}, true)
}

// freeDisk returns the free bytes of the filesystem holding dir.
func freeDisk(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// checkDisk returns an error (an *APIError, 507) when the data
// directory's filesystem is below the reserve.
func (s *Server) checkDisk(ctx context.Context) error {
	s.limMu.Lock()
	reserve := s.cfg.Limits.MinFreeDisk
	s.limMu.Unlock()
	if reserve <= 0 {
		return nil
	}
	what := "writes"
	if v, _ := ctx.Value(criticalKey{}).(bool); v {
		reserve /= 2
		what = "even revocations"
	}
	free, err := freeDisk(s.cfg.DataDir)
	if err != nil || free >= reserve {
		return nil // a statfs that fails is no reason to stop; the write will say
	}
	return &APIError{Status: 507, RetryAfter: 30 * time.Second,
		Msg: fmt.Sprintf("disk: %d bytes free on the filesystem of %s, below the reserve of %d; refusing %s so nothing stored is damaged (free some space; --min-free-disk sets the reserve)", free, s.cfg.DataDir, reserve, what)}
}

// reserveStore refuses Update transactions below the disk reserve.
type reserveStore struct {
	store.Store
	s *Server
}

// Update implements store.Store.
func (r reserveStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := r.s.checkDisk(ctx); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return r.Store.Update(ctx, fn)
}

// startDisk is what a new Cal stores to start (keys, chain, vault): the
// Cal filesystem must have it free, at most the Cal's quota.
const startDisk = 16 << 20

// checkSpawnDisk refuses a spawn while the control plane's filesystem is
// below its reserve, or the Cal filesystem has no room for a new Cal's
// start-up files. Disk quotas are limits: together they may exceed the
// Cal filesystem, as sparse files may exceed a disk.
func (s *Server) checkSpawnDisk(ctx context.Context, quota int64) *APIError {
	if err := s.checkDisk(ctx); err != nil {
		ae := err.(*APIError)
		return &APIError{Status: ae.Status, RetryAfter: ae.RetryAfter, Msg: "host resources: " + ae.Msg}
	}
	if s.pool == nil {
		return nil
	}
	need := min(quota, startDisk)
	if free, err := freeDisk(s.pool.Dir()); err == nil && free < need {
		return &APIError{Status: 507, RetryAfter: 30 * time.Second,
			Msg: fmt.Sprintf("host resources: the Cal filesystem has %d bytes free, starting a cal needs %d", free, need)}
	}
	return nil
}
