package ledger

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func snapshot(t *testing.T, dir string) map[string][]byte {
	out := map[string][]byte{}
	for _, f := range ledgerFiles {
		out[f], _ = os.ReadFile(filepath.Join(dir, f))
	}
	return out
}

func TestRepair(t *testing.T) {
	flip := func(name string, off func(b []byte) int) func(*testing.T, string) {
		return func(t *testing.T, d string) {
			b := readFile(t, filepath.Join(d, name))
			b[off(b)] ^= 0x10
			must(t, os.WriteFile(filepath.Join(d, name), b, 0o600))
		}
	}
	record := func(i int) func(b []byte) int {
		return func(b []byte) int {
			s, _ := parseCheckpoints(b)
			return int(s.Records[i].Off) + cpRecordHeader + 50
		}
	}
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		action  string // a planned action must contain this
		lost    string // or repair must refuse, saying this
		resigns bool
	}{
		{"intact", func(*testing.T, string) {}, "", "", false},
		{"latest checkpoint record damaged", flip(checkpointsFile, func(b []byte) int { return len(b) - 20 }), "sign a new checkpoint #6 for the acknowledged size 12", "", true},
		{"checkpoints truncated at a record", func(t *testing.T, d string) {
			b := readFile(t, filepath.Join(d, checkpointsFile))
			s, _ := parseCheckpoints(b)
			must(t, os.Truncate(filepath.Join(d, checkpointsFile), s.Records[2].Off))
		}, "sign a new checkpoint", "", true},
		{"earlier checkpoint record damaged", flip(checkpointsFile, record(1)), "rewrite checkpoints with checkpoint #6 (size 12): the intact signed copy", "", false},
		{"index leaf hash damaged", flip(indexFile, func([]byte) int { return 5*indexRecord + 9 }), "rebuild index from the 12 acknowledged entries", "", false},
		{"index truncated", func(t *testing.T, d string) { must(t, os.Truncate(filepath.Join(d, indexFile), 3*indexRecord+7)) }, "rebuild index", "", false},
		{"head unreadable", func(t *testing.T, d string) { must(t, os.WriteFile(filepath.Join(d, headFile), []byte("x"), 0o600)) }, "write head naming checkpoint #5 (size 12)", "", false},
		{"unacknowledged tail", func(t *testing.T, d string) {
			appendFile(t, d, entriesFile, frame(mustEncode(testEntry(77))))
			appendFile(t, d, indexFile, make([]byte, indexRecord))
		}, "drop 89 bytes of entries after offset 1062 (1 entries no acknowledged checkpoint covers", "", false},
		{"acknowledged entry damaged", flip(entriesFile, func(b []byte) int { return 300 }), "", "entries: 12 entries were acknowledged", false},
		{"entries truncated", func(t *testing.T, d string) { must(t, os.Truncate(filepath.Join(d, entriesFile), 500)) }, "", "restore", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			size, root := committedLog(t, dir, nil)
			tt.damage(t, dir)
			k := testKey(t)
			cfg := Config{Dir: dir, Origin: testOrigin, LogKey: k.Public()}
			before := snapshot(t, dir)
			dry, err := Repair(cfg, true)
			if tt.lost != "" {
				if !errors.Is(err, ErrWouldLose) || !strings.Contains(err.Error(), tt.lost) {
					t.Fatalf("repair error = %v, want %q", err, tt.lost)
				}
				if _, err := Repair(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k}, false); !errors.Is(err, ErrWouldLose) {
					t.Fatalf("repair went ahead: %v", err)
				}
				for f, b := range snapshot(t, dir) {
					if !bytes.Equal(b, before[f]) {
						t.Fatalf("a refused repair changed %s", f)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("dry run: %v", err)
			}
			for f, b := range snapshot(t, dir) {
				if !bytes.Equal(b, before[f]) {
					t.Fatalf("dry run changed %s", f)
				}
			}
			if tt.action == "" {
				if len(dry.Actions) != 0 {
					t.Fatalf("actions on an intact log: %v", dry.Actions)
				}
				return
			}
			if !strings.Contains(strings.Join(dry.Actions, "\n"), tt.action) {
				t.Fatalf("actions %q, want %q (findings %q)", dry.Actions, tt.action, dry.Findings)
			}
			if tt.resigns {
				if _, err := Repair(cfg, false); err == nil || !strings.Contains(err.Error(), "needs the log key") {
					t.Fatalf("re-signing without the key: %v", err)
				}
			}
			cfg.Signer = k
			p, err := Repair(cfg, false)
			if err != nil || !p.Applied {
				t.Fatalf("repair: %v %+v", err, p)
			}
			if p.Size != size || !bytes.Equal(p.Root, root) {
				t.Fatalf("repair left size %d, want %d", p.Size, size)
			}
			l := openLog(t, dir, true)
			if l.Size() != size || !bytes.Equal(l.Checkpoint().Root, root) {
				t.Fatalf("after repair: size %d", l.Size())
			}
			if _, err := l.Append(context.Background(), testEntry(100)); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Audit(context.Background()); err != nil {
				t.Fatalf("audit after repair: %v", err)
			}
			must(t, l.Close())
			again, err := Repair(cfg, true)
			if err != nil || len(again.Actions) != 0 {
				t.Fatalf("a repaired log still needs repair: %v %v %v", err, again.Actions, again.Findings)
			}
		})
	}
}

func TestRepairLegacyTornTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, true)
	if _, err := l.Append(context.Background(), testEntry(1), testEntry(2)); err != nil {
		t.Fatal(err)
	}
	cp := l.Checkpoint()
	must(t, l.Close())
	f := frame(cp.Note)
	must(t, os.WriteFile(filepath.Join(dir, checkpointsFile), append(f, f[:30]...), 0o600))
	os.Remove(filepath.Join(dir, headFile))
	k := testKey(t)
	if _, err := Open(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("open: %v", err)
	}
	p, err := Repair(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k}, false)
	if err != nil || p.Size != 2 {
		t.Fatalf("repair: %v %+v", err, p)
	}
	l2 := openLog(t, dir, true)
	if l2.Size() != 2 || !bytes.Equal(l2.Checkpoint().Root, cp.Root) {
		t.Fatal("repaired legacy log differs")
	}
}

func TestRepairRefusesAnOpenLog(t *testing.T) {
	dir := t.TempDir()
	openLog(t, dir, true)
	k := testKey(t)
	if _, err := Repair(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public()}, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("repair of an open log: %v", err)
	}
}
