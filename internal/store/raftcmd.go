package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/soulfra/calnet/ledger"
)

// The command format of the replicated store. One Update on the leader
// becomes one command: the batch of writes its function made, applied as a
// whole by every server's state machine. The bytes arrive from the Raft log
// (written by a leader, possibly of another version), so the decoder checks
// every length against a limit before it allocates.
//
//	batch   = magic(4) version(1) term(uvarint) count(uvarint) op* leaves
//	op      = kind(1) bucket key [value]
//	leaves  = n(uvarint) [start(uvarint) leaf*n]
//	bucket, key, value, leaf = length(uvarint) bytes
//
// kind 1 is a put (with a value), kind 2 a delete (without). The leaves are
// entries appended to the replicated ledger, the first at index start. term
// is the leader's term when the batch was made: a batch read state that
// included the batches before it in the same term, so it is applied only
// in that term (see fsm.ApplyBatch).

const (
	cmdMagic   = "CNSB"
	cmdVersion = 1

	opPut    byte = 1
	opDelete byte = 2
)

// Limits of one write and one batch. A key and a bucket name are bbolt keys
// (at most 32 KiB, never empty); a value is bounded well below bbolt's own
// limit so that one command stays a reasonable Raft log entry.
const (
	MaxBucketLen = 1024
	MaxKeyLen    = 32 << 10
	MaxValueLen  = 16 << 20
	MaxBatchLen  = 64 << 20
	MaxBatchOps  = 1 << 20
)

// reservedPrefix starts the names of the buckets the replicated store keeps
// for itself (the applied index, the servers' records). No caller's bucket
// may start with it.
const reservedPrefix = "\x00"

// op is one write of a batch.
type op struct {
	kind   byte
	bucket string
	key    string
	value  []byte
}

// batch is the writes of one transaction, in the order they were made,
// and the ledger entries it appends (the first at index leafStart).
type batch struct {
	term      uint64
	ops       []op
	leafStart uint64
	leaves    [][]byte
}

// checkWrite says whether a write of these sizes may be made, naming the
// field and the limit.
func checkWrite(bucket, key string, value []byte, internal bool) error {
	switch {
	case bucket == "":
		return errors.New("store: bucket: empty")
	case len(bucket) > MaxBucketLen:
		return fmt.Errorf("store: bucket: %d bytes, the limit is %d", len(bucket), MaxBucketLen)
	case !internal && bucket[0] == reservedPrefix[0]:
		return fmt.Errorf("store: bucket %q: names starting with a NUL byte are the store's own", bucket)
	case key == "":
		return fmt.Errorf("store: key in bucket %q: empty", bucket)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("store: key in bucket %q: %d bytes, the limit is %d", bucket, len(key), MaxKeyLen)
	case len(value) > MaxValueLen:
		return fmt.Errorf("store: value of %s/%s: %d bytes, the limit is %d", bucket, key, len(value), MaxValueLen)
	}
	return nil
}

// size is the encoded length of b.
func (b *batch) size() int {
	n := len(cmdMagic) + 1 + 2*binary.MaxVarintLen64
	for _, o := range b.ops {
		n += 1 + 3*binary.MaxVarintLen64 + len(o.bucket) + len(o.key) + len(o.value)
	}
	n += 2 * binary.MaxVarintLen64
	for _, l := range b.leaves {
		n += binary.MaxVarintLen64 + len(l)
	}
	return n
}

// encode returns the command bytes of b, or an error naming the limit a
// batch exceeds.
func (b *batch) encode() ([]byte, error) {
	if len(b.ops) > MaxBatchOps {
		return nil, fmt.Errorf("store: transaction: %d writes, the limit is %d", len(b.ops), MaxBatchOps)
	}
	if n := b.size(); n > MaxBatchLen+len(b.ops)*(1+3*binary.MaxVarintLen64)+len(cmdMagic)+1+binary.MaxVarintLen64 {
		return nil, fmt.Errorf("store: transaction: about %d bytes of writes, the limit is %d", n, MaxBatchLen)
	}
	out := make([]byte, 0, b.size())
	out = append(out, cmdMagic...)
	out = append(out, cmdVersion)
	out = binary.AppendUvarint(out, b.term)
	out = binary.AppendUvarint(out, uint64(len(b.ops)))
	for _, o := range b.ops {
		out = append(out, o.kind)
		out = appendBytes(out, []byte(o.bucket))
		out = appendBytes(out, []byte(o.key))
		if o.kind == opPut {
			out = appendBytes(out, o.value)
		}
	}
	out = binary.AppendUvarint(out, uint64(len(b.leaves)))
	if len(b.leaves) > 0 {
		out = binary.AppendUvarint(out, b.leafStart)
		for _, l := range b.leaves {
			out = appendBytes(out, l)
		}
	}
	if len(out) > MaxBatchLen {
		return nil, fmt.Errorf("store: transaction: %d bytes of writes, the limit is %d", len(out), MaxBatchLen)
	}
	return out, nil
}

func appendBytes(out, b []byte) []byte {
	out = binary.AppendUvarint(out, uint64(len(b)))
	return append(out, b...)
}

// decodeBatch parses a command. Every write it returns passes checkWrite
// (reserved buckets included: only the store writes commands), so applying
// it cannot fail for a reason of its shape.
func decodeBatch(data []byte) (*batch, error) {
	if len(data) > MaxBatchLen {
		return nil, fmt.Errorf("store command: %d bytes, the limit is %d", len(data), MaxBatchLen)
	}
	if len(data) < len(cmdMagic)+1 || string(data[:len(cmdMagic)]) != cmdMagic {
		return nil, errors.New("store command: not a calnet store batch (bad magic)")
	}
	if v := data[len(cmdMagic)]; v != cmdVersion {
		return nil, fmt.Errorf("store command: version %d, this server reads version %d (upgrade it)", v, cmdVersion)
	}
	r := cmdReader{b: data[len(cmdMagic)+1:]}
	term, err := r.uvarint("term")
	if err != nil {
		return nil, err
	}
	count, err := r.uvarint("count")
	if err != nil {
		return nil, err
	}
	// Each op takes at least 3 bytes: a count beyond that is a lie, and
	// must not size an allocation.
	if count > MaxBatchOps || count > uint64(len(r.b))/3 {
		return nil, fmt.Errorf("store command: %d writes in %d bytes (the limit is %d writes)", count, len(r.b), MaxBatchOps)
	}
	b := &batch{term: term, ops: make([]op, 0, count)}
	for i := range count {
		kind, err := r.byte()
		if err != nil {
			return nil, fmt.Errorf("store command: write %d: %w", i, err)
		}
		if kind != opPut && kind != opDelete {
			return nil, fmt.Errorf("store command: write %d: unknown kind %d", i, kind)
		}
		bucket, err := r.bytes("bucket", MaxBucketLen)
		if err != nil {
			return nil, fmt.Errorf("store command: write %d: %w", i, err)
		}
		key, err := r.bytes("key", MaxKeyLen)
		if err != nil {
			return nil, fmt.Errorf("store command: write %d: %w", i, err)
		}
		o := op{kind: kind, bucket: string(bucket), key: string(key)}
		if kind == opPut {
			if o.value, err = r.bytes("value", MaxValueLen); err != nil {
				return nil, fmt.Errorf("store command: write %d: %w", i, err)
			}
			if o.value == nil {
				o.value = []byte{}
			}
		}
		if err := checkWrite(o.bucket, o.key, o.value, true); err != nil {
			return nil, fmt.Errorf("store command: write %d: %w", i, err)
		}
		b.ops = append(b.ops, o)
	}
	n, err := r.uvarint("ledger entries")
	if err != nil {
		return nil, err
	}
	if n > ledger.MaxBatch || n > uint64(len(r.b)) {
		return nil, fmt.Errorf("store command: %d ledger entries in %d bytes (the limit is %d entries)", n, len(r.b), ledger.MaxBatch)
	}
	if n > 0 {
		if b.leafStart, err = r.uvarint("ledger start"); err != nil {
			return nil, err
		}
		if b.leafStart+n < b.leafStart {
			return nil, fmt.Errorf("store command: ledger start %d overflows", b.leafStart)
		}
		b.leaves = make([][]byte, 0, n)
		for i := range n {
			l, err := r.bytes("ledger entry", ledger.MaxEntrySize)
			if err != nil {
				return nil, fmt.Errorf("store command: ledger entry %d: %w", i, err)
			}
			if len(l) == 0 {
				return nil, fmt.Errorf("store command: ledger entry %d: empty", i)
			}
			b.leaves = append(b.leaves, l)
		}
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("store command: %d bytes after the last write", len(r.b))
	}
	return b, nil
}

type cmdReader struct{ b []byte }

func (r *cmdReader) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, fmt.Errorf("store command: %s: truncated or overlong number", what)
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *cmdReader) byte() (byte, error) {
	if len(r.b) == 0 {
		return 0, errors.New("truncated")
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, nil
}

func (r *cmdReader) bytes(what string, limit int) ([]byte, error) {
	n, err := r.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%s: %d bytes, the limit is %d", what, n, limit)
	}
	if n > uint64(len(r.b)) {
		return nil, fmt.Errorf("%s: %d bytes, only %d left", what, n, len(r.b))
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v, nil
}
