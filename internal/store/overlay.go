package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/soulfra/calnet/ledger"
)

// overlayTx is the transaction the leader runs an Update in: reads see the
// committed local state (base) with this transaction's own writes laid
// over it; writes are collected, in order, as the batch to replicate.
type overlayTx struct {
	base Tx
	// pending holds the latest write of each bucket/key: a value, or nil
	// for a delete.
	pending map[string]map[string][]byte
	b       batch
	// internal allows the store's own (reserved) buckets.
	internal bool
	// ledger is the replicated ledger, nil if the store has none;
	// ledgerBase is its size under this transaction (with the batches in
	// flight before it).
	ledger     Ledger
	ledgerBase uint64
	// done is set (under Raft.pipeMu) once Raft answered the batch.
	done bool
}

var _ LedgerTx = (*overlayTx)(nil)

// LedgerTx is the transaction of a store that replicates a ledger with its
// state (store.Raft with RaftConfig.Ledger): the entries it appends become
// durable on every server together with its writes, or not at all.
type LedgerTx interface {
	Tx
	// AppendLedger appends entries (encoded ledger entries) and returns
	// the index the first will have.
	AppendLedger(leaves ...[]byte) (first uint64, err error)
}

func (x *overlayTx) AppendLedger(leaves ...[]byte) (uint64, error) {
	if x.ledger == nil {
		return 0, errors.New("store: this store replicates no ledger")
	}
	if len(x.b.leaves)+len(leaves) > ledger.MaxBatch {
		return 0, fmt.Errorf("store: ledger entries: %d in one transaction, the limit is %d", len(x.b.leaves)+len(leaves), ledger.MaxBatch)
	}
	for i, l := range leaves {
		if len(l) == 0 || len(l) > ledger.MaxEntrySize {
			return 0, fmt.Errorf("store: ledger entry %d: %d bytes, between 1 and %d allowed", i, len(l), ledger.MaxEntrySize)
		}
	}
	if len(x.b.leaves) == 0 {
		x.b.leafStart = x.ledgerBase
	}
	first := x.b.leafStart + uint64(len(x.b.leaves))
	for _, l := range leaves {
		x.b.leaves = append(x.b.leaves, bytes.Clone(l))
	}
	return first, nil
}

func newOverlayTx(base Tx) *overlayTx {
	return &overlayTx{base: base, pending: map[string]map[string][]byte{}}
}

func (x *overlayTx) Get(bucket, key string) ([]byte, error) {
	if m, ok := x.pending[bucket]; ok {
		if v, ok := m[key]; ok {
			if v == nil {
				return nil, ErrNotFound
			}
			return bytes.Clone(v), nil
		}
	}
	return x.base.Get(bucket, key)
}

func (x *overlayTx) Put(bucket, key string, value []byte) error {
	if err := checkWrite(bucket, key, value, x.internal); err != nil {
		return err
	}
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	x.set(bucket, key, v)
	x.b.ops = append(x.b.ops, op{kind: opPut, bucket: bucket, key: key, value: v})
	return nil
}

func (x *overlayTx) Delete(bucket, key string) error {
	if err := checkWrite(bucket, key, nil, x.internal); err != nil {
		return err
	}
	x.set(bucket, key, nil)
	x.b.ops = append(x.b.ops, op{kind: opDelete, bucket: bucket, key: key})
	return nil
}

func (x *overlayTx) set(bucket, key string, v []byte) {
	m := x.pending[bucket]
	if m == nil {
		m = map[string][]byte{}
		x.pending[bucket] = m
	}
	m[key] = v
}

// ForEach merges the committed keys with the pending ones, in key order.
func (x *overlayTx) ForEach(bucket, prefix string, fn func(string, []byte) error) error {
	m := x.pending[bucket]
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	i := 0
	// flush calls fn for the pending keys before limit ("" for all).
	flush := func(limit string, all bool) error {
		for ; i < len(keys) && (all || keys[i] < limit); i++ {
			if v := m[keys[i]]; v != nil {
				if err := fn(keys[i], v); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := x.base.ForEach(bucket, prefix, func(k string, v []byte) error {
		if err := flush(k, false); err != nil {
			return err
		}
		if i < len(keys) && keys[i] == k {
			pv := m[k]
			i++
			if pv == nil {
				return nil // deleted in this transaction
			}
			return fn(k, pv)
		}
		return fn(k, v)
	})
	if err != nil {
		return err
	}
	return flush("", true)
}
