package p11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ThalesGroup/crypto11"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/miekg/pkcs11"

	"github.com/soulfra/calnet/identity"
)

const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// softHSMToken makes a SoftHSM2 token in a temp dir (own SOFTHSM2_CONF)
// and logs in with crypto11; it skips, saying why, without SoftHSM2.
func softHSMToken(b *testing.B) *crypto11.Context {
	b.Helper()
	softHSMSetup(b)
	c, err := crypto11.Configure(&crypto11.Config{Path: softHSMModule, TokenLabel: "bench", Pin: "1234", GCMIVLength: 12})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// softHSMSetup makes the token only.
func softHSMSetup(b *testing.B) {
	b.Helper()
	if _, err := os.Stat(softHSMModule); err != nil {
		b.Skipf("SoftHSM2 is not installed (%v): apt-get install softhsm2", err)
	}
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		b.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
}

// PKCS#11 3.0 mechanisms miekg/pkcs11 does not name.
const (
	ckmECEdwardsKeyPairGen = 0x1055
	ckmEdDSA               = 0x1057
)

var msg = []byte("a ledger checkpoint of about this length, signed once per commit")

// BenchmarkSign compares signing inside SoftHSM2 with signing in
// software, per key type (BENCHMARKS.md, "HSM").
func BenchmarkSign(b *testing.B) {
	b.Run("softhsm/ecdsa-p256", func(b *testing.B) {
		c := softHSMToken(b)
		k, err := c.GenerateECDSAKeyPairWithLabel([]byte("id1"), []byte("ec"), elliptic.P256())
		if err != nil {
			b.Fatal(err)
		}
		d := sha256.Sum256(msg)
		b.ResetTimer()
		for b.Loop() {
			if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("softhsm/ed25519-raw-pkcs11", func(b *testing.B) {
		softHSMSetup(b)
		p := pkcs11.New(softHSMModule)
		if err := p.Initialize(); err != nil {
			b.Fatal(err)
		}
		defer p.Destroy()
		defer func() { _ = p.Finalize() }()
		slots, err := p.GetSlotList(true)
		if err != nil || len(slots) == 0 {
			b.Fatalf("slots %v %v", slots, err)
		}
		var slot uint
		for _, s := range slots {
			if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == "bench" {
				slot = s
			}
		}
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = p.CloseSession(sh) }()
		if err := p.Login(sh, pkcs11.CKU_USER, "1234"); err != nil {
			b.Fatal(err)
		}
		// CKA_EC_PARAMS: the printable string "edwards25519" (PKCS#11 3.0).
		params := []byte{0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'}
		_, priv, err := p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)},
			[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params)},
			[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true)})
		if err != nil {
			b.Skipf("this SoftHSM2 cannot make Ed25519 keys: %v", err)
		}
		b.ResetTimer()
		for b.Loop() {
			if err := p.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, priv); err != nil {
				b.Fatal(err)
			}
			if _, err := p.Sign(sh, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("software/ecdsa-p256", func(b *testing.B) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		d := sha256.Sum256(msg)
		for b.Loop() {
			if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("software/ed25519", func(b *testing.B) {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		for b.Loop() {
			ed25519.Sign(k, msg)
		}
	})
	b.Run("software/ml-dsa-65", func(b *testing.B) {
		_, k, _ := mldsa65.GenerateKey(rand.Reader)
		for b.Loop() {
			if _, err := k.Sign(rand.Reader, msg, crypto.Hash(0)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("software/hybrid-ed25519+ml-dsa-65", func(b *testing.B) {
		k, _ := identity.Generate(nil)
		for b.Loop() {
			if _, err := k.Sign(identity.PurposeEntry, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAESGCM is wrapping 32 bytes (a root sealing key) with an AES
// key inside SoftHSM2, against the same in software.
func BenchmarkAESGCM(b *testing.B) {
	b.Run("softhsm", func(b *testing.B) {
		c := softHSMToken(b)
		k, err := c.GenerateSecretKeyWithLabel([]byte("id2"), []byte("aes"), 256, crypto11.CipherAES)
		if err != nil {
			b.Fatal(err)
		}
		aead, err := k.NewGCM()
		if err != nil {
			b.Fatal(err)
		}
		nonce, root := make([]byte, 12), make([]byte, 32)
		b.ResetTimer()
		for b.Loop() {
			ct := aead.Seal(nil, nonce, root, nil)
			if _, err := aead.Open(nil, nonce, ct, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
