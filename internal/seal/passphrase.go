package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// DefaultKDF is the Argon2id cost of a new passphrase seal: RFC 9106's
// second recommended option (t=3, 64 MiB) with 2 lanes.
var DefaultKDF = KDF{Algorithm: "argon2id", Time: 3, MemoryKiB: 64 << 10, Threads: 2}

func (k *KDF) check() error {
	switch {
	case k.Algorithm != "argon2id":
		return fmt.Errorf("algorithm: %.20q, want argon2id", k.Algorithm)
	case k.Time < 1 || k.Time > maxKDFTime:
		return fmt.Errorf("time: %d, want 1 to %d", k.Time, maxKDFTime)
	case k.MemoryKiB < 8 || k.MemoryKiB > maxKDFMemoryKiB:
		return fmt.Errorf("memory_kib: %d, want 8 to %d", k.MemoryKiB, maxKDFMemoryKiB)
	case k.Threads < 1 || k.Threads > maxKDFThreads:
		return fmt.Errorf("threads: %d, want 1 to %d", k.Threads, maxKDFThreads)
	case len(k.Salt) != 16:
		return fmt.Errorf("salt: %d bytes, want 16", len(k.Salt))
	}
	return nil
}

// Passphrase protects the root with a key derived from the operator's
// passphrase by Argon2id.
type Passphrase struct {
	// Secret is the passphrase. The caller wipes it when done.
	Secret []byte
	// KDF is the cost of a new seal; zero takes DefaultKDF (tests lower it).
	KDF KDF
}

// Mode implements Protector.
func (*Passphrase) Mode() Mode { return ModePassphrase }

func (p *Passphrase) derive(k *KDF) (cipher.AEAD, error) {
	if len(p.Secret) == 0 {
		return nil, errors.New("passphrase: empty")
	}
	if len(p.Secret) > MaxPassphrase {
		return nil, fmt.Errorf("passphrase: %d bytes, over the limit of %d", len(p.Secret), MaxPassphrase)
	}
	wk := argon2.IDKey(p.Secret, k.Salt, k.Time, k.MemoryKiB, k.Threads, 32)
	defer clear(wk)
	block, err := aes.NewCipher(wk)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Wrap implements Protector.
func (p *Passphrase) Wrap(_ context.Context, _ string, cfg *Config, root []byte) error {
	if len(p.Secret) < MinPassphrase {
		return fmt.Errorf("passphrase: %d bytes, the minimum is %d", len(p.Secret), MinPassphrase)
	}
	k := p.KDF
	if k.Algorithm == "" {
		k = DefaultKDF
	}
	k.Salt = make([]byte, 16)
	if _, err := rand.Read(k.Salt); err != nil {
		return err
	}
	if err := k.check(); err != nil {
		return fmt.Errorf("kdf: %w", err)
	}
	aead, err := p.derive(&k)
	if err != nil {
		return err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	cfg.KDF = &k
	cfg.WrappedRoot = aead.Seal(nonce, nonce, root, wrapAAD(cfg.Network, ModePassphrase))
	return nil
}

// Unwrap implements Protector.
func (p *Passphrase) Unwrap(_ context.Context, _ string, cfg *Config, out []byte) error {
	aead, err := p.derive(cfg.KDF)
	if err != nil {
		return err
	}
	return openWrapped(aead, cfg, out, ErrWrongPassphrase)
}

// openWrapped decrypts cfg.WrappedRoot into out; failure is wrongKey.
func openWrapped(aead cipher.AEAD, cfg *Config, out []byte, wrongKey error) error {
	ns := aead.NonceSize()
	if len(cfg.WrappedRoot) != ns+RootSize+aead.Overhead() {
		return fmt.Errorf("wrapped_root: %d bytes, want %d", len(cfg.WrappedRoot), ns+RootSize+aead.Overhead())
	}
	plain, err := aead.Open(out[:0], cfg.WrappedRoot[:ns], cfg.WrappedRoot[ns:], wrapAAD(cfg.Network, cfg.Mode))
	if err != nil {
		return wrongKey
	}
	if len(plain) != RootSize {
		return fmt.Errorf("wrapped_root: %d bytes inside, want %d", len(plain), RootSize)
	}
	return nil
}
