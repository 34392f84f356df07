package trust

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"testing"
	"time"
)

var benchDepths = []int{1, 5, 10}

func benchChain(b *testing.B, depth int) (*Verifier, *Chain) {
	f := newFixture(b, fmt.Sprintf("bench-%d", depth))
	c := roundTrip(b, f.growTo(b, depth))
	return NewVerifier(f.root.Public()), c
}

// BenchmarkVerifyChainCold verifies with an empty cache: every ML-DSA key
// is parsed and every signature checked (the chain is already decoded).
func BenchmarkVerifyChainCold(b *testing.B) {
	for _, d := range benchDepths {
		b.Run(fmt.Sprintf("depth=%d", d), func(b *testing.B) {
			v, c := benchChain(b, d)
			at := t0.Add(time.Hour)
			for b.Loop() {
				fresh := NewVerifier(v.Root())
				if _, err := fresh.Verify(c, at, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyChainCached re-verifies a known chain: signatures come from
// the cache; time windows and revocations are still checked.
func BenchmarkVerifyChainCached(b *testing.B) {
	for _, d := range benchDepths {
		b.Run(fmt.Sprintf("depth=%d", d), func(b *testing.B) {
			v, c := benchChain(b, d)
			at := t0.Add(time.Hour)
			rs := NewRevocationSet(v)
			if _, err := v.Verify(c, at, rs); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := v.Verify(c, at, rs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseChain is the cost of decoding soul-chain.sig.
func BenchmarkParseChain(b *testing.B) {
	for _, d := range benchDepths {
		b.Run(fmt.Sprintf("depth=%d", d), func(b *testing.B) {
			_, c := benchChain(b, d)
			raw, _ := c.MarshalJSON()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := ParseChain(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkX509ECDSAChain is the baseline: crypto/x509 verification of an
// ECDSA P-256 chain with the same number of certificates below the root.
func BenchmarkX509ECDSAChain(b *testing.B) {
	for _, d := range benchDepths {
		b.Run(fmt.Sprintf("depth=%d", d), func(b *testing.B) {
			leaf, opts := x509Chain(b, d)
			for b.Loop() {
				if _, err := leaf.Verify(opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEd25519Verify is the baseline of one raw Ed25519 verification.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 2200) // about a blessing's canonical encoding
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad")
		}
	}
}

func x509Chain(b *testing.B, depth int) (*x509.Certificate, x509.VerifyOptions) {
	now := time.Now()
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	var parent *x509.Certificate
	var parentKey *ecdsa.PrivateKey
	var leaf *x509.Certificate
	for i := 0; i <= depth; i++ {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		isCA := i < depth
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: fmt.Sprintf("cal-%d", i)},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: isCA, BasicConstraintsValid: true,
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}
		signer, signerKey := tmpl, key
		if parent != nil {
			signer, signerKey = parent, parentKey
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
		if err != nil {
			b.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		switch {
		case i == 0:
			roots.AddCert(cert)
		case isCA:
			inter.AddCert(cert)
		default:
			leaf = cert
		}
		parent, parentKey = cert, key
	}
	return leaf, x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}
