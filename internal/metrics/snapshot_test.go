package metrics

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func filled(t0 time.Time) *Set {
	var s Set
	for i := range 400 { // past the recent window: minute averages too
		at := t0.Add(time.Duration(i) * 5 * time.Second)
		s.Add("cal-a", "cpu_percent", at, float64(i%17))
		s.Add("cal-a", "memory_bytes", at, float64(1<<20+i))
		if i%3 == 0 {
			s.Add("host", "free_memory_bytes", at, 1e9-float64(i))
		}
	}
	return &s
}

func TestSnapshotRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	src := filled(t0)
	b, err := src.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Set
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	for _, sm := range [][2]string{{"cal-a", "cpu_percent"}, {"cal-a", "memory_bytes"}, {"host", "free_memory_bytes"}} {
		want, have := src.Get(sm[0], sm[1]).Since(t0), got.Get(sm[0], sm[1]).Since(t0)
		if len(want) == 0 || !reflect.DeepEqual(want, have) {
			t.Fatalf("%v: %d points restored as %d (or differ)", sm, len(want), len(have))
		}
	}
	// The restored series go on: the current minute's average continues.
	at := t0.Add(400 * 5 * time.Second)
	src.Add("cal-a", "cpu_percent", at, 99)
	got.Add("cal-a", "cpu_percent", at, 99)
	if !reflect.DeepEqual(src.Get("cal-a", "cpu_percent").Since(t0), got.Get("cal-a", "cpu_percent").Since(t0)) {
		t.Fatal("a restored series diverges from the original after one more sample")
	}
	// Deterministic: the same set encodes to the same bytes.
	b2, _ := src.MarshalBinary()
	b3, _ := src.MarshalBinary()
	if string(b2) != string(b3) {
		t.Fatal("encoding is not deterministic")
	}
}

func TestSnapshotDamage(t *testing.T) {
	b, _ := filled(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)).MarshalBinary()
	// Every truncation is refused, and the set keeps what it had.
	for n := 0; n < len(b); n += 1 + n/50 {
		s := filled(time.Unix(0, 0))
		before := s.Get("cal-a", "cpu_percent").Since(time.Time{})
		if err := s.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: accepted", n, len(b))
		}
		if !reflect.DeepEqual(before, s.Get("cal-a", "cpu_percent").Since(time.Time{})) {
			t.Fatalf("truncated to %d bytes: the set changed although the snapshot was refused", n)
		}
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"trailing data", append(append([]byte{}, b...), 0), "trailing"},
		{"bad header", []byte("calnet-metrics-v9\n\x00"), "bad header"},
		{"too many subjects", append([]byte(snapshotMagic), 0xff, 0xff, 0xff, 0xff, 0x0f), "over the limit"},
		{"points beyond the data", append([]byte(snapshotMagic), 1, 1, 'a', 1, 1, 'm', 100), "bytes left"},
		{"duplicate subject", append([]byte(snapshotMagic), 2, 1, 'a', 0, 1, 'a', 0), "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Set
			if err := s.UnmarshalBinary(tt.data); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzSnapshot(f *testing.F) {
	b, _ := filled(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)).MarshalBinary()
	f.Add(b)
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Set
		if err := s.UnmarshalBinary(data); err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var s2 Set
		if err := s2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded snapshot refused: %v", err)
		}
	})
}
