package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/soulfra/calnet/ledger"
)

// fsm is the replicated state machine: every server applies the committed
// batches, in log order, to its own bbolt file. The file also records the
// index of the last log entry applied, in the same transaction as the
// writes, so a restart neither loses nor repeats a batch: Raft replays the
// log after its newest snapshot and the entries already in the file are
// skipped.
type fsm struct {
	path   string
	log    *slog.Logger
	ledger Ledger // nil: batches with ledger entries are refused

	// mu guards db: Restore swaps the file under the write lock; every
	// reader and applier holds the read lock.
	mu sync.RWMutex
	db *bolt.DB
	// failed is set when applying failed: the file no longer follows the
	// log. An atomic: ApplyBatch sets it under the read lock.
	failed atomic.Pointer[error]
}

var (
	_ raft.BatchingFSM = (*fsm)(nil)

	metaBucket = []byte(reservedPrefix + "raft")
	appliedKey = []byte("applied")
)

// errStaleBatch refuses a batch whose log entry is of another term than
// the batch.
var errStaleBatch = errors.New("store: the write was made in an earlier leader's term and not committed in it")

// snapMagic starts every snapshot:
//
//	snapshot = magic(8) boltLen(u64) bolt-file ledgerLen(u64) (leafLen(u32) leaf)*ledgerLen
const snapMagic = "CNSNAP02"

// Ledger is the append-only log the replicated state carries beside its
// buckets: every server appends the same entries at the same indices
// (calnet: the network's ledger, a *ledger.Log).
type Ledger interface {
	// Size is the number of durable entries.
	Size() uint64
	// Entry returns entry i's bytes.
	Entry(i uint64) ([]byte, error)
	// AppendRaw appends entries durably and returns their indices.
	AppendRaw(ctx context.Context, leaves ...[]byte) ([]uint64, error)
}

func openFSM(path string, lg Ledger, log *slog.Logger) (*fsm, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 3 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open replicated state %s: %w", path, err)
	}
	return &fsm{path: path, db: db, ledger: lg, log: log}, nil
}

// failure is the error that stopped the state machine, or nil.
func (f *fsm) failure() error {
	if p := f.failed.Load(); p != nil {
		return *p
	}
	return nil
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
	if err := f.failure(); err != nil {
		return err
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
	if err := f.failure(); err != nil {
		for i := range resp {
			resp[i] = err
		}
		return resp
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		applied := readApplied(tx)
		last := applied
		// The ledger first, all the batches' entries in one append (one
		// signed checkpoint): an entry durable there and not yet in the
		// file is found there on the replay, and not appended twice.
		var plan leafPlan
		if f.ledger != nil {
			plan.size = f.ledger.Size()
			plan.next = plan.size
		}
		var batches []*batch
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
			if b.term != l.Term {
				// Made by a leader of an earlier term and appended by a
				// later one: the state it read may lack a batch that
				// never reached the log. Refused everywhere alike.
				resp[i] = errStaleBatch
				continue
			}
			if err := f.planLeaves(&plan, b); err != nil {
				return fmt.Errorf("log entry %d: %w", l.Index, err)
			}
			batches = append(batches, b)
		}
		for len(plan.add) > 0 {
			n := min(len(plan.add), ledger.MaxBatch)
			if _, err := f.ledger.AppendRaw(context.Background(), plan.add[:n]...); err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
			plan.add = plan.add[n:]
		}
		for _, b := range batches {
			if err := applyOps(tx, b.ops); err != nil {
				return err
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
		err = fmt.Errorf("store: applying the replicated log to %s failed, restart this server: %w", f.path, err)
		f.failed.Store(&err)
		f.log.Error("replicated state", "err", err)
		for i := range resp {
			resp[i] = err
		}
	}
	return resp
}

// leafPlan is what one ApplyBatch appends to the ledger: add, to go at
// index size, and next, the index the next new entry takes.
type leafPlan struct {
	size, next uint64
	add        [][]byte
}

// planLeaves adds b's ledger entries that the ledger lacks to p, after
// checking that those it has (or that p already adds) are the same.
func (f *fsm) planLeaves(p *leafPlan, b *batch) error {
	if len(b.leaves) == 0 {
		return nil
	}
	if f.ledger == nil {
		return errors.New("a batch carries ledger entries but this server has no ledger (every server must be configured alike)")
	}
	end := b.leafStart + uint64(len(b.leaves))
	if b.leafStart > p.next {
		return fmt.Errorf("the ledger holds %d entries, the log appends at index %d: entries are missing", p.next, b.leafStart)
	}
	for i := b.leafStart; i < p.next && i < end; i++ {
		var have []byte
		if i < p.size {
			var err error
			if have, err = f.ledger.Entry(i); err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
		} else {
			have = p.add[i-p.size]
		}
		if !bytes.Equal(have, b.leaves[i-b.leafStart]) {
			return fmt.Errorf("the ledger's entry %d differs from the replicated log's: this server's ledger diverged", i)
		}
	}
	if end > p.next {
		p.add = append(p.add, b.leaves[p.next-b.leafStart:]...)
		p.next = end
	}
	return nil
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
	if err := f.failure(); err != nil {
		defer f.mu.RUnlock()
		return nil, err
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		f.mu.RUnlock()
		return nil, err
	}
	// Called between two applies: the ledger's size is the file's.
	var n uint64
	if f.ledger != nil {
		n = f.ledger.Size()
	}
	return &fsmSnapshot{tx: tx, ledger: f.ledger, ledgerSize: n, release: f.mu.RUnlock}, nil
}

type fsmSnapshot struct {
	tx         *bolt.Tx
	ledger     Ledger
	ledgerSize uint64
	once       sync.Once
	release    func()
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<16)
	_, err := w.WriteString(snapMagic)
	if err == nil {
		err = binary.Write(w, binary.BigEndian, uint64(s.tx.Size()))
	}
	if err == nil {
		_, err = s.tx.WriteTo(w)
	}
	if err == nil {
		err = binary.Write(w, binary.BigEndian, s.ledgerSize)
	}
	// Ledger entries never change once written: the first ledgerSize of
	// them are the snapshot's, even while later ones are appended.
	for i := uint64(0); err == nil && i < s.ledgerSize; i++ {
		var e []byte
		if e, err = s.ledger.Entry(i); err == nil {
			if err = binary.Write(w, binary.BigEndian, uint32(len(e))); err == nil {
				_, err = w.Write(e)
			}
		}
	}
	if err == nil {
		err = w.Flush()
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
	var boltLen uint64
	if err := binary.Read(rc, binary.BigEndian, &boltLen); err != nil {
		return fmt.Errorf("store snapshot: truncated: %w", err)
	}
	tmp := f.path + ".restore"
	if err := writeSynced(tmp, io.LimitReader(rc, int64(boltLen)), int64(boltLen)); err != nil {
		return fmt.Errorf("store snapshot: %w", err)
	}
	if err := f.restoreLedger(rc); err != nil {
		_ = os.Remove(tmp)
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
	if f.failure() == nil {
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
		err = fmt.Errorf("store: reopening the restored state %s: %w", f.path, err)
		f.failed.Store(&err)
		return err
	}
	f.db = db
	f.failed.Store(nil)
	f.log.Info("replicated state restored from a snapshot", "applied", snapApplied)
	return nil
}

// restoreLedger reads the snapshot's ledger entries: those the local
// ledger has must be the same, the others are appended.
func (f *fsm) restoreLedger(r io.Reader) error {
	var n uint64
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return fmt.Errorf("ledger part truncated: %w", err)
	}
	if n > 0 && f.ledger == nil {
		return fmt.Errorf("the snapshot holds %d ledger entries but this server has no ledger", n)
	}
	var size uint64
	if f.ledger != nil {
		size = f.ledger.Size()
	}
	var chunk [][]byte
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		_, err := f.ledger.AppendRaw(context.Background(), chunk...)
		chunk = chunk[:0]
		return err
	}
	for i := range n {
		var l uint32
		if err := binary.Read(r, binary.BigEndian, &l); err != nil {
			return fmt.Errorf("ledger entry %d: truncated: %w", i, err)
		}
		if l == 0 || l > ledger.MaxEntrySize {
			return fmt.Errorf("ledger entry %d: %d bytes, the limit is %d", i, l, ledger.MaxEntrySize)
		}
		e := make([]byte, l)
		if _, err := io.ReadFull(r, e); err != nil {
			return fmt.Errorf("ledger entry %d: truncated: %w", i, err)
		}
		if i < size {
			have, err := f.ledger.Entry(i)
			if err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
			if !bytes.Equal(have, e) {
				return fmt.Errorf("the local ledger's entry %d differs from the snapshot's: this server's ledger belongs to another history", i)
			}
			continue
		}
		if chunk = append(chunk, e); len(chunk) == ledger.MaxBatch {
			if err := flush(); err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

func (f *fsm) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.db.Close()
}

func writeSynced(path string, r io.Reader, size int64) error {
	w, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	var n int64
	n, err = io.Copy(w, r)
	if err == nil && n != size {
		err = fmt.Errorf("truncated: %d of %d bytes", n, size)
	}
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
