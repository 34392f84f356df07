package hsm

import (
	"context"
	"fmt"

	"github.com/soulfra/calnet/internal/seal"
)

// Protector wraps a network's root sealing key with an AES key on a
// PKCS#11 token (seal mode pkcs11).
type Protector struct {
	// Helper is the calnet-pkcs11 path; empty finds it (FindHelper).
	Helper string
	// Ref names the module, token and key.
	Ref seal.PKCS11Ref
	// PIN logs in to the token. The caller wipes it when done.
	PIN []byte
}

var _ seal.Protector = (*Protector)(nil)

// Mode implements seal.Protector.
func (*Protector) Mode() seal.Mode { return seal.ModePKCS11 }

func (p *Protector) open(ctx context.Context) (*Session, error) {
	if p.Ref.Module == "" || p.Ref.Token == "" || p.Ref.Key == "" {
		return nil, fmt.Errorf("pkcs11: the module, token and key label are all needed (--pkcs11-module, --pkcs11-token, --pkcs11-key)")
	}
	return Open(ctx, p.Helper, p.Ref.Module, p.Ref.Token, p.PIN)
}

// Check logs in to the token, so a new seal is made only with a working
// PIN.
func (p *Protector) Check(ctx context.Context) error {
	s, err := p.open(ctx)
	if err != nil {
		return err
	}
	return s.Close()
}

// Wrap implements seal.Protector: the token's key (made if missing)
// encrypts the root.
func (p *Protector) Wrap(ctx context.Context, _ string, cfg *seal.Config, root []byte) error {
	s, err := p.open(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }() // the helper exits with its stdin; its result is in the answers
	ref := p.Ref
	cfg.PKCS11 = &ref
	w, err := s.Encrypt(p.Ref.Key, true, root, seal.WrapAAD(cfg.Network, seal.ModePKCS11))
	if err != nil {
		return err
	}
	cfg.WrappedRoot = w
	return nil
}

// Unwrap implements seal.Protector: the token's key decrypts the root.
func (p *Protector) Unwrap(ctx context.Context, _ string, cfg *seal.Config, out []byte) error {
	pr := *p
	pr.Ref = *cfg.PKCS11
	s, err := pr.open(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }() // as in Wrap
	plain, err := s.Decrypt(cfg.PKCS11.Key, cfg.WrappedRoot, seal.WrapAAD(cfg.Network, seal.ModePKCS11))
	if err != nil {
		return err
	}
	defer clear(plain)
	if len(plain) != len(out) {
		return fmt.Errorf("pkcs11: the unwrapped root is %d bytes, want %d", len(plain), len(out))
	}
	copy(out, plain)
	return nil
}
