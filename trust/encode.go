package trust

import (
	"encoding/binary"
	"time"
)

// canon builds the canonical binary encodings that signatures cover.
// Every variable-length field is length-prefixed, so no two distinct values
// share an encoding.
type canon struct{ b []byte }

func newCanon(tag string) *canon { return &canon{b: append(make([]byte, 0, 4096), tag...)} }

func (c *canon) u8(v uint8)       { c.b = append(c.b, v) }
func (c *canon) u32(v uint32)     { c.b = binary.BigEndian.AppendUint32(c.b, v) }
func (c *canon) u64(v uint64)     { c.b = binary.BigEndian.AppendUint64(c.b, v) }
func (c *canon) i64(v int64)      { c.u64(uint64(v)) }
func (c *canon) raw(v []byte)     { c.b = append(c.b, v...) }
func (c *canon) time(t time.Time) { c.i64(t.Unix()) }
func (c *canon) bool(v bool) {
	if v {
		c.u8(1)
	} else {
		c.u8(0)
	}
}
func (c *canon) bytes(v []byte) {
	c.u32(uint32(len(v)))
	c.raw(v)
}
func (c *canon) str(v string) { c.bytes([]byte(v)) }

// timeFormat is the only accepted text form of a time: RFC 3339, UTC, whole
// seconds. Signatures cover Unix seconds, so anything finer would be unsigned.
const timeFormat = "2006-01-02T15:04:05Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(timeFormat, s)
	if err != nil || t.Format(timeFormat) != s {
		return time.Time{}, fieldErr(field, "%q is not an RFC 3339 UTC time with whole seconds (like 2026-01-02T15:04:05Z)", s)
	}
	return t, nil
}
