package controlplane

import (
	"context"
	"errors"
	"fmt"
	"github.com/soulfra/calnet/api"
	"sort"

	"github.com/soulfra/calnet/internal/store"
)

// Cal states.
const (
	StateDeploying = "deploying"
	StateRunning   = "running"
	StateFailed    = "failed"
	StateStopped   = "stopped"
	StateRevoked   = "revoked"
)

// Spawn states.
const (
	SpawnRequested = "requested"
	SpawnAdmitted  = "admitted"
	SpawnDeploying = "deploying"
	SpawnRunning   = "running"
	SpawnRejected  = "rejected"
	SpawnFailed    = "failed"
)

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// CalRecord is a Cal in the registry; SpawnRecord a spawn request and its
// progress. They are the API's wire types.
type (
	CalRecord   = api.Cal
	SpawnRecord = api.Spawn
)

const (
	bucketCals  = "cals"
	bucketSpawn = "spawns"
	bucketIdem  = "idempotency"
	bucketKEK   = "keks"
	bucketMeta  = "meta"
	bucketToken = "tokens"
)

func (s *Server) getCal(ctx context.Context, id string) (*CalRecord, error) {
	var r CalRecord
	err := s.store.View(ctx, func(tx store.Tx) error { return store.GetJSON(tx, bucketCals, id, &r) })
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Server) putCal(ctx context.Context, r *CalRecord) error {
	r.UpdatedAt = s.now()
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if err := s.store.Update(ctx, func(tx store.Tx) error { return store.PutJSON(tx, bucketCals, r.ID, r) }); err != nil {
		return err
	}
	s.index(r)
	return nil
}

// putChild stores a new Cal and adds it to its parent's children, in one
// transaction.
func (s *Server) putChild(ctx context.Context, r *CalRecord) error {
	r.UpdatedAt = s.now()
	var parent CalRecord
	found := false
	s.regMu.Lock()
	defer s.regMu.Unlock()
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if err := store.PutJSON(tx, bucketCals, r.ID, r); err != nil {
			return err
		}
		found = false
		if err := store.GetJSON(tx, bucketCals, r.Parent, &parent); err != nil {
			return nil // the Master's parent is the genesis, not a Cal
		}
		found = true
		parent.Children = append(parent.Children, r.ID)
		parent.UpdatedAt = r.UpdatedAt
		return store.PutJSON(tx, bucketCals, r.Parent, &parent)
	})
	if err != nil {
		return err
	}
	s.index(r)
	if found {
		s.index(&parent)
	}
	return nil
}

// updateCal applies fn to a stored record atomically.
func (s *Server) updateCal(ctx context.Context, id string, fn func(*CalRecord)) (*CalRecord, error) {
	var r CalRecord
	s.regMu.Lock()
	defer s.regMu.Unlock()
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if err := store.GetJSON(tx, bucketCals, id, &r); err != nil {
			return err
		}
		fn(&r)
		r.UpdatedAt = s.now()
		return store.PutJSON(tx, bucketCals, id, &r)
	})
	if err != nil {
		return nil, err
	}
	s.index(&r)
	return &r, nil
}

func (s *Server) listCals(ctx context.Context) ([]*CalRecord, error) {
	var out []*CalRecord
	err := s.store.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(bucketCals, "", func(_ string, v []byte) error {
			var r CalRecord
			if err := jsonUnmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, &r)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Depth != out[j].Depth {
			return out[i].Depth < out[j].Depth
		}
		return out[i].CreatedAt.Before(out[j].CreatedAt)
	})
	return out, err
}

func (s *Server) putSpawn(ctx context.Context, r *SpawnRecord) error {
	r.UpdatedAt = s.now()
	if err := s.store.Update(ctx, func(tx store.Tx) error { return store.PutJSON(tx, bucketSpawn, r.ID, r) }); err != nil {
		return fmt.Errorf("spawn %s: record state %s: %w", r.ID, r.State, err)
	}
	return nil
}

// unrecorded logs, at ERROR, a state write that failed where no caller
// can be told (a background loop, a stream): lost says what the store
// does not have, attrs name the Cal or spawn. It does nothing when err is
// nil. What the store refused is not in the registry index either (the
// index follows only writes that succeeded), so nothing in memory claims
// it.
func (s *Server) unrecorded(err error, lost string, attrs ...any) {
	if err == nil {
		return
	}
	s.log.Error("state write failed", append(append([]any{"lost", lost}, attrs...), "err", err)...)
}

// stateErr is the API's answer to a state write that failed: the disk
// reserve's own 507, or a 500 saying what could not be stored (never the
// store's internals).
func stateErr(err error, format string, args ...any) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	return apiErr(500, format+": could not be stored", args...)
}

// claimSpawn records a new spawn; with an idempotency key it first claims
// the key, in the same transaction. If the key is taken it records nothing
// and returns the spawn that holds it.
func (s *Server) claimSpawn(ctx context.Context, r *SpawnRecord) (*SpawnRecord, error) {
	r.UpdatedAt = s.now()
	var first *SpawnRecord
	err := s.store.Update(ctx, func(tx store.Tx) error {
		first = nil
		if r.IdempotencyKey != "" {
			id, err := tx.Get(bucketIdem, r.Parent+"/"+r.IdempotencyKey)
			switch {
			case err == nil:
				var f SpawnRecord
				if err := store.GetJSON(tx, bucketSpawn, string(id), &f); err != nil {
					return err
				}
				first = &f
				return nil
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			if err := tx.Put(bucketIdem, r.Parent+"/"+r.IdempotencyKey, []byte(r.ID)); err != nil {
				return err
			}
		}
		return store.PutJSON(tx, bucketSpawn, r.ID, r)
	})
	return first, err
}

func (s *Server) getSpawn(ctx context.Context, id string) (*SpawnRecord, error) {
	var r SpawnRecord
	err := s.store.View(ctx, func(tx store.Tx) error { return store.GetJSON(tx, bucketSpawn, id, &r) })
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Server) listSpawns(ctx context.Context) ([]*SpawnRecord, error) {
	var out []*SpawnRecord
	err := s.store.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(bucketSpawn, "", func(_ string, v []byte) error {
			var r SpawnRecord
			if err := jsonUnmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, &r)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].RequestedAt.Before(out[j].RequestedAt) })
	return out, err
}
