package termtext

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "spawned helper-1 in 12ms\n", "spawned helper-1 in 12ms\n"},
		{"tab and utf-8", "queue\tdepth ≥ 10 ✓\n", "queue\tdepth ≥ 10 ✓\n"},
		{"cursor up and erase", "ok\x1b[1A\x1b[2Krevoked\n", `ok\x1b[1A\x1b[2Krevoked` + "\n"},
		{"osc 52 clipboard", "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07", `\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07`},
		{"carriage return", "real\rfake", `real\rfake`},
		{"backspace and del", "a\bb\x7f", `a\x08b\x7f`},
		{"c1 csi as utf-8", "x\u009b2Jy", `x\x9b2Jy`},
		{"bidi override", "file\u202egnp.exe", `file\u202egnp.exe`},
		{"invalid utf-8", "a\xffb\xc3", `a\xffb\xc3`},
		{"nul", "a\x00b", `a\x00b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := String(tc.in); got != tc.want {
				t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestWriterSplitsAnywhere writes text in every split of two writes: the
// output must be String's whatever the split, a character cut in two
// included.
func TestWriterSplitsAnywhere(t *testing.T) {
	in := "α\x1b[31mβ✓\r\n\xff€"
	want := String(in)
	for i := 0; i <= len(in); i++ {
		var b bytes.Buffer
		w := NewWriter(&b)
		for _, part := range []string{in[:i], in[i:]} {
			if n, err := w.Write([]byte(part)); err != nil || n != len(part) {
				t.Fatalf("split at %d: Write = %d, %v", i, n, err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if b.String() != want {
			t.Errorf("split at %d: %q, want %q", i, b.String(), want)
		}
	}
}

func TestWriterFlushesAnIncompleteCharacter(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	if _, err := w.Write([]byte("ok\xe2\x82")); err != nil {
		t.Fatal(err)
	}
	if b.String() != "ok" {
		t.Fatalf("before Flush: %q", b.String())
	}
	must(t, w.Flush())
	if b.String() != `ok\xe2\x82` {
		t.Fatalf("after Flush: %q", b.String())
	}
}

func FuzzString(f *testing.F) {
	f.Add("ok\x1b]52;c;aGk=\x07\r\n")
	f.Add("\xc3")
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if !utf8.ValidString(out) {
			t.Fatalf("String(%q) = %q: not valid UTF-8", s, out)
		}
		for _, r := range out {
			if !safe(r) {
				t.Fatalf("String(%q) = %q holds %U", s, out, r)
			}
		}
		if strings.IndexFunc(s, func(r rune) bool { return !safe(r) || r == utf8.RuneError }) < 0 && out != s {
			t.Fatalf("String(%q) = %q changed safe text", s, out)
		}
	})
}

// failAfter accepts n writes, then fails every one.
type failAfter struct{ n int }

var errFull = errors.New("no space left on device")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errFull
	}
	f.n--
	return len(p), nil
}

// TestWriterKeepsTheFirstError (issue 11, finding R8): output written
// with fmt.Fprint*, whose errors callers drop, fails at Flush when any
// write failed, so a command whose output was lost exits non-zero.
// Flush used to report only its own write (nil, with nothing held).
func TestWriterKeepsTheFirstError(t *testing.T) {
	f := &failAfter{n: 1}
	w := NewWriter(f)
	fmt.Fprintln(w, "first")
	fmt.Fprintln(w, "second") // fails
	if f.n != 0 {
		t.Fatalf("underlying writes left: %d", f.n)
	}
	f.n = 10 // the disk has room again: the lost line stays lost
	fmt.Fprintln(w, "third")
	if f.n != 10 {
		t.Error("a write after a failure reached the underlying writer")
	}
	if err := w.Flush(); !errors.Is(err, errFull) {
		t.Fatalf("Flush = %v, want %v", err, errFull)
	}
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
