package controlplane

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/snapshot"
	"github.com/soulfra/calnet/internal/store"
)

// Backups: POST /v1/snapshot streams an encrypted snapshot of the whole
// network (internal/snapshot) while it runs, and SnapshotLoop writes one
// on a schedule. The capture itself is internal/snapshot's; this file says
// what of the control plane's state goes into it.

// SnapshotTrailer is the HTTP trailer that carries the manifest (base64 of
// its JSON) once the stream is complete; a stream without it was cut.
const SnapshotTrailer = "Calnet-Snapshot-Manifest"

// errSnapshotBusy refuses a second snapshot while one is taken.
var errSnapshotBusy = &APIError{Status: 409, RetryAfter: 5 * time.Second, Msg: "a snapshot is being taken; try again when it is done"}

// Snapshot writes an encrypted snapshot of the network to w (one at a
// time).
func (s *Server) Snapshot(ctx context.Context, w io.Writer, recipients []age.Recipient) (*snapshot.Manifest, error) {
	if !s.snapMu.TryLock() {
		return nil, errSnapshotBusy
	}
	defer s.snapMu.Unlock()
	return s.snapshotLocked(ctx, w, recipients)
}

// snapshotLocked is Snapshot under snapMu.
func (s *Server) snapshotLocked(ctx context.Context, w io.Writer, recipients []age.Recipient) (*snapshot.Manifest, error) {
	sw, err := snapshot.Seal(w, recipients)
	if err != nil {
		return nil, err
	}
	m, err := snapshot.Capture(ctx, sw, s.snapshotSource())
	if err != nil {
		return nil, err
	}
	if err := sw.Close(); err != nil {
		return nil, err
	}
	if len(m.Cals.Missing) > 0 {
		s.log.Warn("snapshot taken without the keys of some cals; they cannot run again after a restore", "missing", len(m.Cals.Missing), "first", m.Cals.Missing[0].ID, "why", m.Cals.Missing[0].Reason)
	}
	return m, nil
}

// snapshotSource is the control plane's state as a snapshot captures it.
func (s *Server) snapshotSource() snapshot.Source {
	return snapshot.Source{
		Network: s.net.Info.Network.String(), Origin: s.net.Info.Origin, DataDir: s.cfg.DataDir,
		Store: snapshotter{s.store}, Ledger: s.lg, Now: s.now,
		Cals: func(view store.Snapshot) ([]string, error) {
			var ids []string
			err := view.View(func(tx store.Tx) error {
				return tx.ForEach(bucketCals, "", func(id string, v []byte) error {
					var c CalRecord
					if err := store.DecodeJSON(v, &c); err != nil {
						return fmt.Errorf("cal %s: %w", id, err)
					}
					if c.State != StateRevoked {
						ids = append(ids, id)
					}
					return nil
				})
			})
			return ids, err
		},
		CalFile: func(view store.Snapshot, id, name string) ([]byte, error) {
			b, err := s.dirs.Sandbox(id).ReadFile(name, snapshot.MaxCalFile)
			if err != nil || name != netdir.KeyFile {
				return b, err
			}
			// The sandbox is the Cal's to write: keep its key only if it
			// opens with the Cal's key-encryption identity to the Cal's ID.
			var sealed []byte
			if err := view.View(func(tx store.Tx) error { sealed, err = tx.Get(bucketKEK, id); return err }); err != nil {
				return nil, fmt.Errorf("its key-encryption identity: %w", err)
			}
			plain, err := s.root.Open(kekPurpose(id), sealed)
			if err != nil {
				return nil, fmt.Errorf("its key-encryption identity: %w", err)
			}
			defer clear(plain)
			kek, err := age.ParseHybridIdentity(strings.TrimSpace(string(plain)))
			if err != nil {
				return nil, fmt.Errorf("its key-encryption identity: %w", err)
			}
			return b, checkSealedKey(b, kek, id)
		},
		Sync: func(ctx context.Context) error {
			if s.audit == nil {
				return nil
			}
			return s.audit.Sync(ctx)
		},
	}
}

// Snapshot implements store.Snapshotter when the store under it does.
func (r reserveStore) Snapshot(ctx context.Context) (store.Snapshot, error) {
	return snapshotter{r.Store}.Snapshot(ctx)
}

// snapshotter takes a snapshot of a store that can take one.
type snapshotter struct{ st store.Store }

func (x snapshotter) Snapshot(ctx context.Context) (store.Snapshot, error) {
	sn, ok := x.st.(store.Snapshotter)
	if !ok {
		return nil, errors.New("the state store cannot take a snapshot")
	}
	return sn.Snapshot(ctx)
}

// handleSnapshot streams an encrypted snapshot. Only the root credential
// may take one: a snapshot holds admin.token and the genesis key, which
// a named administrator does not have.
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	var req api.SnapshotRequest
	if !readJSON(w, r, &req) {
		return
	}
	rcpts, err := snapshot.ParseRecipients(req.Recipients)
	if err != nil {
		writeError(w, apiErr(400, "recipients: %v", err))
		return
	}
	if !s.snapMu.TryLock() {
		writeError(w, errSnapshotBusy)
		return
	}
	defer s.snapMu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", snapshotName(s.net.Info.Network.String(), s.now())))
	w.Header().Set("Trailer", SnapshotTrailer)
	w.WriteHeader(200)
	// The body may take long (programs, a large ledger): no write
	// deadline cuts it.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	m, err := s.snapshotLocked(r.Context(), w, rcpts)
	if err != nil {
		// The status is sent: a stream without its trailer is incomplete,
		// and the age stream without its last chunk does not decrypt.
		s.log.Error("snapshot", "err", err)
		return
	}
	b, _ := json.Marshal(m)
	w.Header().Set(SnapshotTrailer, base64.StdEncoding.EncodeToString(b))
	s.bus.publish(Event{Type: "snapshot.saved", Actor: actorOf(r), Reason: fmt.Sprintf("ledger size %d, %d cals (%d with keys)", m.Ledger.Size, m.Cals.Total, m.Cals.WithKey)})
}

// snapshotName names a snapshot file by network and time (UTC), so that
// names sort by age.
func snapshotName(network string, t time.Time) string {
	return fmt.Sprintf("calnet-%s-%s%s", network, t.UTC().Format("20060102T150405.000Z"), snapshot.Suffix)
}

// checkSealedKey checks that a sealed key opens with the Cal's
// key-encryption identity kek to the Cal id's key.
func checkSealedKey(sealed []byte, kek *age.HybridIdentity, id string) error {
	k, err := identity.Open(sealed, kek)
	if err != nil {
		return fmt.Errorf("does not open with the cal's key-encryption identity: %w", err)
	}
	if got := k.Public().ID().String(); got != id {
		return fmt.Errorf("is the key of %s, not of this cal", got)
	}
	return nil
}

// SnapshotSchedule configures scheduled snapshots (off when Interval is 0).
type SnapshotSchedule struct {
	// Dir receives the snapshot files (created 0700).
	Dir string
	// Interval is the time between snapshots.
	Interval time.Duration
	// Retain is how many of the newest snapshots are kept.
	Retain int
	// Recipients are the hybrid post-quantum age recipients the
	// snapshots are encrypted to.
	Recipients []age.Recipient
}

// snapshotLoop takes a snapshot every Interval into Dir, atomically, and
// prunes the oldest beyond Retain once a new one is complete: a failed
// snapshot (a full disk) leaves the ones before it.
func (s *Server) snapshotLoop(ctx context.Context) {
	sc := s.cfg.Snapshots
	every(ctx, sc.Interval, func() {
		if err := s.scheduledSnapshot(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduled snapshot failed; the earlier ones are kept", "dir", sc.Dir, "err", err)
			s.bus.publish(Event{Type: "snapshot.failed", Actor: "scheduler", Reason: err.Error()})
		}
	})
}

// scheduledSnapshot takes one scheduled snapshot and prunes.
func (s *Server) scheduledSnapshot(ctx context.Context) error {
	sc := s.cfg.Snapshots
	if err := os.MkdirAll(sc.Dir, 0o700); err != nil {
		return err
	}
	network := s.net.Info.Network.String()
	path := filepath.Join(sc.Dir, snapshotName(network, s.now()))
	var m *snapshot.Manifest
	err := snapshot.WriteFile(path, func(w io.Writer) error {
		var err error
		m, err = s.Snapshot(ctx, w, sc.Recipients)
		return err
	})
	if err != nil {
		return err
	}
	removed, err := snapshot.Prune(sc.Dir, "calnet-"+network+"-", sc.Retain)
	s.log.Info("scheduled snapshot", "file", path, "ledger_size", m.Ledger.Size, "cals", m.Cals.Total, "with_keys", m.Cals.WithKey, "pruned", len(removed))
	s.bus.publish(Event{Type: "snapshot.saved", Actor: "scheduler", Reason: fmt.Sprintf("%s: ledger size %d, %d cals (%d with keys)", filepath.Base(path), m.Ledger.Size, m.Cals.Total, m.Cals.WithKey)})
	if err != nil {
		return fmt.Errorf("pruning old snapshots: %w", err)
	}
	return nil
}
