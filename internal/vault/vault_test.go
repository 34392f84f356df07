package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/soulfra/calnet/identity"
)

func newKey(t testing.TB, b byte) *identity.PrivateKey {
	k, err := identity.FromSeed(bytes.Repeat([]byte{b}, 64))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newLog(t testing.TB, dir string, kek *age.HybridIdentity, k *identity.PrivateKey) *Log {
	t.Helper()
	l, err := Open(dir, kek, k, func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a test that closed it already is done with it
		if err := l.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			t.Error(err)
		}
	})
	return l
}

func filled(t *testing.T) (string, *age.HybridIdentity, *identity.PrivateKey) {
	dir := t.TempDir()
	kek, _ := age.GenerateHybridIdentity()
	k := newKey(t, 1)
	l := newLog(t, dir, kek, k)
	for i, kind := range []string{KindObservation, KindDecision, KindSpawnOutcome, KindNote} {
		if _, err := l.Append(kind, "entry "+string(rune('a'+i)), json.RawMessage(`{"i":`+string(rune('0'+i))+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	must(t, l.Close())
	return dir, kek, k
}

func TestAppendReadReopen(t *testing.T) {
	dir, kek, k := filled(t)
	l := newLog(t, dir, kek, k)
	es, err := l.Read(0)
	if err != nil || len(es) != 4 || es[2].Kind != KindSpawnOutcome || es[3].Prev != es[2].Hash() {
		t.Fatalf("read %v %v", es, err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, logFile))
	if bytes.Contains(raw, []byte("entry a")) {
		t.Fatal("reflections are stored in clear")
	}
	if _, err := l.Append("", "x", nil); err == nil {
		t.Fatal("empty kind accepted")
	}
	if _, err := l.Append(KindNote, strings.Repeat("x", MaxText+1), nil); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("oversized text: %v", err)
	}
	// Another Cal's key-encryption identity cannot read it.
	other, _ := age.GenerateHybridIdentity()
	if _, err := Open(dir, other, k, nil); !errors.Is(err, ErrTampered) {
		t.Fatalf("open with another identity: %v", err)
	}
}

func TestTamperingDetected(t *testing.T) {
	frames := func(b []byte) [][2]int { // [start, end) of each record
		var out [][2]int
		for off := 0; off+recordFrame <= len(b); {
			n := int(b[off])<<24 | int(b[off+1])<<16 | int(b[off+2])<<8 | int(b[off+3])
			out = append(out, [2]int{off, off + recordFrame + n})
			off += recordFrame + n
		}
		return out
	}
	tests := []struct {
		name   string
		damage func(dir string, log []byte) []byte
		want   string
	}{
		{"flipped byte", func(_ string, b []byte) []byte { b[len(b)/2] ^= 1; return b }, "entry"},
		{"flipped byte with fixed checksum", func(_ string, b []byte) []byte {
			f := frames(b)[1]
			b[f[0]+recordFrame+40] ^= 1
			ct := b[f[0]+recordFrame : f[1]]
			c := crc32Of(ct)
			b[f[0]+4], b[f[0]+5], b[f[0]+6], b[f[0]+7] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
			return b
		}, "decrypt and authenticate"},
		{"record removed", func(_ string, b []byte) []byte {
			f := frames(b)[1]
			return append(b[:f[0]:f[0]], b[f[1]:]...)
		}, "hash chain broken"},
		{"records swapped", func(_ string, b []byte) []byte {
			fs := frames(b)
			r1, r2 := append([]byte(nil), b[fs[1][0]:fs[1][1]]...), append([]byte(nil), b[fs[2][0]:fs[2][1]]...)
			out := append([]byte(nil), b[:fs[1][0]]...)
			out = append(out, r2...)
			out = append(out, r1...)
			return append(out, b[fs[2][1]:]...)
		}, "hash chain broken"},
		{"last two records dropped", func(_ string, b []byte) []byte { return b[:frames(b)[2][0]] }, "signed head pins 4 entries"},
		{"truncated mid-record", func(_ string, b []byte) []byte { return b[:len(b)-10] }, "truncated"},
		{"head forged", func(dir string, b []byte) []byte {
			h, _ := os.ReadFile(filepath.Join(dir, headFile))
			must(t, os.WriteFile(filepath.Join(dir, headFile), bytes.Replace(h, []byte(`"count":4`), []byte(`"count":2`), 1), 0o600))
			return b
		}, "signature does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, kek, k := filled(t)
			p := filepath.Join(dir, logFile)
			b, _ := os.ReadFile(p)
			must(t, os.WriteFile(p, tt.damage(dir, b), 0o600))
			_, err := Open(dir, kek, k, nil)
			var te *TamperError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want a TamperError with %q", err, tt.want)
			}
		})
	}
}

func TestCrashBeforeHeadIsRecovered(t *testing.T) {
	dir, kek, k := filled(t)
	head, _ := os.ReadFile(filepath.Join(dir, headFile))
	l := newLog(t, dir, kek, k)
	if _, err := l.Append(KindNote, "fifth", nil); err != nil {
		t.Fatal(err)
	}
	must(t, l.Close())
	must(t, os.WriteFile(filepath.Join(dir, headFile), head, 0o600)) // the head of before the append
	l2 := newLog(t, dir, kek, k)
	if l2.Len() != 5 {
		t.Fatalf("len %d", l2.Len())
	}
	if _, err := l2.Read(0); err != nil {
		t.Fatal(err)
	}
}

func TestShare(t *testing.T) {
	dir, kek, k := filled(t)
	l := newLog(t, dir, kek, k)
	peer := newKey(t, 2)
	peerKEK, _ := age.GenerateHybridIdentity()
	ct, err := l.Share([]uint64{1, 3}, peer.Public().ID(), peerKEK.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	keyOf := func(id identity.ID) (*identity.PublicKey, error) {
		if id == k.Public().ID() {
			return k.Public(), nil
		}
		return nil, errors.New("unknown")
	}
	b, err := OpenShared(ct, peerKEK, peer.Public().ID(), keyOf)
	if err != nil || b.From != k.Public().ID() || len(b.Entries) != 2 || b.Entries[1].Text != "entry d" {
		t.Fatalf("shared %+v %v", b, err)
	}
	if _, err := OpenShared(ct, kek, peer.Public().ID(), keyOf); err == nil {
		t.Fatal("the sharer's own identity opened a bundle for the peer")
	}
	if _, err := OpenShared(ct, peerKEK, newKey(t, 3).Public().ID(), keyOf); err == nil {
		t.Fatal("a bundle opened for the wrong receiver")
	}
	impostor := func(identity.ID) (*identity.PublicKey, error) { return newKey(t, 4).Public(), nil }
	if _, err := OpenShared(ct, peerKEK, peer.Public().ID(), impostor); err == nil || !strings.Contains(err.Error(), "not signed by") {
		t.Fatalf("wrong sharer key: %v", err)
	}
	if _, err := l.Share([]uint64{9}, peer.Public().ID(), peerKEK.Recipient()); err == nil {
		t.Fatal("shared a missing entry")
	}
}

func FuzzReadLog(f *testing.F) {
	kek, _ := age.GenerateHybridIdentity()
	k := newKey(f, 5)
	f.Add([]byte{0, 0, 0, 4, 1, 2, 3, 4, 'a', 'b', 'c', 'd'})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, logFile), data, 0o600))
		if l, err := Open(dir, kek, k, nil); err == nil {
			must(t, l.Close())
		}
	})
}

func FuzzOpenShared(f *testing.F) {
	kek, _ := age.GenerateHybridIdentity()
	f.Add([]byte("age-encryption.org/v1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever the bytes, OpenShared must not panic; nothing here can
		// be a bundle (no sender key is known), so it must not accept one.
		if _, err := OpenShared(data, kek, identity.ID{}, func(identity.ID) (*identity.PublicKey, error) { return nil, errors.New("no") }); err == nil {
			t.Fatalf("opened a bundle from %x with no sender key", data)
		}
	})
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
