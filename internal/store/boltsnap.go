package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

var _ Snapshotter = (*Bolt)(nil)

// Snapshot implements Snapshotter with a bbolt read transaction: its view
// is the last committed write, and tx.WriteTo copies the file as of it.
func (s *Bolt) Snapshot(ctx context.Context) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("store snapshot: %w", err)
	}
	return boltSnapshot{tx}, nil
}

type boltSnapshot struct{ t *bolt.Tx }

func (b boltSnapshot) Index() uint64                      { return uint64(b.t.ID()) }
func (b boltSnapshot) Size() int64                        { return b.t.Size() }
func (b boltSnapshot) View(fn func(Tx) error) error       { return fn(boltTx(b)) }
func (b boltSnapshot) WriteTo(w io.Writer) (int64, error) { return b.t.WriteTo(w) }
func (b boltSnapshot) Close() error                       { return b.t.Rollback() }

// MaxBoltFile bounds a store file RestoreBolt accepts.
const MaxBoltFile = 16 << 30

// RestoreBolt writes a store file read from r (what a Snapshot's WriteTo
// wrote, size bytes) to path, which must not exist, syncs it, and checks
// that it opens and that bbolt's consistency check passes; it returns the
// restored view's Index. On any error path is removed.
func RestoreBolt(ctx context.Context, path string, r io.Reader, size int64) (index uint64, err error) {
	if size <= 0 || size > MaxBoltFile {
		return 0, fmt.Errorf("store file: %d bytes, want 1 to %d", size, int64(MaxBoltFile))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	n, err := io.Copy(f, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("store file: %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 3 * time.Second, ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("restored store %s does not open: %w", filepath.Base(path), err)
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	err = db.View(func(tx *bolt.Tx) error {
		index = uint64(tx.ID())
		var first error
		for cerr := range tx.Check() { // drained: the checker runs until it has said everything
			if first == nil {
				first = fmt.Errorf("restored store %s is inconsistent: %w", filepath.Base(path), cerr)
			}
		}
		return first
	})
	return index, err
}

// InUse reports whether a process holds the store file at path open for
// writing (bbolt's exclusive lock), without opening it as a store.
func InUse(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return false, unix.Flock(int(f.Fd()), unix.LOCK_UN)
}
