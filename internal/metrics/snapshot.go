package metrics

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Limits of a snapshot (it is read back from disk, which may be damaged
// or written by someone else: every count is checked before anything is
// allocated for it).
const (
	MaxSubjects    = 200_000
	MaxNameLen     = 256
	MaxSnapshotLen = 512 << 20
	snapshotMagic  = "calnet-metrics-v1\n"
)

// MarshalBinary encodes every series of the set: a compact, versioned
// form (times as varint deltas in milliseconds, values as float64 bits)
// so the control plane's metric history survives a restart.
func (s *Set) MarshalBinary() ([]byte, error) {
	s.mu.RLock()
	subjects := make([]string, 0, len(s.m))
	for k, ms := range s.m {
		if len(ms) > 0 {
			subjects = append(subjects, k)
		}
	}
	s.mu.RUnlock()
	sort.Strings(subjects)
	var e encoder
	e.b = append(e.b, snapshotMagic...)
	e.uvarint(uint64(len(subjects)))
	for _, subj := range subjects {
		s.mu.RLock()
		ms := s.m[subj]
		names := make([]string, 0, len(ms))
		for name := range ms {
			names = append(names, name)
		}
		sort.Strings(names)
		sers := make([]*Series, len(names))
		for i, name := range names {
			sers[i] = ms[name]
		}
		s.mu.RUnlock()
		e.str(subj)
		e.uvarint(uint64(len(names)))
		for i, ser := range sers {
			e.str(names[i])
			ser.mu.Lock()
			e.points(ser.recent)
			e.points(ser.minutes)
			var acc []Point
			if !ser.accT.IsZero() {
				acc = []Point{{ser.accT, ser.acc}}
			}
			e.points(acc)
			e.uvarint(uint64(ser.accN))
			ser.mu.Unlock()
		}
	}
	return e.b, nil
}

// encoder writes a snapshot.
type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) points(ps []Point) {
	e.uvarint(uint64(len(ps)))
	var prev int64
	for _, p := range ps {
		ms := p.T.UnixMilli()
		e.b = binary.AppendVarint(e.b, ms-prev)
		prev = ms
		e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(p.V))
	}
}

// UnmarshalBinary replaces the set's series with a snapshot's. A damaged
// or oversized snapshot is an error naming what is wrong, and the set is
// left as it was.
func (s *Set) UnmarshalBinary(data []byte) error {
	if len(data) > MaxSnapshotLen {
		return fmt.Errorf("metrics snapshot: %d bytes, over the limit of %d", len(data), MaxSnapshotLen)
	}
	rest, ok := bytes.CutPrefix(data, []byte(snapshotMagic))
	if !ok {
		return errors.New("metrics snapshot: not a calnet metrics snapshot (bad header)")
	}
	d := &decoder{b: rest}
	n := d.count("subjects", MaxSubjects)
	m := make(map[string]map[string]*Series, min(n, 1024))
	for i := 0; i < n && d.err == nil; i++ {
		subj := d.str("subject")
		k := d.count("metrics of "+subj, MaxGauges)
		ms := make(map[string]*Series, k)
		for j := 0; j < k && d.err == nil; j++ {
			name := d.str("metric name")
			ser := &Series{recent: d.points("recent samples", Recent), minutes: d.points("minute averages", Minutes)}
			if acc := d.points("current minute", 1); len(acc) == 1 {
				ser.accT, ser.acc = acc[0].T, acc[0].V
			}
			ser.accN = d.count("current minute samples", math.MaxInt32)
			if _, dup := ms[name]; dup && d.err == nil {
				d.err = fmt.Errorf("metric %q of %q appears twice", name, subj)
			}
			ms[name] = ser
		}
		if _, dup := m[subj]; dup && d.err == nil {
			d.err = fmt.Errorf("subject %q appears twice", subj)
		}
		m[subj] = ms
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes of trailing data", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("metrics snapshot: %w", d.err)
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	return nil
}

// decoder reads a snapshot; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%s: truncated or malformed varint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) count(what string, limit int) int {
	v := d.uvarint(what)
	if d.err == nil && v > uint64(limit) {
		d.err = fmt.Errorf("%s: %d, over the limit of %d", what, v, limit)
		return 0
	}
	return int(v)
}

func (d *decoder) str(what string) string {
	n := d.count(what+" length", MaxNameLen)
	if d.err != nil {
		return ""
	}
	if n > len(d.b) {
		d.err = fmt.Errorf("%s: truncated", what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) points(what string, limit int) []Point {
	n := d.count(what, limit)
	if d.err != nil || n == 0 {
		return nil
	}
	if n > len(d.b)/9 { // each point takes at least 9 bytes
		d.err = fmt.Errorf("%s: %d points but only %d bytes left", what, n, len(d.b))
		return nil
	}
	out := make([]Point, 0, n)
	var ms int64
	for range n {
		delta, k := binary.Varint(d.b)
		if k <= 0 || len(d.b)-k < 8 {
			d.err = fmt.Errorf("%s: truncated point", what)
			return nil
		}
		ms += delta
		v := math.Float64frombits(binary.LittleEndian.Uint64(d.b[k:]))
		d.b = d.b[k+8:]
		out = append(out, Point{time.UnixMilli(ms).UTC(), v})
	}
	return out
}
