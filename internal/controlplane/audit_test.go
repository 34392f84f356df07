package controlplane

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseAuditQuery(t *testing.T) {
	tests := []struct {
		in, want string // want: an error substring, or "" for success
	}{
		{"", ""},
		{"since=2026-12-01T10:00:00Z&until=2026-12-01T11:00:00Z&actor=admin&type=cal.&cal=abcd&after=7&limit=50", ""},
		{"since=yesterday", `since "yesterday": want an RFC 3339 time`},
		{"after=-1", `after "-1": want a sequence number`},
		{"limit=0", `limit "0": want 1..1000`},
		{"limit=1001", `limit "1001": want 1..1000`},
		{"cal=ab", `cal "ab": give an ID or a prefix of at least 4 characters`},
		{"after=1&before=9", "after and before: give one"},
		{"actor=a&actor=b", "actor: given 2 times"},
		{"colour=red", "colour: unknown parameter"},
		{"since=2026-12-01T11:00:00Z&until=2026-12-01T10:00:00Z", "is not before until"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, _ := url.ParseQuery(tt.in)
			q, err := parseAuditQuery(v, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q (query %+v)", err, tt.want, q)
			}
		})
	}
	v, _ := url.ParseQuery("since=2026-12-01T10:00:00Z&type=cal.&after=7&limit=50")
	q, _ := parseAuditQuery(v, nil)
	if !q.Since.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) || q.Type != "cal." || q.After != 7 || q.Limit != 50 {
		t.Fatalf("parsed %+v", q)
	}
}

// FuzzParseAuditQuery: query strings are untrusted; they parse into a valid
// query or are refused, never a panic.
func FuzzParseAuditQuery(f *testing.F) {
	f.Add("since=2026-12-01T10:00:00Z&type=cal.&cal=abcd&after=7&limit=50")
	f.Add("before=3&actor=dev:alice")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		if q, err := parseAuditQuery(v, nil); err == nil {
			if err := q.Validate(); err != nil {
				t.Fatalf("accepted an invalid query: %v", err)
			}
		}
	})
}

func TestParseAuditQueryResolvesNames(t *testing.T) {
	v, _ := url.ParseQuery("cal=w")
	q, err := parseAuditQuery(v, func(ref string) string {
		if ref == "w" {
			return "a1b2c3d4e5f60718293a4b5c6d7e8f90"
		}
		return ref
	})
	if err != nil || q.Cal != "a1b2c3d4e5f60718293a4b5c6d7e8f90" {
		t.Fatalf("a name: %+v %v", q, err)
	}
}
