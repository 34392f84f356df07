package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The checkpoints file (format 2) holds the log's latest signed
// checkpoints:
//
//	file header   8-byte magic "CALNETCP", u32 version (2), u32 CRC-32C of the first 12 bytes
//	record        u32 payload length, u32 CRC-32C of the payload, u64 sequence number,
//	              u8 kind (1: checkpoint), 3 zero bytes, u32 CRC-32C of the 20 bytes before it,
//	              then the payload: a signed checkpoint note
//
// Every commit appends one record whose sequence number is one more than
// the previous record's; once the file holds compactAfter records it is
// rewritten (to a temporary file, then renamed over it) holding only the
// latest one. Because the header has its own checksum, a reader can tell a
// record cut short by a crash from a record damaged after it was written,
// and whether any intact record follows a damaged one.
const (
	cpMagic        = "CALNETCP"
	cpVersion      = 2
	cpFileHeader   = 16
	cpRecordHeader = 24
	cpKindNote     = 1
)

// compactAfter is how many records the checkpoints file may hold before a
// commit rewrites it down to the latest one. A variable so tests can lower
// it.
var compactAfter = 32

// cpRecord is one intact record of the checkpoints file.
type cpRecord struct {
	Seq  uint64
	Off  int64 // offset of its header in the file
	Note []byte
}

// cpDamage describes the first damaged record of a checkpoints file.
type cpDamage struct {
	Off      int64
	Seq      uint64 // valid when SeqKnown
	SeqKnown bool
	Reason   string
	// Later is set when an intact record follows the damaged one: the
	// damage is not a write cut short by a crash (every record is synced
	// before the next one is written).
	Later bool
}

func (d *cpDamage) String() string {
	seq := "sequence number unreadable"
	if d.SeqKnown {
		seq = fmt.Sprintf("#%d", d.Seq)
	}
	return fmt.Sprintf("record at offset %d (%s): %s", d.Off, seq, d.Reason)
}

// cpScan is the parsed checkpoints file.
type cpScan struct {
	Version int
	Records []cpRecord // the intact records before any damage, in order
	Damage  *cpDamage  // the first damaged record, if any
	End     int64      // end of the last intact record (or of the file header)
}

func (s *cpScan) latest() *cpRecord {
	if len(s.Records) == 0 {
		return nil
	}
	return &s.Records[len(s.Records)-1]
}

func cpHeader() []byte {
	h := make([]byte, cpFileHeader)
	copy(h, cpMagic)
	binary.BigEndian.PutUint32(h[8:], cpVersion)
	binary.BigEndian.PutUint32(h[12:], crc32.Checksum(h[:12], crcTable))
	return h
}

// cpRecordBytes encodes one record.
func cpRecordBytes(seq uint64, note []byte) []byte {
	out := make([]byte, cpRecordHeader, cpRecordHeader+len(note))
	binary.BigEndian.PutUint32(out[0:], uint32(len(note)))
	binary.BigEndian.PutUint32(out[4:], crc32.Checksum(note, crcTable))
	binary.BigEndian.PutUint64(out[8:], seq)
	out[16] = cpKindNote
	binary.BigEndian.PutUint32(out[20:], crc32.Checksum(out[:20], crcTable))
	return append(out, note...)
}

// recordAt checks the record at off: it returns the record and its end,
// or a reason it is not intact (with the sequence number when the header
// is intact).
func recordAt(b []byte, off int64) (rec cpRecord, end int64, seqKnown bool, reason string) {
	rem := int64(len(b)) - off
	if rem < cpRecordHeader {
		return rec, 0, false, fmt.Sprintf("cut short: %d of the %d header bytes", rem, cpRecordHeader)
	}
	h := b[off : off+cpRecordHeader]
	if crc32.Checksum(h[:20], crcTable) != binary.BigEndian.Uint32(h[20:]) {
		if allZero(b[off:]) {
			return rec, 0, false, "cut short: zero-filled to the end of the file"
		}
		return rec, 0, false, "header checksum mismatch"
	}
	rec.Seq, rec.Off = binary.BigEndian.Uint64(h[8:]), off
	n := int64(binary.BigEndian.Uint32(h[0:]))
	if h[16] != cpKindNote || h[17]|h[18]|h[19] != 0 {
		return rec, 0, true, fmt.Sprintf("unknown record kind %d", h[16])
	}
	if n > MaxCheckpointSize {
		return rec, 0, true, fmt.Sprintf("length %d over the limit of %d", n, MaxCheckpointSize)
	}
	if rem-cpRecordHeader < n {
		return rec, 0, true, fmt.Sprintf("cut short: %d of the %d payload bytes", rem-cpRecordHeader, n)
	}
	p := b[off+cpRecordHeader : off+cpRecordHeader+n]
	if crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(h[4:]) {
		return rec, 0, true, "payload checksum mismatch"
	}
	rec.Note = p
	return rec, off + cpRecordHeader + n, true, ""
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// parseCheckpoints parses a format-2 checkpoints file. It stops at the
// first damaged record and reports it; records out of sequence are an
// error (records are never reordered or removed, only compacted away
// from the front).
func parseCheckpoints(b []byte) (*cpScan, error) {
	if len(b) < cpFileHeader || !bytes.Equal(b[:8], []byte(cpMagic)) {
		return nil, fmt.Errorf("checkpoints: not a format-%d checkpoints file (bad header)", cpVersion)
	}
	if crc32.Checksum(b[:12], crcTable) != binary.BigEndian.Uint32(b[12:16]) {
		return nil, fmt.Errorf("checkpoints: file header checksum mismatch")
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != cpVersion {
		return nil, fmt.Errorf("checkpoints: format version %d is unknown", v)
	}
	s := &cpScan{Version: cpVersion, End: cpFileHeader}
	for off := int64(cpFileHeader); off < int64(len(b)); {
		rec, end, seqKnown, reason := recordAt(b, off)
		if reason != "" {
			d := &cpDamage{Off: off, Seq: rec.Seq, SeqKnown: seqKnown, Reason: reason}
			// Is any intact record after it? Search every offset: the
			// damaged header's length cannot be trusted.
			for p := off + 1; p+cpRecordHeader <= int64(len(b)); p++ {
				if _, _, _, r := recordAt(b, p); r == "" {
					d.Later = true
					break
				}
			}
			s.Damage = d
			return s, nil
		}
		if last := s.latest(); last != nil && rec.Seq != last.Seq+1 {
			return nil, fmt.Errorf("checkpoints: record at offset %d is #%d after #%d: records were reordered or removed", off, rec.Seq, last.Seq)
		}
		s.Records = append(s.Records, rec)
		s.End = end
		off = end
	}
	return s, nil
}

// isLegacyCheckpoints reports whether b starts like a format-1 checkpoints
// file (frames of u32 length, u32 CRC, note), as written before format 2.
func isLegacyCheckpoints(b []byte) bool {
	return len(b) >= frameHeader && !bytes.HasPrefix(b, []byte(cpMagic[:4])) && binary.BigEndian.Uint32(b) <= MaxCheckpointSize
}

// parseLegacyCheckpoints parses a format-1 checkpoints file: frames back to
// back, one per commit. Records are numbered from 1 in file order. A frame
// the file ends inside of (or a zero-filled tail) is reported as damage;
// so is a complete frame whose checksum fails.
func parseLegacyCheckpoints(b []byte) *cpScan {
	s := &cpScan{Version: 1}
	for off := int64(0); off < int64(len(b)); {
		seq := uint64(len(s.Records) + 1)
		d := &cpDamage{Off: off, Seq: seq, SeqKnown: true}
		rem := int64(len(b)) - off
		switch {
		case rem < frameHeader:
			d.Reason = fmt.Sprintf("cut short: %d of the %d header bytes", rem, frameHeader)
		case allZero(b[off:]):
			d.Reason = "cut short: zero-filled to the end of the file"
		}
		var n int64
		if d.Reason == "" {
			n = int64(binary.BigEndian.Uint32(b[off:]))
			switch {
			case n > MaxCheckpointSize:
				d.Reason = fmt.Sprintf("length %d over the limit of %d", n, MaxCheckpointSize)
			case rem-frameHeader < n:
				d.Reason = fmt.Sprintf("cut short: %d of the %d payload bytes", rem-frameHeader, n)
			case crc32.Checksum(b[off+frameHeader:off+frameHeader+n], crcTable) != binary.BigEndian.Uint32(b[off+4:]):
				d.Reason = "payload checksum mismatch"
				d.Later = off+frameHeader+n < int64(len(b))
			}
		}
		if d.Reason != "" {
			s.Damage = d
			return s
		}
		s.Records = append(s.Records, cpRecord{Seq: seq, Off: off, Note: b[off+frameHeader : off+frameHeader+n]})
		off += frameHeader + n
		s.End = off
	}
	return s
}
