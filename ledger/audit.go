package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
)

// AuditReport summarises a full audit.
type AuditReport struct {
	Entries uint64 `json:"entries"`
	// Checkpoints is how many signed checkpoints the checkpoints file
	// holds (the latest, and those not yet compacted away); each was
	// checked against the tree.
	Checkpoints int                  `json:"checkpoints"`
	ByType      map[EntryType]uint64 `json:"by_type"`
	Root        []byte               `json:"root"`
	// HeadSeq is the sequence number of the newest checkpoint the head file
	// records as acknowledged.
	HeadSeq uint64 `json:"head_seq"`
}

// Audit re-reads every file of the log: each entry's framing, CRC and leaf
// hash, that the entries lie back to back and decode as known entry types;
// that every checkpoint in the checkpoints file verifies and matches the
// tree at its size (so history was only ever appended to); that the head
// file's slots are intact and name an acknowledged checkpoint of this
// tree; and that the latest checkpoint's root is the root of all entries.
// Errors name the file, the entry or record, and its offset.
func (l *Log) Audit(ctx context.Context) (*AuditReport, error) {
	meta, err := l.readMeta()
	if err != nil {
		return nil, err
	}
	scan := meta.scan
	if d := scan.Damage; d != nil && (d.Later || scan.Version == 1) {
		return nil, damaged("%s: %s", checkpointsFile, d)
	}
	// Every checkpoint in the file, verified; the newest one sets how far
	// the files are read (a writer may have committed since this log was
	// opened).
	cps := make([]*Checkpoint, len(scan.Records))
	var size uint64
	for k := range scan.Records {
		rec := &scan.Records[k]
		cp, err := VerifyCheckpoint(rec.Note, l.cfg.Origin, l.cfg.LogKey)
		if err != nil {
			return nil, damaged("%s: record #%d at offset %d: %v", checkpointsFile, rec.Seq, rec.Off, err)
		}
		if cp.Size < size {
			return nil, damaged("%s: record #%d at offset %d: size %d shrinks from %d", checkpointsFile, rec.Seq, rec.Off, cp.Size, size)
		}
		cps[k], size = cp, cp.Size
	}
	if len(cps) == 0 {
		return nil, damaged("%s holds no checkpoint", checkpointsFile)
	}
	l.mu.Lock()
	opened := l.durable
	var known []byte
	if opened > 0 {
		known = append([]byte(nil), l.tree.levels[0][:opened*32]...)
	}
	l.mu.Unlock()
	if size < opened {
		return nil, damaged("%s: the newest checkpoint covers %d entries, fewer than the %d this log opened with", checkpointsFile, size, opened)
	}
	index := make([]byte, size*indexRecord)
	if _, err := l.index.ReadAt(index, 0); err != nil {
		return nil, damaged("%s: reading %d records: %v", indexFile, size, err)
	}

	rep := &AuditReport{ByType: map[EntryType]uint64{}, HeadSeq: meta.head.Seq}
	var rebuilt tree
	r := bufio.NewReaderSize(io.NewSectionReader(l.entries, 0, 1<<62), 1<<20)
	var hdr [frameHeader]byte
	pos := int64(0)
	for i := uint64(0); i < size; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fail := func(format string, args ...any) error {
			return damaged("%s: entry %d at offset %d: %s", entriesFile, i, pos, fmt.Sprintf(format, args...))
		}
		rec := index[i*indexRecord : (i+1)*indexRecord]
		if off := int64(binary.BigEndian.Uint64(rec[:8])); pos != off {
			return nil, damaged("%s: record %d says entry %d starts at offset %d, but the entry before it ends at %d", indexFile, i, i, off, pos)
		}
		if i < opened && !bytes.Equal(rec[8:], known[i*32:i*32+32]) {
			return nil, damaged("%s: record %d changed since the log was opened", indexFile, i)
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fail("%v", err)
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > MaxEntrySize {
			return nil, fail("length %d over the limit of %d", n, MaxEntrySize)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, fail("%v", err)
		}
		if crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			return nil, fail("checksum mismatch")
		}
		leaf := hasher.HashLeaf(p)
		if !bytes.Equal(leaf, rec[8:]) {
			return nil, fail("bytes do not match the leaf hash in %s", indexFile)
		}
		e, err := DecodeEntry(p)
		if err != nil {
			return nil, fail("%v", err)
		}
		rep.ByType[e.Type]++
		rebuilt.push(leaf)
		pos += frameHeader + int64(n)
	}
	rep.Entries = size
	for k, cp := range cps {
		rec := &scan.Records[k]
		root, err := rebuilt.root(cp.Size)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(root, cp.Root) {
			return nil, damaged("%s: record #%d at offset %d: root at size %d does not match the entries: history was rewritten", checkpointsFile, rec.Seq, rec.Off, cp.Size)
		}
		rep.Checkpoints++
	}
	last := scan.latest()
	if scan.Version == cpVersion {
		if !meta.hasHead {
			return nil, damaged("%s is missing", headFile)
		}
		if len(meta.headBad) > 0 {
			// Read again: a writer may have been writing the slot.
			hb, _, _ := readSmallFile(filepath.Join(l.cfg.Dir, headFile), headSize)
			_, bad, _ := parseHead(hb)
			for _, s := range bad {
				if !allZero(hb[s*headSlot : (s+1)*headSlot]) {
					return nil, damaged("%s: slot %d (offset %d) is damaged", headFile, s, s*headSlot)
				}
			}
		}
		if meta.head.Seq > last.Seq {
			return nil, damaged("%s records checkpoint #%d as acknowledged but %s ends at #%d", headFile, meta.head.Seq, checkpointsFile, last.Seq)
		}
		if meta.head.Seq > 0 {
			root, err := rebuilt.root(meta.head.Size)
			if err != nil || !bytes.Equal(root, meta.head.Root) {
				return nil, damaged("%s: checkpoint #%d at size %d does not match the entries", headFile, meta.head.Seq, meta.head.Size)
			}
		}
	}
	rep.Root, _ = rebuilt.root(size)
	return rep, nil
}
