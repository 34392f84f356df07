package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func fixedKey(t testing.TB, b byte) *PrivateKey {
	t.Helper()
	k, err := FromSeed(bytes.Repeat([]byte{b}, 64))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	k := fixedKey(t, 1)
	other := fixedKey(t, 2)
	msg := []byte("hello")
	sig, err := k.Sign(PurposeBlessing, msg)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte) []byte { c := append([]byte(nil), b...); c[0] ^= 1; return c }
	tests := []struct {
		name    string
		key     *PublicKey
		purpose Purpose
		msg     []byte
		sig     *Signature
		wantErr string
	}{
		{"valid", k.Public(), PurposeBlessing, msg, sig, ""},
		{"other purpose", k.Public(), PurposeRevocation, msg, sig, "ed25519 and mldsa65 halves fail"},
		{"checkpoint purpose", k.Public(), PurposeCheckpoint, msg, sig, "ed25519 and mldsa65 halves fail"},
		{"other message", k.Public(), PurposeBlessing, []byte("hellO"), sig, "halves fail"},
		{"other key", other.Public(), PurposeBlessing, msg, sig, "halves fail"},
		{"ed25519 half tampered", k.Public(), PurposeBlessing, msg, &Signature{Ed25519: flip(sig.Ed25519), MLDSA: sig.MLDSA}, "ed25519 half fails"},
		{"mldsa half tampered", k.Public(), PurposeBlessing, msg, &Signature{Ed25519: sig.Ed25519, MLDSA: flip(sig.MLDSA)}, "mldsa65 half fails"},
		{"truncated", k.Public(), PurposeBlessing, msg, &Signature{Ed25519: sig.Ed25519[:10], MLDSA: sig.MLDSA}, "wrong signature size"},
		{"nil", k.Public(), PurposeBlessing, msg, nil, "wrong signature size"},
		{"unknown purpose", k.Public(), Purpose("x"), msg, sig, "unknown signing purpose"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.key.Verify(tt.purpose, tt.msg, tt.sig)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Verify error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckpointPurposeIsPlainEd25519(t *testing.T) {
	k := fixedKey(t, 3)
	sig, err := k.Sign(PurposeCheckpoint, []byte("note\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Public().Verify(PurposeCheckpoint, []byte("note\n"), sig); err != nil {
		t.Fatal(err)
	}
}

func TestIDs(t *testing.T) {
	k := fixedKey(t, 1)
	id := k.Public().ID()
	if id == ID(k.Public().NetworkID()) {
		t.Fatal("cal ID and network ID of one key must differ")
	}
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(%q) = %v, %v", id, got, err)
	}
	if len(id.Short()) != 9 || !strings.HasPrefix(id.String(), strings.ReplaceAll(id.Short(), "-", "")) {
		t.Fatalf("Short() = %q for %q", id.Short(), id)
	}
	for _, bad := range []string{"", "abc", strings.ToUpper(id.String()), id.String()[:31] + "1", id.String() + "a"} {
		if _, err := ParseID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q) error = %v, want ErrBadID", bad, err)
		}
	}
	// Reparsing the public key yields the same ID.
	pk, err := ParsePublicKey(k.Public().Ed25519(), k.Public().MLDSA())
	if err != nil || pk.ID() != id || !pk.Equal(k.Public()) {
		t.Fatalf("reparse: %v", err)
	}
}

func TestPublicKeyJSON(t *testing.T) {
	k := fixedKey(t, 4)
	b, err := json.Marshal(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	var pk PublicKey
	if err := json.Unmarshal(b, &pk); err != nil {
		t.Fatal(err)
	}
	if !pk.Equal(k.Public()) || pk.ID() != k.Public().ID() {
		t.Fatal("round trip changed the key")
	}
	bad := []struct{ name, in, want string }{
		{"short ed", `{"ed25519":"AAAA","mldsa65":""}`, "ed25519: 4 base64 characters, want 44"},
		{"dup", `{"ed25519":"","ed25519":"","mldsa65":""}`, "duplicated field"},
		{"extra", `{"ed25519":"","mldsa65":"","x":1}`, "unknown field"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var pk PublicKey
			err := json.Unmarshal([]byte(tt.in), &pk)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSealOpen(t *testing.T) {
	k := fixedKey(t, 5)
	hy, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pass, err := age.NewScryptRecipient("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	pass.SetWorkFactor(10)
	passID, _ := age.NewScryptIdentity("correct horse")
	wrongPass, _ := age.NewScryptIdentity("wrong")
	other, _ := age.GenerateHybridIdentity()

	tests := []struct {
		name    string
		to      age.Recipient
		with    age.Identity
		wantErr error
	}{
		{"hybrid pq recipient", hy.Recipient(), hy, nil},
		{"passphrase", pass, passID, nil},
		{"wrong hybrid", hy.Recipient(), other, ErrKeyLocked},
		{"wrong passphrase", pass, wrongPass, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id.key")
			if err := SaveKeyFile(path, k, tt.to); err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(path)
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("mode = %v, want 0600", st.Mode().Perm())
			}
			raw, _ := os.ReadFile(path)
			if bytes.Contains(raw, k.seed()[:16]) {
				t.Fatal("seed visible in the key file")
			}
			got, err := LoadKeyFile(path, tt.with)
			if tt.name == "wrong passphrase" {
				if err == nil {
					t.Fatal("wrong passphrase opened the key")
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LoadKeyFile error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && got.Public().ID() != k.Public().ID() {
				t.Fatal("opened a different key")
			}
		})
	}
}

func TestLoadKeyFileRefusesOpenMode(t *testing.T) {
	k := fixedKey(t, 6)
	hy, _ := age.GenerateHybridIdentity()
	path := filepath.Join(t.TempDir(), "id.key")
	if err := SaveKeyFile(path, k, hy.Recipient()); err != nil {
		t.Fatal(err)
	}
	must(t, os.Chmod(path, 0o644))
	if _, err := LoadKeyFile(path, hy); err == nil || !strings.Contains(err.Error(), "want 0600") {
		t.Fatalf("error = %v", err)
	}
}

func FuzzPublicKeyJSON(f *testing.F) {
	b, _ := json.Marshal(fixedKey(f, 7).Public())
	f.Add(b)
	f.Add([]byte(`{"ed25519":"","mldsa65":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var pk PublicKey
		if err := pk.UnmarshalJSON(data); err == nil {
			if _, err := json.Marshal(&pk); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzSignatureJSON(f *testing.F) {
	k := fixedKey(f, 8)
	sig, _ := k.Sign(PurposeBlessing, []byte("m"))
	b, _ := json.Marshal(sig)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Signature
		if err := s.UnmarshalJSON(data); err == nil {
			_ = k.Public().Verify(PurposeBlessing, []byte("m"), &s)
		}
	})
}

func FuzzParseID(f *testing.F) {
	f.Add(fixedKey(f, 9).Public().ID().String())
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err == nil && id.String() != s {
			t.Fatalf("non-canonical ID accepted: %q -> %q", s, id)
		}
	})
}

func FuzzOpen(f *testing.F) {
	hy, _ := age.GenerateHybridIdentity()
	sealed, _ := Seal(fixedKey(f, 10), hy.Recipient())
	f.Add(sealed)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Open(data, hy)
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
