package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
)

func witnessSigner(t testing.TB, name string) *CosignatureSigner {
	t.Helper()
	seed := sha256.Sum256([]byte("witness " + name))
	s, err := NewCosignatureSigner(name, ed25519.NewKeyFromSeed(seed[:]), func() time.Time { return time.Unix(1700000000, 0) })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cosign adds the signers' cosignatures to a signed note.
func cosign(t testing.TB, raw []byte, signers ...note.Signer) []byte {
	t.Helper()
	n, err := note.Open(raw, note.VerifierList())
	var unv *note.UnverifiedNoteError
	if errors.As(err, &unv) {
		n = unv.Note
	} else if err != nil {
		t.Fatal(err)
	}
	out, err := note.Sign(n, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCosignatureInterop checks our cosignatures against torchwood's
// implementation of C2SP tlog-cosignature, both ways.
func TestCosignatureInterop(t *testing.T) {
	l := openLog(t, t.TempDir(), true)
	cp := l.Checkpoint()
	seed := sha256.Sum256([]byte("torchwood witness"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	tw, err := torchwood.NewCosignatureSigner("tw.example/w", priv)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := NewCosignatureSigner("tw.example/w", priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ours.Verifier().String() != tw.Verifier().String() {
		t.Fatalf("verifier keys differ:\n%s\n%s", ours.Verifier(), tw.Verifier())
	}
	wk, err := ParseWitnessKey(tw.Verifier().String())
	if err != nil {
		t.Fatal(err)
	}
	// torchwood signs, we verify.
	c, err := VerifyCosigned(cosign(t, cp.Note, tw), testOrigin, testKey(t).Public(), WitnessPolicy{Witnesses: []*WitnessKey{wk}, Required: 1})
	if err != nil || len(c.Witnesses) != 1 {
		t.Fatalf("torchwood's cosignature: %v", err)
	}
	// We sign, torchwood verifies.
	if _, err := note.Open(cosign(t, cp.Note, ours), note.VerifierList(tw.Verifier())); err != nil {
		t.Fatalf("torchwood refuses our cosignature: %v", err)
	}
}

func TestVerifyCosignedRefusals(t *testing.T) {
	l := openLog(t, t.TempDir(), true)
	if _, err := l.Append(context.Background(), testEntry(1)); err != nil {
		t.Fatal(err)
	}
	cp := l.Checkpoint()
	logKey := testKey(t).Public()
	a, b, c := witnessSigner(t, "a.example/w"), witnessSigner(t, "b.example/w"), witnessSigner(t, "c.example/w")
	set := []*WitnessKey{a.Verifier(), b.Verifier()}
	two := WitnessPolicy{Witnesses: set, Required: 2}

	good := cosign(t, cp.Note, a, b)
	tampered := tamperSig(t, good, "b.example/w")
	otherLog := witnessSigner(t, testOrigin) // signs under the log's name with another key
	wrongRoot := bytes.Replace(good, []byte(testOrigin+"\n1\n"), []byte(testOrigin+"\n9\n"), 1)
	impostor, err := note.Sign(&note.Note{Text: string(cp.Note[:bytes.Index(cp.Note, []byte("\n\n"))+1])}, otherLog, a, b)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		raw    []byte
		policy WitnessPolicy
		want   error
	}{
		{"two of two", good, two, nil},
		{"none required", cp.Note, WitnessPolicy{}, nil},
		{"too few", cosign(t, cp.Note, a), two, ErrTooFewCosignatures},
		{"none", cp.Note, two, ErrTooFewCosignatures},
		{"unknown witness does not count", cosign(t, cp.Note, a, c), two, ErrTooFewCosignatures},
		{"tampered cosignature", tampered, WitnessPolicy{Witnesses: set, Required: 1}, ErrCosignature},
		{"cosignature of another checkpoint", cosignOf(t, cp, l, a), WitnessPolicy{Witnesses: set, Required: 1}, ErrCosignature},
		{"log signature changed", wrongRoot, two, ErrCheckpoint},
		{"log key impostor only", impostor, two, ErrCheckpoint},
		{"policy wants more than the set", good, WitnessPolicy{Witnesses: set, Required: 3}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyCosigned(tt.raw, testOrigin, logKey, tt.policy)
			switch {
			case tt.name == "policy wants more than the set":
				if err == nil || !strings.Contains(err.Error(), "3 cosignatures required of 2") {
					t.Fatalf("err = %v", err)
				}
			case tt.want == nil && err != nil:
				t.Fatalf("err = %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	_, err = VerifyCosigned(cosign(t, cp.Note, a, c), testOrigin, logKey, two)
	if err == nil || !strings.Contains(err.Error(), "c.example/w") || !strings.Contains(err.Error(), "1 of the 2 required (from a.example/w)") {
		t.Fatalf("the refusal does not name the witnesses: %v", err)
	}
}

// cosignOf returns cp's log signatures with w's cosignature of the next
// checkpoint grafted on.
func cosignOf(t *testing.T, cp *Checkpoint, l *Log, w note.Signer) []byte {
	if _, err := l.Append(context.Background(), testEntry(2)); err != nil {
		t.Fatal(err)
	}
	next := cosign(t, l.Checkpoint().Note, w)
	line := next[bytes.LastIndex(next[:len(next)-1], []byte("\n"))+1:]
	return append(append([]byte(nil), cp.Note...), line...)
}

// tamperSig flips a bit of the signature (not the key hash) of name's line.
func tamperSig(t *testing.T, raw []byte, name string) []byte {
	lines := strings.Split(string(raw), "\n")
	for i, ln := range lines {
		if rest, ok := strings.CutPrefix(ln, "\u2014 "+name+" "); ok {
			b, err := base64.StdEncoding.DecodeString(rest)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 1
			lines[i] = "\u2014 " + name + " " + base64.StdEncoding.EncodeToString(b)
			return []byte(strings.Join(lines, "\n"))
		}
	}
	t.Fatalf("no signature by %s", name)
	return nil
}

func TestCheckFork(t *testing.T) {
	l := tileLog(t, 10)
	cp10 := l.Checkpoint()
	other := tileLog(t, 11)
	// Same size, another history: the 11th entry differs.
	if _, err := l.Append(context.Background(), testEntry(99)); err != nil {
		t.Fatal(err)
	}
	cp11 := l.Checkpoint()
	fork := other.Checkpoint()
	if err := CheckFork(cp11, fork, nil); !errors.Is(err, ErrFork) {
		t.Fatalf("same size, different roots: %v", err)
	}
	p, _ := l.Consistency(10, 11)
	if err := CheckFork(cp10, cp11, p); err != nil {
		t.Fatal(err)
	}
	if err := CheckFork(cp10, fork, p); !errors.Is(err, ErrFork) {
		t.Fatalf("inconsistent: %v", err)
	}
	if err := CheckFork(cp10, cp11, nil); err == nil {
		t.Fatal("no proof accepted")
	}
}

func TestParseWitnessKey(t *testing.T) {
	good := witnessSigner(t, "w.example").Verifier().String()
	tests := []struct{ name, in, want string }{
		{"good", good, ""},
		{"no plus", "abc", "want <name>+<hash>+<key>"},
		{"bad hash", strings.Replace(good, "+", "+0", 1), "key hash"},
		{"wrong hash", "w.example+00000000+" + good[strings.LastIndex(good, "+")+1:], "does not match"},
		{"ed25519 note key, not a cosigner", "w.example+00000000+AT" + strings.Repeat("A", 42), "0x04"},
		{"too long", strings.Repeat("a", MaxWitnessKeyLen+1), "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseWitnessKey(tt.in)
			if tt.want == "" {
				if err != nil || w.String() != tt.in {
					t.Fatalf("%v %v", w, err)
				}
				return
			}
			if !errors.Is(err, ErrWitnessKey) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParseWitnessKey(f *testing.F) {
	f.Add("w.example+12345678+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWitnessKey(s)
		if err == nil && w.String() != s {
			t.Fatalf("%q re-encodes as %q", s, w.String())
		}
	})
}

// FuzzVerifyCosigned feeds cosigned notes to the verifier: it must never
// panic, and never accept a note without the log's and the required
// witnesses' signatures.
func FuzzVerifyCosigned(f *testing.F) {
	dir := f.TempDir()
	k := testKey(f)
	l, err := Open(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k})
	if err != nil {
		f.Fatal(err)
	}
	cp := l.Checkpoint()
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	a := witnessSigner(f, "a.example/w")
	f.Add(cosign(f, cp.Note, a))
	f.Add(cp.Note)
	policy := WitnessPolicy{Witnesses: []*WitnessKey{a.Verifier()}, Required: 1}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := VerifyCosigned(raw, testOrigin, k.Public(), policy)
		if err != nil {
			return
		}
		if len(c.Witnesses) < 1 || c.Origin != testOrigin {
			t.Fatalf("accepted %+v", c)
		}
	})
}
