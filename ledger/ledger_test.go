package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/soulfra/calnet/identity"
)

const testOrigin = "calnet.test/ledger"

func testKey(t testing.TB) *identity.PrivateKey {
	seed := sha256.Sum256([]byte("ledger test key"))
	k, err := identity.FromSeed(append(seed[:], seed[:]...))
	if err != nil {
		panic(err)
	}
	return k
}

// must fails the test at once on the error of a step it cannot go on
// without: setup, the damage it inflicts, a close before a reopen.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openLog(t testing.TB, dir string, write bool) *Log {
	t.Helper()
	k := testKey(t)
	cfg := Config{Dir: dir, Origin: testOrigin, LogKey: k.Public()}
	if write {
		cfg.Signer = k
	}
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func testEntry(i int) Entry {
	return Entry{Type: TypeSpawn, Time: time.Unix(int64(i), 0).UTC(), Subject: fmt.Sprintf("cal-%d", i), Data: json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`)}
}

// naiveRoot is RFC 6962's MTH, written straight from the definition.
func naiveRoot(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		return hasher.HashLeaf(leaves[0])
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return hasher.HashChildren(naiveRoot(leaves[:k]), naiveRoot(leaves[k:]))
}

func TestTreeMatchesNaiveRFC6962(t *testing.T) {
	var tr tree
	var data [][]byte
	for n := 0; n <= 130; n++ {
		got, err := tr.root(uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		if want := naiveRoot(data); !bytes.Equal(got, want) {
			t.Fatalf("size %d: root %x, want %x", n, got, want)
		}
		d := []byte(fmt.Sprint("leaf", n))
		data = append(data, d)
		tr.push(hasher.HashLeaf(d))
	}
}

func TestAppendProveReopen(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, true)
	ctx := context.Background()
	if cp := l.Checkpoint(); cp == nil || cp.Size != 0 {
		t.Fatalf("new log checkpoint = %+v", cp)
	}
	// Concurrent appenders share commits.
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]bool{}
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				idx, err := l.Append(ctx, testEntry(w*1000+i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[idx[0]] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 200 || l.Size() != 200 {
		t.Fatalf("%d distinct indices, size %d; want 200", len(seen), l.Size())
	}
	cp := l.Checkpoint()
	for _, idx := range []uint64{0, 1, 99, 127, 128, 199} {
		p, err := l.Inclusion(idx, 0)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := l.Entry(idx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(LeafHash(raw), p.LeafHash) {
			t.Fatal("leaf hash is not the entry's")
		}
		if err := p.Verify(cp.Root); err != nil {
			t.Fatalf("inclusion %d: %v", idx, err)
		}
		// JSON round trip in the documented shape.
		b, _ := json.Marshal(p)
		if !strings.HasPrefix(string(b), `{"index":`) || !strings.Contains(string(b), `"leaf_hash":"`) {
			t.Fatalf("proof JSON = %s", b)
		}
		p2, err := ParseInclusionProof(b)
		if err != nil || p2.Verify(cp.Root) != nil {
			t.Fatalf("parsed proof: %v", err)
		}
		bad := *p2
		bad.Index = (idx + 1) % 200
		if bad.Verify(cp.Root) == nil {
			t.Fatal("proof verified for the wrong index")
		}
	}
	for _, old := range []uint64{0, 1, 7, 64, 150, 200} {
		oldRoot, _ := l.Root(old)
		p, err := l.Consistency(old, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Verify(oldRoot, cp.Root); err != nil {
			t.Fatalf("consistency %d->200: %v", old, err)
		}
		if old > 1 && p.Verify(bytes.Repeat([]byte{1}, 32), cp.Root) == nil {
			t.Fatal("consistency verified a wrong old root")
		}
	}
	must(t, l.Close())

	l2 := openLog(t, dir, true)
	if l2.Size() != 200 || !bytes.Equal(l2.Checkpoint().Root, cp.Root) {
		t.Fatal("reopened log differs")
	}
	if _, err := l2.Append(ctx, testEntry(5000)); err != nil {
		t.Fatal(err)
	}
	rep, err := l2.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 201 || rep.ByType[TypeSpawn] != 201 || rep.Checkpoints < 2 {
		t.Fatalf("audit = %+v", rep)
	}
	// Read-only view of the same files.
	ro := openLog(t, dir, false)
	if ro.Size() != 201 {
		t.Fatalf("read-only size %d", ro.Size())
	}
	if _, err := ro.Append(ctx, testEntry(1)); err == nil {
		t.Fatal("read-only log accepted an append")
	}
}

func TestCheckpointIsAStandardSignedNote(t *testing.T) {
	l := openLog(t, t.TempDir(), true)
	if _, err := l.Append(context.Background(), testEntry(1), testEntry(2)); err != nil {
		t.Fatal(err)
	}
	cp := l.Checkpoint()
	vkey, err := VerifierKey(testOrigin, testKey(t).Public())
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cp.Note, note.VerifierList(v))
	if err != nil {
		t.Fatalf("golang.org/x/mod/sumdb/note rejects the checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if lines[0] != testOrigin || lines[1] != "2" {
		t.Fatalf("note text = %q", n.Text)
	}
	if len(n.UnverifiedSigs) != 1 {
		t.Fatalf("want the ML-DSA signature beside the Ed25519 one, got %d others", len(n.UnverifiedSigs))
	}
}

func TestVerifyCheckpointRejects(t *testing.T) {
	l := openLog(t, t.TempDir(), true)
	if _, err := l.Append(context.Background(), testEntry(1)); err != nil {
		t.Fatal(err)
	}
	good := string(l.Checkpoint().Note)
	other, _ := identity.Generate(nil)
	sigLines := strings.SplitAfter(good, "\n\n")
	lines := strings.Split(strings.TrimSuffix(sigLines[1], "\n"), "\n")
	tests := []struct {
		name, in string
		key      *identity.PublicKey
		origin   string
		want     string
	}{
		{"size changed", strings.Replace(good, "\n1\n", "\n2\n", 1), testKey(t).Public(), testOrigin, "invalid checkpoint"},
		{"ml-dsa line dropped", sigLines[0] + lines[0] + "\n", testKey(t).Public(), testOrigin, "no ML-DSA-65 signature"},
		{"ed25519 line dropped", sigLines[0] + lines[1] + "\n", testKey(t).Public(), testOrigin, "invalid checkpoint"},
		{"other key", good, other.Public(), testOrigin, "invalid checkpoint"},
		{"other origin", good, testKey(t).Public(), "calnet.test/other", "invalid checkpoint"},
		{"garbage", "hello", testKey(t).Public(), testOrigin, "invalid checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := VerifyCheckpoint([]byte(tt.in), tt.origin, tt.key); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRecoveryFromTornWrites(t *testing.T) {
	tests := []struct {
		name     string
		damage   func(t *testing.T, dir string)
		wantSize uint64
		wantErr  string
	}{
		{"garbage after entries", func(t *testing.T, d string) { appendFile(t, d, entriesFile, []byte("\x00\x00\x01\x00torn")) }, 10, ""},
		{"half index record", func(t *testing.T, d string) { appendFile(t, d, indexFile, make([]byte, 17)) }, 10, ""},
		{"torn checkpoint", func(t *testing.T, d string) { appendFile(t, d, checkpointsFile, []byte{0, 0, 9, 0, 1, 2}) }, 10, ""},
		{"uncheckpointed entries", func(t *testing.T, d string) {
			// A writer that wrote and synced entries and index, then died
			// before its checkpoint.
			l := openLog(t, d, true)
			l.mu.Lock()
			_, err1 := l.ew.Write(frame([]byte(`{"type":"spawn","time":"2026-01-01T00:00:00Z"}`)))
			err2 := l.ew.Flush()
			_, err3 := l.iw.Write(make([]byte, indexRecord))
			err4 := l.iw.Flush()
			l.mu.Unlock()
			must(t, errors.Join(err1, err2, err3, err4))
			must(t, l.Close())
		}, 10, ""},
		{"index lost records", func(t *testing.T, d string) { must(t, os.Truncate(filepath.Join(d, indexFile), 5*indexRecord)) }, 0, "the log lost data"},
		{"index rewritten", func(t *testing.T, d string) {
			writeAt(t, filepath.Join(d, indexFile), []byte{0xff}, 3*indexRecord+20)
		}, 0, "does not match the checkpoint root"},
		{"checkpoint record forged", func(t *testing.T, d string) {
			// A well-framed record whose note is not signed by the log key.
			b := readFile(t, filepath.Join(d, headFile))
			h, _, _ := parseHead(b)
			appendFile(t, d, checkpointsFile, cpRecordBytes(h.Seq+1, []byte("calnet.test/ledger\n99\nAAAA\n\n— x y\n")))
		}, 0, "latest record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, true)
			for i := range 10 {
				if _, err := l.Append(context.Background(), testEntry(i)); err != nil {
					t.Fatal(err)
				}
			}
			root := l.Checkpoint().Root
			must(t, l.Close())
			tt.damage(t, dir)
			k := testKey(t)
			l2, err := Open(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, l2)
			if l2.Size() != tt.wantSize || !bytes.Equal(l2.Checkpoint().Root, root) {
				t.Fatalf("size %d, want %d", l2.Size(), tt.wantSize)
			}
			if _, err := l2.Append(context.Background(), testEntry(99)); err != nil {
				t.Fatal(err)
			}
			if _, err := l2.Audit(context.Background()); err != nil {
				t.Fatalf("audit after recovery: %v", err)
			}
		})
	}
}

func TestCorruptedEntryDetected(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, true)
	for i := range 10 {
		if _, err := l.Append(context.Background(), testEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	off := l.offsets[4]
	must(t, l.Close())
	writeAt(t, filepath.Join(dir, entriesFile), []byte("X"), off+frameHeader+3)
	l2 := openLog(t, dir, false)
	if _, err := l2.Entry(4); err == nil || !strings.Contains(err.Error(), "corrupted") {
		t.Fatalf("Entry(4) error = %v", err)
	}
	if _, err := l2.Entry(5); err != nil {
		t.Fatalf("Entry(5): %v", err)
	}
	if _, err := l2.Audit(context.Background()); err == nil || !strings.Contains(err.Error(), "entry 4") {
		t.Fatalf("Audit error = %v", err)
	}
}

func TestAppendRejectsBadEntries(t *testing.T) {
	l := openLog(t, t.TempDir(), true)
	ctx := context.Background()
	tests := []struct {
		name string
		e    Entry
		want string
	}{
		{"unknown type", Entry{Type: "party"}, `entry type "party" is unknown`},
		{"oversized", Entry{Type: TypeAudit, Data: json.RawMessage(`"` + strings.Repeat("x", MaxEntrySize) + `"`)}, "over the limit of 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := l.Append(ctx, testEntry(1), tt.e); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if l.Size() != 0 {
				t.Fatal("a rejected batch was partly written")
			}
		})
	}
	if _, err := l.Append(ctx, make([]Entry, MaxBatch+1)...); err == nil {
		t.Fatal("oversized batch accepted")
	}
}

// closeAtEnd closes c when the test ends, failing it if that fails.
func closeAtEnd(t testing.TB, c io.Closer) {
	t.Helper()
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
}

// appendFile appends b to a file of the log (a torn or extra write).
func appendFile(t testing.TB, dir, name string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(b)
	must(t, errors.Join(err, f.Close()))
}

// writeAt overwrites bytes of a file in place (damage).
func writeAt(t testing.TB, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt(b, off)
	must(t, errors.Join(err, f.Close()))
}

// readFile reads a file the test wrote.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

func FuzzParseInclusionProof(f *testing.F) {
	f.Add([]byte(`{"index":1,"tree_size":3,"leaf_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","hashes":[]}`))
	root := make([]byte, 32)
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParseInclusionProof(b); err == nil {
			_ = p.Verify(root)
		}
	})
}

func FuzzParseConsistencyProof(f *testing.F) {
	f.Add([]byte(`{"old_size":1,"new_size":3,"hashes":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}`))
	root := make([]byte, 32)
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParseConsistencyProof(b); err == nil {
			_ = p.Verify(root, root)
		}
	})
}

func FuzzVerifyCheckpoint(f *testing.F) {
	k := testKey(f)
	note, _ := signCheckpoint(testOrigin, 3, make([]byte, 32), k)
	f.Add(note)
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := VerifyCheckpoint(b, testOrigin, k.Public())
		if err == nil && cp.Size != 3 {
			t.Fatalf("forged checkpoint accepted: %+v", cp)
		}
	})
}

func FuzzDecodeEntry(f *testing.F) {
	b, _ := json.Marshal(testEntry(1))
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := DecodeEntry(b); err == nil {
			if _, err := e.Encode(); err != nil && len(b) < MaxEntrySize/2 {
				t.Fatalf("decoded entry does not re-encode: %v", err)
			}
		}
	})
}

// TestCheckpointsCompacted is reliability finding 16: the checkpoints file
// used to grow by one ~4.6 KB signed note per commit, forever. It now holds
// at most compactAfter records, the latest always among them, and every
// reopen and audit still checks the latest against the head and the tree.
func TestCheckpointsCompacted(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, true)
	ctx := context.Background()
	const commits = 3*32 + 5
	for i := range commits {
		if _, err := l.Append(ctx, testEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	cp := l.Checkpoint()
	b := readFile(t, filepath.Join(dir, checkpointsFile))
	s, err := parseCheckpoints(b)
	if err != nil || s.Damage != nil {
		t.Fatalf("parse: %v %v", err, s.Damage)
	}
	if len(s.Records) > compactAfter || len(b) > compactAfter*(cpRecordHeader+len(cp.Note))+cpFileHeader {
		t.Fatalf("%d records, %d bytes after %d commits: not compacted", len(s.Records), len(b), commits)
	}
	if last := s.Records[len(s.Records)-1]; !bytes.Equal(last.Note, cp.Note) || last.Seq != commits+1 {
		t.Fatalf("latest record #%d is not the latest checkpoint", last.Seq)
	}
	if _, err := l.Audit(ctx); err != nil {
		t.Fatal(err)
	}
	must(t, l.Close())
	l2 := openLog(t, dir, true)
	if l2.Size() != commits || !bytes.Equal(l2.Checkpoint().Root, cp.Root) {
		t.Fatal("reopen after compaction differs")
	}
	// Consistency proofs from any earlier size still come from the tree.
	old, _ := l2.Root(7)
	p, err := l2.Consistency(7, 0)
	if err != nil || p.Verify(old, cp.Root) != nil {
		t.Fatalf("consistency 7 -> %d after compaction: %v", commits, err)
	}
}

// TestLegacyCheckpointsMigrated: a log written before format 2 (one framed
// note per commit, no head) opens, is converted by its first writer, and
// keeps every entry.
func TestLegacyCheckpointsMigrated(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, true)
	for i := range 5 {
		if _, err := l.Append(context.Background(), testEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	cp := l.Checkpoint()
	must(t, l.Close())
	// Rewrite the checkpoints file in format 1: the latest note preceded by
	// an older one, no head file.
	old, _ := signCheckpoint(testOrigin, 0, hasher.EmptyRoot(), testKey(t))
	must(t, os.WriteFile(filepath.Join(dir, checkpointsFile), append(frame(old), frame(cp.Note)...), 0o600))
	os.Remove(filepath.Join(dir, headFile))
	ro := openLog(t, dir, false)
	if ro.Size() != 5 {
		t.Fatalf("read-only open of a format-1 log: size %d", ro.Size())
	}
	must(t, ro.Close())
	l2 := openLog(t, dir, true)
	if l2.Size() != 5 || !bytes.Equal(l2.Checkpoint().Root, cp.Root) {
		t.Fatal("migrated log differs")
	}
	if _, err := l2.Append(context.Background(), testEntry(9)); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Audit(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := readFile(t, filepath.Join(dir, checkpointsFile))
	if !bytes.HasPrefix(b, []byte(cpMagic)) {
		t.Fatal("not converted to format 2")
	}
	// A damaged format-1 tail is refused (it may have been acknowledged).
	must(t, l2.Close())
	dir2 := t.TempDir()
	l3 := openLog(t, dir2, true)
	if _, err := l3.Append(context.Background(), testEntry(1)); err != nil {
		t.Fatal(err)
	}
	cp3 := l3.Checkpoint()
	must(t, l3.Close())
	f := frame(cp3.Note)
	f[len(f)-3] ^= 1
	must(t, os.WriteFile(filepath.Join(dir2, checkpointsFile), append(frame(old), f...), 0o600))
	os.Remove(filepath.Join(dir2, headFile))
	k := testKey(t)
	if _, err := Open(Config{Dir: dir2, Origin: testOrigin, LogKey: k.Public(), Signer: k}); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "format 1") {
		t.Fatalf("damaged format-1 tail: %v", err)
	}
}

// TestAuditOfALiveLog: ledger verify reads a log a writer keeps appending
// to; commits and compactions after the reader opened it are no damage.
func TestAuditOfALiveLog(t *testing.T) {
	dir := t.TempDir()
	w := openLog(t, dir, true)
	ctx := context.Background()
	for i := range 5 {
		if _, err := w.Append(ctx, testEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	r := openLog(t, dir, false)
	for i := range 2*compactAfter + 3 {
		if _, err := w.Append(ctx, testEntry(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := r.Audit(ctx)
	if err != nil {
		t.Fatalf("audit of a live log: %v", err)
	}
	if rep.Entries != w.Size() || !bytes.Equal(rep.Root, w.Checkpoint().Root) {
		t.Fatalf("audit saw %d entries, the log has %d", rep.Entries, w.Size())
	}
}
