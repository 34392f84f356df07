package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/trust"
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

// CalRecord is a Cal in the registry.
type CalRecord struct {
	ID            string      `json:"id"`
	Name          string      `json:"name,omitempty"`
	Parent        string      `json:"parent"`
	Depth         int         `json:"depth"`
	Permissions   []string    `json:"permissions"`
	Quota         trust.Quota `json:"quota"`
	State         string      `json:"state"`
	Healthy       bool        `json:"healthy"`
	Children      []string    `json:"children"`
	UID           int         `json:"uid"`
	PID           int         `json:"pid,omitempty"`
	Features      []string    `json:"features"`
	RestartPolicy string      `json:"restart_policy"`
	Restarts      int         `json:"restarts"`
	LastError     string      `json:"last_error,omitempty"`
	CreatedAt     time.Time   `json:"created_at"`
	UpdatedAt     time.Time   `json:"updated_at"`
	Spawn         string      `json:"spawn,omitempty"`
	// Template names the template the Cal runs.
	Template string `json:"template,omitempty"`
	// Degraded says why the Cal's platform is not whole, if it is not.
	Degraded string `json:"degraded,omitempty"`
	// Namespace nests along the lineage: <label>.<parent's namespace>,
	// where the label is the Cal's name or the start of its ID.
	Namespace string `json:"namespace"`
	// ActivatedAt is the Cal's first activation (its ledger entry).
	ActivatedAt time.Time `json:"activated_at,omitzero"`
}

// SpawnRecord is one spawn request and its progress.
type SpawnRecord struct {
	ID             string    `json:"id"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	Parent         string    `json:"parent"`
	Name           string    `json:"name,omitempty"`
	Permissions    []string  `json:"permissions"`
	CPUMillis      int64     `json:"cpu_millis"`
	MemoryBytes    int64     `json:"memory_bytes"`
	State          string    `json:"state"`
	Reason         string    `json:"reason,omitempty"`
	Cal            string    `json:"cal,omitempty"`
	Actor          string    `json:"actor"`
	Attempts       int       `json:"attempts"`
	RequestedAt    time.Time `json:"requested_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// OperationalAt is when the Cal registered (the spawn's end).
	OperationalAt time.Time `json:"operational_at,omitzero"`
}

// Terminal reports whether the spawn has ended.
func (s *SpawnRecord) Terminal() bool {
	return s.State == SpawnRunning || s.State == SpawnRejected || s.State == SpawnFailed
}

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
	if err := s.store.Update(ctx, func(tx store.Tx) error { return store.PutJSON(tx, bucketCals, r.ID, r) }); err != nil {
		return err
	}
	s.index(r)
	return nil
}

// updateCal applies fn to a stored record atomically.
func (s *Server) updateCal(ctx context.Context, id string, fn func(*CalRecord)) (*CalRecord, error) {
	var r CalRecord
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
	return s.store.Update(ctx, func(tx store.Tx) error {
		if r.IdempotencyKey != "" {
			if err := tx.Put(bucketIdem, r.Parent+"/"+r.IdempotencyKey, []byte(r.ID)); err != nil {
				return err
			}
		}
		return store.PutJSON(tx, bucketSpawn, r.ID, r)
	})
}

func (s *Server) getSpawn(ctx context.Context, id string) (*SpawnRecord, error) {
	var r SpawnRecord
	err := s.store.View(ctx, func(tx store.Tx) error { return store.GetJSON(tx, bucketSpawn, id, &r) })
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Server) spawnByKey(ctx context.Context, parent, key string) (*SpawnRecord, error) {
	var id []byte
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		id, err = tx.Get(bucketIdem, parent+"/"+key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.getSpawn(ctx, string(id))
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

// nextUID allocates an unprivileged uid for a new Cal.
func (s *Server) nextUID(ctx context.Context) (int, error) {
	uid := 0
	err := s.store.Update(ctx, func(tx store.Tx) error {
		b, err := tx.Get(bucketMeta, "next_uid")
		switch {
		case errors.Is(err, store.ErrNotFound):
			uid = firstUID
		case err != nil:
			return err
		default:
			if uid, err = strconv.Atoi(string(b)); err != nil {
				return fmt.Errorf("meta/next_uid: %w", err)
			}
		}
		return tx.Put(bucketMeta, "next_uid", []byte(strconv.Itoa(uid+1)))
	})
	return uid, err
}

// firstUID starts the range of Cal uids, far from system and user ids.
const firstUID = 200000
