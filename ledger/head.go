package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The head file records the newest checkpoint a writer has acknowledged:
// two 64-byte slots, written alternately (slot = sequence number mod 2),
// each
//
//	8-byte magic "CALNETHD", u64 sequence number, u64 tree size,
//	32-byte root, u32 CRC-32C of the 56 bytes before it, 4 zero bytes
//
// A commit writes the slot only after the checkpoint record it names is
// synced, so every checkpoint with a sequence number up to the head's was
// acknowledged, and one past it never was. Open refuses a log whose
// checkpoints end before the head (acknowledged data is missing), and may
// drop only what lies beyond it. A damaged slot leaves the other, one
// commit older. Sequence number 0 means no checkpoint was written yet.
const (
	headMagic = "CALNETHD"
	headSlot  = 64
	headSize  = 2 * headSlot
)

// head is the decoded head file.
type head struct {
	Seq  uint64
	Size uint64
	Root []byte
}

func (h head) slot() []byte {
	b := make([]byte, headSlot)
	copy(b, headMagic)
	binary.BigEndian.PutUint64(b[8:], h.Seq)
	binary.BigEndian.PutUint64(b[16:], h.Size)
	copy(b[24:56], h.Root)
	binary.BigEndian.PutUint32(b[56:], crc32.Checksum(b[:56], crcTable))
	return b
}

// slotOffset is where the slot for sequence number seq lives.
func slotOffset(seq uint64) int64 { return int64(seq%2) * headSlot }

// parseHead decodes the head file: the valid slot with the higher sequence
// number. damaged lists the slots that did not decode.
func parseHead(b []byte) (h head, damaged []int, err error) {
	if len(b) != headSize {
		return h, nil, fmt.Errorf("head: %d bytes, want %d", len(b), headSize)
	}
	found := false
	for i := range 2 {
		s := b[i*headSlot : (i+1)*headSlot]
		ok := bytes.Equal(s[:8], []byte(headMagic)) && crc32.Checksum(s[:56], crcTable) == binary.BigEndian.Uint32(s[56:]) && allZero(s[60:])
		seq := binary.BigEndian.Uint64(s[8:])
		if ok && slotOffset(seq) != int64(i)*headSlot {
			ok = false // a slot copied to the other place
		}
		if !ok {
			damaged = append(damaged, i)
			continue
		}
		if !found || seq > h.Seq {
			h = head{Seq: seq, Size: binary.BigEndian.Uint64(s[16:]), Root: append([]byte(nil), s[24:56]...)}
			found = true
		}
	}
	if !found {
		return h, damaged, fmt.Errorf("head: both slots are damaged")
	}
	return h, damaged, nil
}
