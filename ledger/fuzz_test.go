package ledger

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseCheckpoints(f *testing.F) {
	k := testKey(f)
	n1, _ := signCheckpoint(testOrigin, 1, make([]byte, 32), k)
	n2, _ := signCheckpoint(testOrigin, 2, make([]byte, 32), k)
	good := append(append(cpHeader(), cpRecordBytes(7, n1)...), cpRecordBytes(8, n2)...)
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add(cpHeader())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseCheckpoints(b)
		if err != nil {
			return
		}
		// Intact records are exactly what the file holds at their offsets,
		// in sequence, and the file re-encodes to the same bytes.
		out := cpHeader()
		for i, r := range s.Records {
			if i > 0 && r.Seq != s.Records[i-1].Seq+1 {
				t.Fatalf("records out of sequence: %d after %d", r.Seq, s.Records[i-1].Seq)
			}
			if int64(len(out)) != r.Off {
				t.Fatalf("record %d at offset %d, want %d", i, r.Off, len(out))
			}
			out = append(out, cpRecordBytes(r.Seq, r.Note)...)
		}
		if !bytes.Equal(out, b[:s.End]) {
			t.Fatal("intact records do not re-encode to the file's bytes")
		}
		if s.Damage == nil && s.End != int64(len(b)) {
			t.Fatal("no damage reported but the file goes on")
		}
	})
}

func FuzzParseLegacyCheckpoints(f *testing.F) {
	n1, _ := signCheckpoint(testOrigin, 1, make([]byte, 32), testKey(f))
	f.Add(append(frame(n1), frame([]byte("x"))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := parseLegacyCheckpoints(b)
		var out []byte
		for _, r := range s.Records {
			out = append(out, frame(r.Note)...)
		}
		if !bytes.Equal(out, b[:s.End]) {
			t.Fatal("intact frames do not re-encode to the file's bytes")
		}
		if s.Damage == nil && s.End != int64(len(b)) {
			t.Fatal("no damage reported but the file goes on")
		}
	})
}

func FuzzParseHead(f *testing.F) {
	b := make([]byte, headSize)
	copy(b[slotOffset(4):], head{Seq: 4, Size: 9, Root: bytes.Repeat([]byte{1}, 32)}.slot())
	copy(b[slotOffset(5):], head{Seq: 5, Size: 10, Root: bytes.Repeat([]byte{2}, 32)}.slot())
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, bad, err := parseHead(b)
		if err != nil {
			return
		}
		if len(bad) > 1 || len(h.Root) != 32 {
			t.Fatalf("parsed with %d damaged slots, root of %d bytes", len(bad), len(h.Root))
		}
		if !bytes.Equal(b[slotOffset(h.Seq):slotOffset(h.Seq)+headSlot], h.slot()) {
			t.Fatal("the chosen slot does not re-encode to its bytes")
		}
	})
}

// FuzzOpenCheckpointsFile opens a real log whose checkpoints file is
// replaced by arbitrary bytes: whatever they are, the log either refuses to
// open or opens at exactly the acknowledged checkpoint (the head names it).
func FuzzOpenCheckpointsFile(f *testing.F) {
	base := f.TempDir()
	size, root := committedLog(f, base, nil)
	good, _ := os.ReadFile(filepath.Join(base, checkpointsFile))
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(append(bytes.Clone(good), 0, 0, 0))
	k := testKey(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		copyDir(t, base, dir)
		must(t, os.WriteFile(filepath.Join(dir, checkpointsFile), b, 0o600))
		for _, signer := range []*Log{nil, {}} {
			cfg := Config{Dir: dir, Origin: testOrigin, LogKey: k.Public()}
			if signer != nil {
				cfg.Signer = k
			}
			l, err := Open(cfg)
			if err != nil {
				continue
			}
			cp := l.Checkpoint()
			must(t, l.Close())
			if cp.Size != size || !bytes.Equal(cp.Root, root) {
				t.Fatalf("opened at size %d, want %d", cp.Size, size)
			}
		}
	})
}

// FuzzRepairCheckpointsFile runs Repair (a dry run, then for real) on a log
// whose checkpoints file is arbitrary bytes: it never panics, and a repair
// it carries out leaves a log that opens at the acknowledged checkpoint.
func FuzzRepairCheckpointsFile(f *testing.F) {
	base := f.TempDir()
	size, root := committedLog(f, base, nil)
	good, _ := os.ReadFile(filepath.Join(base, checkpointsFile))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	k := testKey(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		copyDir(t, base, dir)
		must(t, os.WriteFile(filepath.Join(dir, checkpointsFile), b, 0o600))
		cfg := Config{Dir: dir, Origin: testOrigin, LogKey: k.Public()}
		if _, err := Repair(cfg, true); err != nil {
			return
		}
		cfg.Signer = k
		p, err := Repair(cfg, false)
		if err != nil {
			return
		}
		if p.Size != size || !bytes.Equal(p.Root, root) {
			t.Fatalf("repair left size %d, want %d", p.Size, size)
		}
		l, err := Open(cfg)
		if err != nil {
			t.Fatalf("a repaired log does not open: %v", err)
		}
		closeAtEnd(t, l)
		if l.Size() != size {
			t.Fatalf("repaired log opens at %d", l.Size())
		}
	})
}
