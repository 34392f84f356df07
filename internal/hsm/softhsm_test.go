package hsm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/soulfra/calnet/internal/seal"
)

// softHSMModule is Debian's softhsm2 module (scripts/test.sh installs the
// package when missing).
const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// softHSM is a SoftHSM2 configuration of its own in a temp dir, and the
// helper built for it.
type softHSM struct {
	t      testing.TB
	dir    string
	helper string
}

// newSoftHSM sets SOFTHSM2_CONF to a fresh token directory, builds
// calnet-pkcs11 and makes a token labelled label with PIN pin. It skips
// the test, saying why, when SoftHSM2 or cgo is not available.
func newSoftHSM(t testing.TB) *softHSM {
	t.Helper()
	if _, err := os.Stat(softHSMModule); err != nil {
		t.Skipf("SoftHSM2 is not installed (%v): apt-get install softhsm2 (scripts/test.sh does)", err)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Skip("softhsm2-util is not installed: apt-get install softhsm2")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no C compiler: calnet-pkcs11 needs cgo")
	}
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "tokens"), 0o700))
	conf := filepath.Join(dir, "softhsm2.conf")
	must(t, os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600))
	t.Setenv("SOFTHSM2_CONF", conf)
	helper := filepath.Join(dir, "calnet-pkcs11")
	build := exec.Command("go", "build", "-o", helper, "github.com/soulfra/calnet/cmd/calnet-pkcs11")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build calnet-pkcs11: %v\n%s", err, out)
	}
	return &softHSM{t: t, dir: dir, helper: helper}
}

func (h *softHSM) initToken(label, pin string) {
	h.t.Helper()
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "so-"+pin).CombinedOutput()
	if err != nil {
		h.t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
}

func (h *softHSM) deleteToken(label string) {
	h.t.Helper()
	out, err := exec.Command("softhsm2-util", "--delete-token", "--token", label).CombinedOutput()
	if err != nil {
		h.t.Fatalf("softhsm2-util --delete-token: %v\n%s", err, out)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (h *softHSM) protector(token, pin string) *Protector {
	return &Protector{Helper: h.helper, Ref: seal.PKCS11Ref{Module: softHSMModule, Token: token, Key: "calnet-seal"}, PIN: []byte(pin)}
}

// TestSealWithSoftHSM: a root sealing key wrapped by an AES key made on a
// real SoftHSM2 token unseals with the token; a wrong PIN, a missing
// token, a missing module and a removed key are each refused by name,
// and nothing stored is lost: after each, the right token opens it again.
func TestSealWithSoftHSM(t *testing.T) {
	h := newSoftHSM(t)
	ctx := context.Background()
	h.initToken("calnet", "1234")
	dir := t.TempDir()
	root, err := seal.Create(ctx, dir, "net-a", h.protector("calnet", "1234"))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := root.Seal("x", []byte("kept"))
	must(t, err)
	cfg, err := seal.ReadConfig(dir)
	must(t, err)
	if cfg.Mode != seal.ModePKCS11 || cfg.PKCS11.Token != "calnet" || bytes.Contains(cfg.WrappedRoot, []byte("kept")) {
		t.Fatalf("seal.json: %+v", cfg)
	}
	if _, err := os.Stat(filepath.Join(dir, seal.RootFile)); !os.IsNotExist(err) {
		t.Fatalf("an HSM seal wrote seal.key: %v", err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, seal.ConfigFile))
	opens := func() {
		t.Helper()
		r, err := seal.Unseal(ctx, dir, "net-a", h.protector("calnet", "1234"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.Open("x", blob); err != nil || string(got) != "kept" {
			t.Fatalf("%q %v", got, err)
		}
	}
	opens()

	for _, tc := range []struct {
		name string
		p    *Protector
		want error
	}{
		{"wrong PIN", h.protector("calnet", "9999"), ErrWrongPIN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := seal.Unseal(ctx, dir, "net-a", tc.p); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			opens()
		})
	}
	// The module named in seal.json is what unseals; a missing module is
	// named (here: a copy of seal.json naming another path).
	t.Run("missing module", func(t *testing.T) {
		if _, err := Open(ctx, h.helper, "/nonexistent/libpkcs11.so", "calnet", []byte("1234")); !errors.Is(err, ErrNoModule) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no helper", func(t *testing.T) {
		p := h.protector("calnet", "1234")
		p.Helper = filepath.Join(t.TempDir(), "calnet-pkcs11")
		if _, err := seal.Unseal(ctx, dir, "net-a", p); !errors.Is(err, ErrNoHelper) {
			t.Fatalf("got %v", err)
		}
	})
	// The token removed (seal.json names it), then made again under the
	// same label and PIN without the key (SoftHSM2's tool cannot delete one
	// object). A backup of the token brings it back.
	t.Run("missing token, removed key", func(t *testing.T) {
		backup := filepath.Join(t.TempDir(), "tokens")
		must(t, exec.Command("cp", "-a", filepath.Join(h.dir, "tokens"), backup).Run())
		h.deleteToken("calnet")
		if _, err := seal.Unseal(ctx, dir, "net-a", h.protector("calnet", "1234")); !errors.Is(err, ErrNoToken) {
			t.Fatalf("token gone: got %v, want ErrNoToken", err)
		}
		h.initToken("calnet", "1234")
		if _, err := seal.Unseal(ctx, dir, "net-a", h.protector("calnet", "1234")); !errors.Is(err, ErrNoKey) {
			t.Fatalf("got %v, want ErrNoKey", err)
		}
		// Another key under the same label does not open it.
		if _, err := seal.Create(ctx, t.TempDir(), "net-b", h.protector("calnet", "1234")); err != nil {
			t.Fatal(err)
		}
		if _, err := seal.Unseal(ctx, dir, "net-a", h.protector("calnet", "1234")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v, want ErrDecrypt", err)
		}
		must(t, os.RemoveAll(filepath.Join(h.dir, "tokens")))
		must(t, exec.Command("cp", "-a", backup, filepath.Join(h.dir, "tokens")).Run())
		opens()
	})
	after, _ := os.ReadFile(filepath.Join(dir, seal.ConfigFile))
	if !bytes.Equal(before, after) {
		t.Fatal("a refused unseal changed seal.json")
	}
}

// BenchmarkUnseal is the time `calnet unseal` takes to recover the root,
// per protection (BENCHMARKS.md): pkcs11 includes starting the helper,
// loading the module and logging in to the token.
func BenchmarkUnseal(b *testing.B) {
	ctx := context.Background()
	h := newSoftHSM(b)
	h.initToken("calnet", "1234")
	for _, tc := range []struct {
		name string
		p    seal.Protector
	}{
		{"file", seal.File{}},
		{"passphrase-argon2id-t3-64MiB", &seal.Passphrase{Secret: []byte("correct horse battery staple")}},
		{"pkcs11-softhsm2", h.protector("calnet", "1234")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			if _, err := seal.Create(ctx, dir, "net-a", tc.p); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				r, err := seal.Unseal(ctx, dir, "net-a", tc.p)
				if err != nil {
					b.Fatal(err)
				}
				r.Destroy()
			}
		})
	}
}
