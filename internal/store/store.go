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
