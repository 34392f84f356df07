package seal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKDF keeps Argon2id cheap in tests; the default is measured in
// BENCHMARKS.md.
var testKDF = KDF{Algorithm: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1}

func pass(s string) *Passphrase { return &Passphrase{Secret: []byte(s), KDF: testKDF} }

func TestSealOpen(t *testing.T) {
	ctx := context.Background()
	for _, p := range []Protector{File{}, pass("correct horse battery")} {
		t.Run(string(p.Mode()), func(t *testing.T) {
			dir := t.TempDir()
			r, err := Create(ctx, dir, "net-a", p)
			if err != nil {
				t.Fatal(err)
			}
			blob, err := r.Seal("cal-kek:abc", []byte("secret identity"))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(blob, []byte("secret identity")) {
				t.Fatal("plaintext in the blob")
			}
			r.Destroy()
			if _, err := r.Open("cal-kek:abc", blob); !errors.Is(err, ErrDestroyed) {
				t.Fatalf("open after destroy: %v, want ErrDestroyed", err)
			}
			r2, err := Unseal(ctx, dir, "net-a", p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r2.Open("cal-kek:abc", blob)
			if err != nil || string(got) != "secret identity" {
				t.Fatalf("open: %q %v", got, err)
			}
			if _, err := Create(ctx, dir, "net-a", p); !errors.Is(err, ErrExists) {
				t.Fatalf("second create: %v, want ErrExists", err)
			}
		})
	}
}

// TestBadBlobs: every way a stored blob can be wrong is refused with its
// named reason.
func TestBadBlobs(t *testing.T) {
	ctx := context.Background()
	r, err := Create(ctx, t.TempDir(), "net-a", File{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Create(ctx, t.TempDir(), "net-b", File{})
	if err != nil {
		t.Fatal(err)
	}
	sameNetOtherRoot, err := Create(ctx, t.TempDir(), "net-a", File{})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := r.Seal("cal-kek:abc", []byte("secret"))
	ofOther, _ := other.Seal("cal-kek:abc", []byte("secret"))
	ofSameNet, _ := sameNetOtherRoot.Seal("cal-kek:abc", []byte("secret"))
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	for _, tc := range []struct {
		name    string
		purpose string
		blob    []byte
		want    error
	}{
		{"clear value", "cal-kek:abc", []byte("AGE-SECRET-KEY-PQ-1..."), ErrNotSealed},
		{"empty", "cal-kek:abc", nil, ErrNotSealed},
		{"cut in magic", "cal-kek:abc", good[:5], ErrTruncated},
		{"cut in header", "cal-kek:abc", good[:len(blobMagic)+3], ErrTruncated},
		{"cut in tag", "cal-kek:abc", good[:len(good)-20], ErrTruncated},
		{"last byte gone", "cal-kek:abc", good[:len(good)-1], ErrTampered},
		{"flipped ciphertext", "cal-kek:abc", flip(len(good) - 1), ErrTampered},
		{"flipped nonce", "cal-kek:abc", flip(len(good) - 30), ErrTampered},
		{"another network", "cal-kek:abc", ofOther, ErrOtherNetwork},
		{"another root of the same network", "cal-kek:abc", ofSameNet, ErrTampered},
		{"another cal's key", "cal-kek:xyz", good, ErrPurpose},
		{"too large", "cal-kek:abc", append(bytes.Clone(good), make([]byte, MaxBlob)...), ErrTampered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Open(tc.purpose, tc.blob)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var be *BlobError
			if !errors.As(err, &be) || !strings.Contains(err.Error(), tc.purpose) {
				t.Fatalf("error %q does not name what was opened", err)
			}
		})
	}
}

// TestUnsealRefusals: wrong passphrase, another network's seal.json,
// another mode, a changed or missing file: each named, nothing changed.
func TestUnsealRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Create(ctx, dir, "net-a", pass("correct horse battery")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if _, err := Unseal(ctx, dir, "net-a", pass("wrong horse battery")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := Unseal(ctx, dir, "net-b", pass("correct horse battery")); !errors.Is(err, ErrOtherNetwork) {
		t.Fatalf("other network: %v", err)
	}
	if _, err := Unseal(ctx, dir, "net-a", File{}); !errors.Is(err, ErrModeMismatch) || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("file protector on a passphrase seal: %v", err)
	}
	if _, err := Unseal(ctx, t.TempDir(), "net-a", File{}); !errors.Is(err, ErrNoSeal) {
		t.Fatalf("no seal: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if !bytes.Equal(before, after) {
		t.Fatal("a refused unseal changed seal.json")
	}
	// A seal.json whose network was edited to match still fails: the
	// network is bound into the wrapped root.
	edited := bytes.Replace(before, []byte(`"net-a"`), []byte(`"net-b"`), 1)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Unseal(ctx, dir, "net-b", pass("correct horse battery")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("edited network: %v", err)
	}
	if _, err := Create(ctx, t.TempDir(), "net-a", pass("short")); err == nil || !strings.Contains(err.Error(), "minimum") {
		t.Fatalf("short passphrase: %v", err)
	}
}

func TestFileModeRefusesReadableKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Create(ctx, dir, "net-a", File{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, RootFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Unseal(ctx, dir, "net-a", File{}); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("got %v", err)
	}
}

// TestRewrap moves a network from the file mode to a passphrase and back:
// blobs sealed before open after, and seal.key is gone while the
// passphrase protects the root.
func TestRewrap(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := Create(ctx, dir, "net-a", File{})
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := r.Seal("x", []byte("kept"))
	p := pass("correct horse battery")
	if err := Rewrap(ctx, dir, "net-a", File{}, p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, RootFile)); !os.IsNotExist(err) {
		t.Fatalf("seal.key still there: %v", err)
	}
	r2, err := Unseal(ctx, dir, "net-a", p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r2.Open("x", blob); err != nil || string(got) != "kept" {
		t.Fatalf("%q %v", got, err)
	}
	if err := Rewrap(ctx, dir, "net-a", p, File{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Unseal(ctx, dir, "net-a", File{}); err != nil {
		t.Fatal(err)
	}
}
