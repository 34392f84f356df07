package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tests in this file damage every file of a closed log in every way a
// disk, a crash, an operator or an attacker with write access to the data
// directory can, and check the one property that matters: a log never
// opens silently shorter or different than what was acknowledged. Damage
// is either refused at Open (with ErrDamaged, naming the file) or found by
// Audit (ledger verify); only an older copy of the head file, which names
// less than the log holds, changes nothing and is accepted.

// ledgerFiles are the files that make up a log.
var ledgerFiles = []string{entriesFile, indexFile, checkpointsFile, headFile}

// committedLog builds a closed log of several commits (so the checkpoints
// file holds several records) and returns its size and root. snap, if not
// nil, is called after the second commit with the directory.
func committedLog(t testing.TB, dir string, snap func(dir string)) (uint64, []byte) {
	l := openLog(t, dir, true)
	ctx := context.Background()
	for c := range 4 {
		batch := []Entry{testEntry(c*10 + 1), testEntry(c*10 + 2), testEntry(c*10 + 3)}
		if _, err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		if c == 1 && snap != nil {
			snap(dir)
		}
	}
	cp := l.Checkpoint()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return cp.Size, cp.Root
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	must(t, os.MkdirAll(to, 0o700))
	for _, f := range ledgerFiles {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// outcome is what opening and auditing a damaged log gave.
type outcome struct {
	roErr, rwErr, auditErr error
}

func (o outcome) detected() bool { return o.roErr != nil || o.rwErr != nil || o.auditErr != nil }

// openDamaged opens dir read-only (and audits it), then for writing, and
// fails the test if either open succeeds with a state other than
// (size, root), or fails without ErrDamaged.
func openDamaged(t *testing.T, dir string, size uint64, root []byte, what string) outcome {
	t.Helper()
	k := testKey(t)
	var o outcome
	check := func(l *Log, err error, mode string) error {
		if err != nil {
			if !errors.Is(err, ErrDamaged) && !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s: %s open failed without ErrDamaged: %v", what, mode, err)
			}
			return err
		}
		if cp := l.Checkpoint(); cp.Size != size || !bytes.Equal(cp.Root, root) {
			t.Fatalf("%s: %s open silently gave size %d (root %x), want size %d (root %x)", what, mode, cp.Size, cp.Root[:4], size, root[:4])
		}
		return nil
	}
	ro, err := Open(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public()})
	if o.roErr = check(ro, err, "read-only"); o.roErr == nil {
		_, o.auditErr = ro.Audit(context.Background())
		if o.auditErr != nil && !errors.Is(o.auditErr, ErrDamaged) {
			t.Fatalf("%s: audit failed without ErrDamaged: %v", what, o.auditErr)
		}
	}
	if ro != nil {
		must(t, ro.Close())
	}
	rw, err := Open(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k})
	o.rwErr = check(rw, err, "write")
	if rw != nil {
		must(t, rw.Close())
	}
	return o
}

// positions lists the byte offsets to damage in a file of n bytes: every
// one for small files, else every header byte and a stride through the
// rest, always including the last bytes.
func positions(name string, b []byte) []int {
	n := len(b)
	var out []int
	switch name {
	case entriesFile:
		// Every frame header byte, a stride through the payloads, the
		// whole last frame.
		for off := 0; off < n; {
			fn := frameHeader + int(binary.BigEndian.Uint32(b[off:]))
			for i := range fn {
				if i < frameHeader || i%11 == 0 || off+fn == n {
					out = append(out, off+i)
				}
			}
			off += fn
		}
		return out
	case indexFile:
		// Every byte of the first and the last record, a stride through
		// the rest.
		for i := range n {
			if i < indexRecord || i >= n-indexRecord || i%7 == 0 {
				out = append(out, i)
			}
		}
		return out
	case headFile:
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	scan, err := parseCheckpoints(b)
	if err != nil {
		panic(err)
	}
	for i := range cpFileHeader {
		out = append(out, i)
	}
	for _, r := range scan.Records {
		for i := range cpRecordHeader {
			out = append(out, int(r.Off)+i)
		}
		for i := int(r.Off) + cpRecordHeader; i < int(r.Off)+cpRecordHeader+len(r.Note); i += 151 {
			out = append(out, i)
		}
		out = append(out, int(r.Off)+cpRecordHeader+len(r.Note)-1)
	}
	return out
}

func TestDamageBitFlips(t *testing.T) {
	if testing.Short() {
		t.Skip("opens the log thousands of times")
	}
	base := t.TempDir()
	size, root := committedLog(t, base, nil)
	for _, name := range ledgerFiles {
		t.Run(name, func(t *testing.T) {
			orig, err := os.ReadFile(filepath.Join(base, name))
			if err != nil {
				t.Fatal(err)
			}
			pos := positions(name, orig)
			dir := filepath.Join(t.TempDir(), "l")
			for _, p := range pos {
				bit := byte(1) << (p % 8)
				copyDir(t, base, dir)
				b := bytes.Clone(orig)
				b[p] ^= bit
				must(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
				o := openDamaged(t, dir, size, root, fmt.Sprintf("%s byte %d bit %#x", name, p, bit))
				if !o.detected() {
					t.Fatalf("%s byte %d bit %#x: neither Open nor Audit noticed", name, p, bit)
				}
			}
			t.Logf("%s: %d single-bit flips, each refused at Open or found by Audit", name, len(pos))
		})
	}
}

func TestDamageTruncation(t *testing.T) {
	if testing.Short() {
		t.Skip("opens the log thousands of times")
	}
	base := t.TempDir()
	size, root := committedLog(t, base, nil)
	for _, name := range ledgerFiles {
		t.Run(name, func(t *testing.T) {
			orig := readFile(t, filepath.Join(base, name))
			dir := filepath.Join(t.TempDir(), "l")
			// A third of the positions, and every record boundary (a cut
			// there leaves only whole records).
			bound := map[int]bool{}
			switch name {
			case checkpointsFile:
				s, _ := parseCheckpoints(orig)
				for _, r := range s.Records {
					bound[int(r.Off)] = true
				}
			case entriesFile:
				for off := 0; off < len(orig); off += frameHeader + int(binary.BigEndian.Uint32(orig[off:])) {
					bound[off] = true
				}
			case indexFile:
				for off := 0; off < len(orig); off += indexRecord {
					bound[off] = true
				}
			}
			var cuts []int
			for i, p := range positions(name, orig) {
				if i%3 == 0 || p == len(orig)-1 || bound[p] {
					cuts = append(cuts, p)
				}
			}
			for _, n := range append(cuts, -1) {
				copyDir(t, base, dir)
				what := fmt.Sprintf("%s cut to %d of %d bytes", name, n, len(orig))
				if n < 0 {
					os.Remove(filepath.Join(dir, name))
					what = name + " removed"
				} else {
					must(t, os.Truncate(filepath.Join(dir, name), int64(n)))
				}
				o := openDamaged(t, dir, size, root, what)
				// Every byte of every file is acknowledged data: Open
				// itself must refuse.
				if o.roErr == nil || o.rwErr == nil {
					t.Fatalf("%s: opened (read-only error %v, write error %v)", what, o.roErr, o.rwErr)
				}
			}
		})
	}
}

func TestDamageNamesTheFrame(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"checkpoint record before the tail", func(t *testing.T, d string) {
			b := readFile(t, filepath.Join(d, checkpointsFile))
			s, _ := parseCheckpoints(b)
			r := s.Records[1]
			b[r.Off+cpRecordHeader+100] ^= 1
			must(t, os.WriteFile(filepath.Join(d, checkpointsFile), b, 0o600))
		}, []string{checkpointsFile, "#2", "payload checksum mismatch", "an intact record follows"}},
		{"latest checkpoint record", func(t *testing.T, d string) {
			b := readFile(t, filepath.Join(d, checkpointsFile))
			b[len(b)-10] ^= 4
			must(t, os.WriteFile(filepath.Join(d, checkpointsFile), b, 0o600))
		}, []string{checkpointsFile, "ends at checkpoint #4, then a damaged record at offset", "(#5): payload checksum mismatch", "records checkpoint #5 (size 12) as acknowledged"}},
		{"checkpoints file truncated at a record boundary", func(t *testing.T, d string) {
			b := readFile(t, filepath.Join(d, checkpointsFile))
			s, _ := parseCheckpoints(b)
			must(t, os.Truncate(filepath.Join(d, checkpointsFile), s.Records[3].Off))
		}, []string{"ends at checkpoint #3", "truncated, damaged or replaced by an older copy"}},
		{"index record", func(t *testing.T, d string) {
			writeAt(t, filepath.Join(d, indexFile), []byte{0xff}, 3*indexRecord+20)
		}, []string{indexFile, "does not match the checkpoint root"}},
		{"head slot both", func(t *testing.T, d string) {
			must(t, os.WriteFile(filepath.Join(d, headFile), make([]byte, headSize), 0o600))
		}, []string{headFile, "both slots are damaged"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			size, root := committedLog(t, dir, nil)
			tt.damage(t, dir)
			o := openDamaged(t, dir, size, root, tt.name)
			for _, err := range []error{o.roErr, o.rwErr} {
				if err == nil {
					t.Fatal("opened")
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			}
		})
	}
}

func TestDamageReordering(t *testing.T) {
	swap := func(b []byte, a, c, n int) {
		tmp := bytes.Clone(b[a : a+n])
		copy(b[a:a+n], b[c:c+n])
		copy(b[c:c+n], tmp)
	}
	tests := []struct {
		name   string
		file   string
		damage func(b []byte) []byte
	}{
		{"two checkpoint records", checkpointsFile, func(b []byte) []byte {
			s, _ := parseCheckpoints(b)
			r1, r2 := s.Records[1], s.Records[2]
			out := append([]byte(nil), b[:r1.Off]...)
			out = append(out, b[r2.Off:r2.Off+cpRecordHeader+int64(len(r2.Note))]...)
			out = append(out, b[r1.Off:r1.Off+cpRecordHeader+int64(len(r1.Note))]...)
			return append(out, b[r2.Off+cpRecordHeader+int64(len(r2.Note)):]...)
		}},
		{"two index records", indexFile, func(b []byte) []byte { swap(b, 2*indexRecord, 7*indexRecord, indexRecord); return b }},
		{"two index leaf hashes", indexFile, func(b []byte) []byte { swap(b, 2*indexRecord+8, 7*indexRecord+8, 32); return b }},
		{"two entries of one length", entriesFile, func(b []byte) []byte {
			// testEntry(1) and testEntry(2) encode to the same length.
			n := len(frame(mustEncode(testEntry(1))))
			swap(b, 0, n, n)
			return b
		}},
		{"the two head slots", headFile, func(b []byte) []byte { swap(b, 0, headSlot, headSlot); return b }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			size, root := committedLog(t, dir, nil)
			b := readFile(t, filepath.Join(dir, tt.file))
			must(t, os.WriteFile(filepath.Join(dir, tt.file), tt.damage(bytes.Clone(b)), 0o600))
			if o := openDamaged(t, dir, size, root, tt.name); !o.detected() {
				t.Fatal("reordering went unnoticed")
			}
		})
	}
}

func mustEncode(e Entry) []byte {
	b, err := e.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

func TestDamageOlderCopies(t *testing.T) {
	for _, name := range append(ledgerFiles, "all") {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			old := filepath.Join(t.TempDir(), "old")
			size, root := committedLog(t, dir, func(d string) { copyDir(t, d, old) })
			files := []string{name}
			if name == "all" {
				files = ledgerFiles
			}
			for _, f := range files {
				b := readFile(t, filepath.Join(old, f))
				must(t, os.WriteFile(filepath.Join(dir, f), b, 0o600))
			}
			if name == "all" {
				// A consistent older copy of the whole directory cannot be
				// told from the inside: it opens as the older log. The
				// control plane's state store anchors the size
				// (internal/controlplane TestLedgerRollbackRefused).
				l := openLog(t, old, false)
				size, root = l.Size(), l.Checkpoint().Root
				must(t, l.Close())
			}
			o := openDamaged(t, dir, size, root, "older "+name)
			switch name {
			case headFile:
				// An older head names less than the log holds: nothing
				// is lost, and the writer brings it up to date.
				if o.detected() {
					t.Fatalf("an older head was refused: %v %v %v", o.roErr, o.rwErr, o.auditErr)
				}
			case "all":
				if o.detected() {
					t.Fatalf("older whole log: %v %v %v", o.roErr, o.rwErr, o.auditErr)
				}
			default:
				if o.roErr == nil || o.rwErr == nil {
					t.Fatalf("an older %s was accepted: %+v", name, o)
				}
			}
		})
	}
}

// TestTornTailDroppedOnlyWhenUnacknowledged: what a crash can leave (a cut
// short or zero-filled record after the acknowledged one, entries and index
// records beyond it) is dropped by a writer; the same bytes after a head
// that names them as acknowledged are refused.
func TestTornTailDroppedOnlyWhenUnacknowledged(t *testing.T) {
	dir := t.TempDir()
	size, root := committedLog(t, dir, nil)
	hb := readFile(t, filepath.Join(dir, headFile))
	h, _, _ := parseHead(hb)
	note, err := signCheckpoint(testOrigin, size+1, root, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := cpRecordBytes(h.Seq+1, note)
	tests := []struct {
		name string
		tail []byte
	}{
		{"cut inside the header", rec[:10]},
		{"cut inside the payload", rec[:cpRecordHeader+100]},
		{"zero-filled", make([]byte, len(rec))},
		{"complete but damaged", append(bytes.Clone(rec[:len(rec)-1]), rec[len(rec)-1]^1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "l")
			copyDir(t, dir, d)
			appendFile(t, d, checkpointsFile, tt.tail)
			appendFile(t, d, entriesFile, []byte("\x00\x00\x00\x10torn"))
			appendFile(t, d, indexFile, make([]byte, 50))
			if o := openDamaged(t, d, size, root, tt.name); o.roErr != nil || o.rwErr != nil {
				t.Fatalf("an unacknowledged tail was refused: %+v", o)
			}
			// The writer dropped it: the files end where the log does.
			l := openLog(t, d, false)
			if _, err := l.Audit(context.Background()); err != nil {
				t.Fatal(err)
			}
			cb := readFile(t, filepath.Join(d, checkpointsFile))
			if s, _ := parseCheckpoints(cb); s.Damage != nil {
				t.Fatalf("tail left behind: %v", s.Damage)
			}
			// The same tail named acknowledged by the head: refused.
			d2 := filepath.Join(t.TempDir(), "l")
			copyDir(t, dir, d2)
			appendFile(t, d2, checkpointsFile, tt.tail)
			nh := head{Seq: h.Seq + 1, Size: size, Root: root}
			writeAt(t, filepath.Join(d2, headFile), nh.slot(), slotOffset(nh.Seq))
			if o := openDamaged(t, d2, size, root, tt.name+" acknowledged"); o.roErr == nil || o.rwErr == nil {
				t.Fatalf("an acknowledged record's damage was accepted: %+v", o)
			}
		})
	}
}

func TestSecondWriterRefused(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, true)
	if _, err := l.Append(context.Background(), testEntry(1)); err != nil {
		t.Fatal(err)
	}
	k := testKey(t)
	if _, err := Open(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v", err)
	}
	// Readers are welcome.
	ro := openLog(t, dir, false)
	if ro.Size() != 1 {
		t.Fatalf("reader sees %d entries", ro.Size())
	}
	must(t, l.Close())
	l2 := openLog(t, dir, true)
	if l2.Size() != 1 {
		t.Fatal("reopen after close")
	}
}
