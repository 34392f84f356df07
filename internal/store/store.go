// Package store is calnet's state store: small transactions over named
// buckets of keys. The embedded implementation uses bbolt; a Raft-replicated
// one will implement the same interface. Nothing outside this package
// touches bbolt.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("not found")

// Store runs transactions. Implementations are safe for concurrent use;
// Update transactions are serialized, View transactions see a consistent
// snapshot.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed durably when fn
	// returns nil and rolled back otherwise.
	Update(ctx context.Context, fn func(Tx) error) error
	// Close releases the store.
	Close() error
}

// Tx is one transaction. It must not be used after its function returns.
type Tx interface {
	// Get returns a copy of the value of key in bucket, or ErrNotFound.
	Get(bucket, key string) ([]byte, error)
	// Put sets key in bucket (creating the bucket).
	Put(bucket, key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(bucket, key string) error
	// ForEach calls fn for each key with prefix in bucket, in key order.
	// The value is only valid during the call.
	ForEach(bucket, prefix string, fn func(key string, value []byte) error) error
}

// GetJSON decodes the JSON value of key into v.
func GetJSON(tx Tx, bucket, key string, v any) error {
	b, err := tx.Get(bucket, key)
	if err != nil {
		return err
	}
	if err := DecodeJSON(b, v); err != nil {
		return fmt.Errorf("store %s/%s: %w", bucket, key, err)
	}
	return nil
}

// DecodeJSON decodes a value the store holds (one PutJSON wrote; for
// ForEach callers). It is lenient about fields, so that a record written
// by an older version still reads: the store is this code's own state,
// not input from outside.
func DecodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }

// PutJSON stores v as JSON under key.
func PutJSON(tx Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, b)
}

// Snapshotter is a Store that can fix a consistent view of its whole state
// and write it out: the backup (internal/snapshot) and a replicated
// store's state-machine snapshots use it.
type Snapshotter interface {
	// Snapshot fixes a read-only view of the whole store. Writes go on
	// meanwhile; the view does not see them. It must be closed, and soon:
	// the embedded store's writer waits for open views when it must grow
	// its file, so copy the view (WriteTo) to local storage, close it, and
	// only then send the copy anywhere slow.
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Snapshot is a consistent, read-only view of a whole store.
type Snapshot interface {
	// Index identifies the view: it grows with every committed write
	// (bbolt's transaction ID; a Raft log index).
	Index() uint64
	// Size is the number of bytes WriteTo writes.
	Size() int64
	// View runs fn on the view (reads only).
	View(fn func(Tx) error) error
	// WriteTo writes the view in the store's own file format, which
	// RestoreBolt (or the replicated store's restore) reads back.
	WriteTo(w io.Writer) (int64, error)
	// Close releases the view.
	Close() error
}
