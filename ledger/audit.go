package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// AuditReport summarises a full audit.
type AuditReport struct {
	Entries     uint64               `json:"entries"`
	Checkpoints int                  `json:"checkpoints"`
	ByType      map[EntryType]uint64 `json:"by_type"`
	Root        []byte               `json:"root"`
}

// Audit re-reads every entry and checkpoint: each entry's framing, CRC and
// leaf hash, that it decodes as a known entry type, that every checkpoint
// ever published verifies and matches the tree at its size (so history was
// only ever appended to), and that the latest checkpoint's root is the
// root of all entries.
func (l *Log) Audit(ctx context.Context) (*AuditReport, error) {
	l.mu.Lock()
	size := l.durable
	var leaves []byte
	if size > 0 {
		leaves = append([]byte(nil), l.tree.levels[0][:size*32]...)
	}
	end := l.cpEnd
	l.mu.Unlock()

	rep := &AuditReport{ByType: map[EntryType]uint64{}}
	var rebuilt tree
	r := bufio.NewReaderSize(io.NewSectionReader(l.entries, 0, 1<<62), 1<<20)
	var hdr [frameHeader]byte
	for i := uint64(0); i < size; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > MaxEntrySize {
			return nil, fmt.Errorf("entry %d: length %d over the limit", i, n)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			return nil, fmt.Errorf("entry %d: checksum mismatch", i)
		}
		leaf := hasher.HashLeaf(p)
		if !bytes.Equal(leaf, leaves[i*32:i*32+32]) {
			return nil, fmt.Errorf("entry %d: bytes do not match the indexed leaf hash", i)
		}
		e, err := DecodeEntry(p)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		rep.ByType[e.Type]++
		rebuilt.push(leaf)
	}
	rep.Entries = size
	notes, _, err := readFrames(l.cps, MaxCheckpointSize)
	if err != nil {
		return nil, err
	}
	var prev uint64
	var pos int64
	for k, raw := range notes {
		pos += frameHeader + int64(len(raw))
		if pos > end {
			break
		}
		cp, err := VerifyCheckpoint(raw, l.cfg.Origin, l.cfg.LogKey)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %d: %w", k, err)
		}
		if cp.Size < prev {
			return nil, fmt.Errorf("checkpoint %d: size %d shrinks from %d", k, cp.Size, prev)
		}
		if cp.Size > size {
			return nil, fmt.Errorf("checkpoint %d: size %d is beyond the log's %d", k, cp.Size, size)
		}
		root, err := rebuilt.root(cp.Size)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(root, cp.Root) {
			return nil, fmt.Errorf("checkpoint %d: root at size %d does not match the entries: history was rewritten", k, cp.Size)
		}
		prev = cp.Size
		rep.Checkpoints++
	}
	if prev != size {
		return nil, fmt.Errorf("latest checkpoint covers %d entries, the log has %d", prev, size)
	}
	rep.Root, _ = rebuilt.root(size)
	return rep, nil
}
