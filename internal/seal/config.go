package seal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/strictjson"
)

// ConfigFile is the name of the seal configuration in a network directory.
const ConfigFile = "seal.json"

// Mode is how a network's root sealing key is protected.
type Mode string

// The modes.
const (
	ModeFile       Mode = "file"
	ModePassphrase Mode = "passphrase"
	ModePKCS11     Mode = "pkcs11"
)

// Config is seal.json: how the root sealing key is wrapped. It holds no
// secret in the passphrase and pkcs11 modes.
type Config struct {
	Version int    `json:"version"`
	Network string `json:"network"`
	Mode    Mode   `json:"mode"`
	// KDF is the passphrase mode's key derivation.
	KDF *KDF `json:"kdf,omitempty"`
	// PKCS11 names the token and key of the pkcs11 mode.
	PKCS11 *PKCS11Ref `json:"pkcs11,omitempty"`
	// WrappedRoot is the root, encrypted by the mode's key (absent in the
	// file mode).
	WrappedRoot []byte `json:"wrapped_root,omitempty"`
}

// KDF is the Argon2id derivation of the passphrase mode's wrapping key.
type KDF struct {
	Algorithm string `json:"algorithm"` // "argon2id"
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

// PKCS11Ref names the HSM key that wraps the root.
type PKCS11Ref struct {
	// Module is the PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so).
	Module string `json:"module"`
	// Token is the token's label.
	Token string `json:"token"`
	// Key is the label of the AES-256 key on the token.
	Key string `json:"key"`
}

// A Protector wraps the root sealing key for storage and unwraps it: the
// operator's passphrase, an HSM key, or a file. Implementations are used
// by one goroutine at a time.
type Protector interface {
	// Mode is the protection mode recorded in seal.json.
	Mode() Mode
	// Wrap stores root: it fills cfg (and may write files in dir).
	Wrap(ctx context.Context, dir string, cfg *Config, root []byte) error
	// Unwrap recovers the root from cfg (and files in dir) into out
	// (RootSize bytes). A wrong passphrase or PIN, a missing token or key
	// is an error naming it; nothing stored is changed.
	Unwrap(ctx context.Context, dir string, cfg *Config, out []byte) error
}

// Named reasons a network cannot be unsealed.
var (
	// ErrNoSeal: the network directory has no seal.json (a network made
	// before sealing, or not a network).
	ErrNoSeal = errors.New("no seal.json: the network's root sealing key was never made")
	// ErrWrongPassphrase: the passphrase does not unwrap the root.
	ErrWrongPassphrase = errors.New("wrong passphrase (or seal.json was changed)")
	// ErrModeMismatch: the protector given is not the one the network was
	// sealed with.
	ErrModeMismatch = errors.New("the network is sealed another way")
	// ErrExists: Create found a seal.json already.
	ErrExists = errors.New("the network already has a root sealing key (seal.json)")
)

// wrapAAD binds a wrapped root to its network and mode.
func wrapAAD(network string, mode Mode) []byte {
	return []byte("calnet-seal-root-v1\n" + network + "\n" + string(mode))
}

// WrapAAD is the authenticated data a protector binds a wrapped root to.
func WrapAAD(network string, mode Mode) []byte { return wrapAAD(network, mode) }

// ReadConfig reads and checks dir/seal.json.
func ReadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, ConfigFile)
	b, err := limitedfile.Read(path, MaxConfigFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoSeal)
	}
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes seal.json strictly and checks its fields' limits.
func ParseConfig(b []byte) (*Config, error) {
	var cfg Config
	if err := strictjson.Unmarshal(b, MaxConfigFile, &cfg); err != nil {
		return nil, err
	}
	if cfg.Version != 1 {
		return nil, fmt.Errorf("version: %d, want 1", cfg.Version)
	}
	if err := checkLabel("network", cfg.Network, MaxNetwork); err != nil {
		return nil, err
	}
	switch cfg.Mode {
	case ModeFile:
		if cfg.KDF != nil || cfg.PKCS11 != nil || cfg.WrappedRoot != nil {
			return nil, errors.New("mode file: kdf, pkcs11 and wrapped_root must be absent")
		}
		return &cfg, nil
	case ModePassphrase:
		if cfg.KDF == nil || cfg.PKCS11 != nil {
			return nil, errors.New("mode passphrase: kdf is required and pkcs11 must be absent")
		}
		if err := cfg.KDF.check(); err != nil {
			return nil, fmt.Errorf("kdf: %w", err)
		}
	case ModePKCS11:
		if cfg.PKCS11 == nil || cfg.KDF != nil {
			return nil, errors.New("mode pkcs11: pkcs11 is required and kdf must be absent")
		}
		if m := cfg.PKCS11.Module; m == "" || len(m) > 4096 || !filepath.IsAbs(m) {
			return nil, fmt.Errorf("pkcs11.module: want an absolute path of at most 4096 bytes, got %d bytes", len(m))
		}
		for _, f := range []struct{ name, v string }{{"pkcs11.token", cfg.PKCS11.Token}, {"pkcs11.key", cfg.PKCS11.Key}} {
			if f.v == "" || len(f.v) > 32 {
				return nil, fmt.Errorf("%s: %d bytes, want 1 to 32 (a PKCS#11 label)", f.name, len(f.v))
			}
		}
	default:
		return nil, fmt.Errorf("mode: %.40q is unknown (want file, passphrase or pkcs11)", cfg.Mode)
	}
	if n := len(cfg.WrappedRoot); n != 12+RootSize+16 {
		return nil, fmt.Errorf("wrapped_root: %d bytes, want %d", n, 12+RootSize+16)
	}
	return &cfg, nil
}

func marshalConfig(cfg *Config) ([]byte, error) {
	b, err := json.MarshalIndent(cfg, "", "  ")
	return append(b, '\n'), err
}

func writeConfig(dir string, cfg *Config) error {
	b, err := marshalConfig(cfg)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, ConfigFile), b, 0o600)
}

// Create makes a network's root sealing key, protected by p, and writes
// seal.json (last: its presence marks a complete seal). It refuses a
// directory that already has one.
func Create(ctx context.Context, dir, network string, p Protector) (*Root, error) {
	if err := checkLabel("network", network, MaxNetwork); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return nil, fmt.Errorf("%s: %w", dir, ErrExists)
	}
	key, err := randomLocked(RootSize)
	if err != nil {
		return nil, err
	}
	cfg := &Config{Version: 1, Network: network, Mode: p.Mode()}
	if err := p.Wrap(ctx, dir, cfg, key.b); err != nil {
		key.wipe()
		return nil, fmt.Errorf("seal (%s): %w", p.Mode(), err)
	}
	if err := writeConfig(dir, cfg); err != nil {
		key.wipe()
		return nil, err
	}
	return newRoot(network, key)
}

// Unseal recovers the root sealing key of the network in dir with p, which
// must be the protector the network was sealed with.
func Unseal(ctx context.Context, dir, network string, p Protector) (*Root, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	if cfg.Network != network {
		return nil, fmt.Errorf("%s: %w (seal.json is of network %.40q, this is %s)", dir, ErrOtherNetwork, cfg.Network, network)
	}
	if cfg.Mode != p.Mode() {
		return nil, fmt.Errorf("%w: with %s, not %s; %s", ErrModeMismatch, cfg.Mode, p.Mode(), unsealHint(cfg.Mode))
	}
	key := newLocked(RootSize)
	if err := p.Unwrap(ctx, dir, cfg, key.b); err != nil {
		key.wipe()
		return nil, err
	}
	return newRoot(network, key)
}

// Rewrap changes how the root is protected: it unwraps it with from and
// wraps it with to, replacing seal.json atomically. Every sealed blob stays
// valid (the root does not change). A file-mode seal.key is removed only
// after the new seal.json is written.
func Rewrap(ctx context.Context, dir, network string, from, to Protector) error {
	r, err := Unseal(ctx, dir, network, from)
	if err != nil {
		return err
	}
	defer r.Destroy()
	r.mu.RLock()
	root := append([]byte(nil), r.key.b...)
	r.mu.RUnlock()
	defer clear(root)
	cfg := &Config{Version: 1, Network: network, Mode: to.Mode()}
	if err := to.Wrap(ctx, dir, cfg, root); err != nil {
		return fmt.Errorf("seal (%s): %w", to.Mode(), err)
	}
	if err := writeConfig(dir, cfg); err != nil {
		return err
	}
	if from.Mode() == ModeFile && to.Mode() != ModeFile {
		return removeRootFile(dir)
	}
	return nil
}

// unsealHint says how to unseal a network of mode m.
func unsealHint(m Mode) string {
	switch m {
	case ModePassphrase:
		return "give the passphrase (`calnet unseal`, or --passphrase-fd / --passphrase-file)"
	case ModePKCS11:
		return "give the token's PIN (`calnet unseal`, or --pin-fd)"
	}
	return "the root is in seal.key (no secret needed)"
}

// Hint says how to unseal a network of mode m, for error messages.
func Hint(m Mode) string { return unsealHint(m) }
