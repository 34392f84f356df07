package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// fsm is the replicated state machine: every server applies the committed
// batches, in log order, to its own bbolt file. The file also records the
// index of the last log entry applied, in the same transaction as the
// writes, so a restart neither loses nor repeats a batch: Raft replays the
// log after its newest snapshot and the entries already in the file are
// skipped.
type fsm struct {
	path string
	log  *slog.Logger

	// mu guards db: Restore swaps the file under the write lock; every
	// reader and applier holds the read lock.
	mu     sync.RWMutex
	db     *bolt.DB
	failed error // set when applying failed: the file no longer follows the log
}

var (
	_ raft.BatchingFSM = (*fsm)(nil)

	metaBucket = []byte(reservedPrefix + "raft")
	appliedKey = []byte("applied")
)

// snapMagic starts every snapshot: the format, then bbolt's file.
const snapMagic = "CNSNAP01"

func openFSM(path string, log *slog.Logger) (*fsm, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 3 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open replicated state %s: %w", path, err)
	}
	return &fsm{path: path, db: db, log: log}, nil
}

func readApplied(tx *bolt.Tx) uint64 {
	b := tx.Bucket(metaBucket)
	if b == nil {
		return 0
	}
	v := b.Get(appliedKey)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// applied returns the index of the last log entry in the file.
func (f *fsm) applied() (uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var n uint64
	err := f.db.View(func(tx *bolt.Tx) error { n = readApplied(tx); return nil })
	return n, err
}

// view runs fn on the local state.
func (f *fsm) view(fn func(*bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.failed != nil {
		return f.failed
	}
	return f.db.View(fn)
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: the whole batch of log entries in
// one bbolt transaction (one fsync). The response of an entry is nil or the
// error that refused it.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	resp := make([]any, len(logs))
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.failed != nil {
		for i := range resp {
			resp[i] = f.failed
		}
		return resp
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		applied := readApplied(tx)
		last := applied
		for i, l := range logs {
			if l.Index <= applied {
				continue // in the file already (replayed after a restart)
			}
			last = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			b, err := decodeBatch(l.Data)
			if err != nil {
				// Every server refuses it the same way: the state stays
				// identical everywhere.
				resp[i] = err
				continue
			}
			if err := applyOps(tx, b.ops); err != nil {
				return fmt.Errorf("log entry %d: %w", l.Index, err)
			}
		}
		if last == applied {
			return nil
		}
		mb, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		return mb.Put(appliedKey, binary.BigEndian.AppendUint64(nil, last))
	})
	if err != nil {
		// The file can no longer follow the log (a disk error): stop
		// applying and snapshotting, so Raft keeps the log entries this
		// file lacks until a restart replays them.
		f.failed = fmt.Errorf("store: applying the replicated log to %s failed, restart this server: %w", f.path, err)
		f.log.Error("replicated state", "err", f.failed)
		for i := range resp {
			resp[i] = f.failed
		}
	}
	return resp
}

func applyOps(tx *bolt.Tx, ops []op) error {
	for _, o := range ops {
		switch o.kind {
		case opPut:
			b, err := tx.CreateBucketIfNotExists([]byte(o.bucket))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(o.key), o.value); err != nil {
				return err
			}
		case opDelete:
			if b := tx.Bucket([]byte(o.bucket)); b != nil {
				if err := b.Delete([]byte(o.key)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Snapshot implements raft.FSM: a read transaction is bbolt's consistent
// copy of the file, taken now and written later by Persist while batches
// go on being applied.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	if f.failed != nil {
		defer f.mu.RUnlock()
		return nil, f.failed
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		f.mu.RUnlock()
		return nil, err
	}
	return &fsmSnapshot{tx: tx, release: f.mu.RUnlock}, nil
}

type fsmSnapshot struct {
	tx      *bolt.Tx
	once    sync.Once
	release func()
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	_, err := io.WriteString(sink, snapMagic)
	if err == nil {
		_, err = s.tx.WriteTo(sink)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("store snapshot: %w", err), sink.Cancel())
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {
	s.once.Do(func() {
		_ = s.tx.Rollback() // read-only: nothing to lose
		s.release()
	})
}

// Restore implements raft.FSM: the snapshot replaces the file, unless the
// file already holds a later state of the same log (a server that was
// merely behind the leader's compaction). The new file is written and
// synced beside the old one, then renamed over it.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(rc, magic); err != nil || string(magic) != snapMagic {
		return fmt.Errorf("store snapshot: not a calnet store snapshot (bad magic)")
	}
	tmp := f.path + ".restore"
	if err := writeSynced(tmp, rc); err != nil {
		return fmt.Errorf("store snapshot: %w", err)
	}
	ndb, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: 3 * time.Second})
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store snapshot: not a readable state file: %w", err)
	}
	var snapApplied uint64
	err = ndb.View(func(tx *bolt.Tx) error { snapApplied = readApplied(tx); return nil })
	if cerr := ndb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store snapshot: %w", err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed == nil {
		var cur uint64
		if err := f.db.View(func(tx *bolt.Tx) error { cur = readApplied(tx); return nil }); err == nil && cur >= snapApplied {
			f.log.Info("replicated state ahead of the snapshot; kept", "applied", cur, "snapshot", snapApplied)
			return os.Remove(tmp)
		}
	}
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("store snapshot: closing the old state: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("store snapshot: %w", err)
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("store snapshot: %w", err)
	}
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{Timeout: 3 * time.Second})
	if err != nil {
		f.failed = fmt.Errorf("store: reopening the restored state %s: %w", f.path, err)
		return f.failed
	}
	f.db, f.failed = db, nil
	f.log.Info("replicated state restored from a snapshot", "applied", snapApplied)
	return nil
}

func (f *fsm) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.db.Close()
}

func writeSynced(path string, r io.Reader) error {
	w, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, r)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
