package store

import (
	"bytes"
	"slices"
	"strings"
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
