// Package termtext makes text that others wrote safe to print on a
// terminal. A Cal's workload writes its own log lines, console output,
// reflections, degraded reasons and error messages; printed as they are,
// an escape sequence among them acts on the administrator's terminal
// instead of showing: it moves the cursor over earlier output (a forged
// "revoked" line, a hidden one), retitles the window, or writes the
// clipboard (OSC 52). Every byte a terminal would act on is written as a
// visible escape instead.
package termtext

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// safe reports whether a terminal shows r rather than acting on it: tab
// and newline, and every printable character; not the C0 controls
// (ESC, CR, BS, ...), DEL, the C1 controls (U+0080..U+009F, among them
// CSI and OSC), nor the bidirectional overrides that reorder a line.
func safe(r rune) bool {
	switch {
	case r == '\t' || r == '\n':
		return true
	case r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f:
		return false
	case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
		return false
	}
	return true
}

// appendRune appends r, or its escape when a terminal would act on it.
func appendRune(b []byte, r rune) []byte {
	if safe(r) {
		return utf8.AppendRune(b, r)
	}
	switch r {
	case '\r':
		return append(b, `\r`...)
	case 0x1b:
		return append(b, `\x1b`...)
	}
	if r < 0x100 {
		return fmt.Appendf(b, `\x%02x`, r)
	}
	return fmt.Appendf(b, `\u%04x`, r)
}

// String returns s with every byte a terminal would act on escaped
// (invalid UTF-8 as \xNN).
func String(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !safe(r) || r == utf8.RuneError }) < 0 {
		return s
	}
	out, _ := escape(nil, []byte(s), true)
	return string(out)
}

// escape appends the escaped form of p to b. Unless final, an incomplete
// UTF-8 sequence at the end of p is not written but returned, for the
// caller to complete with its next bytes.
func escape(b, p []byte, final bool) (out, rest []byte) {
	for len(p) > 0 {
		r, n := utf8.DecodeRune(p)
		if r == utf8.RuneError && n <= 1 {
			if !final && !utf8.FullRune(p) {
				return b, p
			}
			b = fmt.Appendf(b, `\x%02x`, p[0])
			p = p[1:]
			continue
		}
		b = appendRune(b, r)
		p = p[n:]
	}
	return b, nil
}

// Writer writes to an underlying writer what it is given, escaped as
// String does. A UTF-8 sequence split between two writes is held until
// it is complete; Flush writes what is held.
//
// The first error of the underlying writer sticks: later writes write
// nothing and return it, and so does Flush. Text written with fmt.Fprint*
// (whose errors callers drop) is thus checked once, by Flush: a command
// whose output could not be written exits non-zero.
type Writer struct {
	w       io.Writer
	pending []byte
	err     error
}

// NewWriter returns a Writer that writes escaped text to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write escapes p and writes it. It reports len(p) when the escaped form
// was written whole.
func (t *Writer) Write(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	in := p
	if len(t.pending) > 0 {
		in = append(t.pending, p...)
	}
	out, rest := escape(make([]byte, 0, len(in)+16), in, false)
	t.pending = append(t.pending[:0], rest...)
	if _, err := t.w.Write(out); err != nil {
		t.err = err
		return 0, err
	}
	return len(p), nil
}

// Flush writes an incomplete UTF-8 sequence still held, escaped, and
// returns the first error of any write.
func (t *Writer) Flush() error {
	if t.err != nil || len(t.pending) == 0 {
		return t.err
	}
	out, _ := escape(nil, t.pending, true)
	t.pending = t.pending[:0]
	_, t.err = t.w.Write(out)
	return t.err
}
