package controlplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseLogLine(t *testing.T) {
	for _, tt := range []struct{ line, level string }{
		{`time=2026-11-25T23:49:46.936Z level=INFO msg="blessed a child"`, "INFO"},
		{`time=2026-11-25T23:49:46.936Z level=WARN msg=x`, "WARN"},
		{`plain text from a workload`, ""},
		{`time=garbage level=`, ""},
	} {
		tm, level := parseLogLine(tt.line)
		if level != tt.level || (tt.level != "" && !tm.Equal(time.Date(2026, 11, 25, 23, 49, 46, 936e6, time.UTC))) {
			t.Errorf("%q: %v %q", tt.line, tm, level)
		}
	}
}

// TestReadLog: the tail starts on a whole line, a cursor returns only what
// was appended, a partial last line waits for its newline, and a log that
// shrank (replaced) is read again from its start.
func TestReadLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.log")
	long := strings.Repeat("x", logTail)
	must(t, os.WriteFile(p, []byte(long+"\nfirst\nsecond\npart"), 0o600))
	lines, off, err := readLog(p, -1, logTail)
	if err != nil || len(lines) != 2 || lines[0] != "first" || lines[1] != "second" {
		t.Fatalf("tail: %q %v", lines, err)
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if _, err := f.WriteString("ial\nthird\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	lines, off2, _ := readLog(p, off, logFollowMax)
	if len(lines) != 2 || lines[0] != "partial" || lines[1] != "third" || off2 <= off {
		t.Fatalf("follow: %q", lines)
	}
	must(t, os.WriteFile(p, []byte("new\n"), 0o600))
	if lines, _, _ := readLog(p, off2, logFollowMax); len(lines) != 1 || lines[0] != "new" {
		t.Fatalf("replaced: %q", lines)
	}
	// A small share reads only the last lines that fit, and a cursor
	// advances only over what was read.
	must(t, os.WriteFile(p, []byte("aaaa\nbbbb\ncccc\n"), 0o600))
	if lines, _, _ := readLog(p, -1, 10); len(lines) != 1 || lines[0] != "cccc" {
		t.Fatalf("share of 10 bytes: %q", lines)
	}
	if lines, end, _ := readLog(p, 0, 10); len(lines) != 2 || end != 10 {
		t.Fatalf("cursor with a share of 10 bytes: %q %d", lines, end)
	}
}

// FuzzLogCursor: a cursor is untrusted input; it decodes or is refused
// with a 400, never a panic or a negative offset.
func FuzzLogCursor(f *testing.F) {
	f.Add("")
	f.Add("eyJhIjoxMn0")
	f.Add("eyJhIjotMX0")
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, s string) {
		cur, aerr := decodeCursor(s)
		if aerr != nil {
			if aerr.Status != 400 {
				t.Fatalf("status %d", aerr.Status)
			}
			return
		}
		for _, v := range cur {
			if v < 0 {
				t.Fatalf("negative offset from %q", s)
			}
		}
	})
}
