package identity

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"filippo.io/age"

	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/limitedfile"
)

// keyFileMagic starts the plaintext of a sealed key, inside the age envelope.
const keyFileMagic = "calnet-private-key-v1\n"

// ErrKeyLocked is returned when no provided age identity opens a key file.
var ErrKeyLocked = errors.New("private key is encrypted to a different recipient or passphrase")

// Seal encrypts k to the age recipients (a post-quantum hybrid recipient,
// an X25519 recipient or one scrypt passphrase recipient) and returns the
// age-armoured-free binary envelope.
func Seal(k *PrivateKey, recipients ...age.Recipient) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("seal key: no recipient")
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	if _, err := io.WriteString(w, keyFileMagic); err != nil {
		return nil, err
	}
	if _, err := w.Write(k.seed()); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	return buf.Bytes(), nil
}

// Open decrypts an envelope made by Seal.
func Open(sealed []byte, identities ...age.Identity) (*PrivateKey, error) {
	if len(sealed) > MaxKeyFileSize {
		return nil, fmt.Errorf("open key: %d bytes, over the limit of %d", len(sealed), MaxKeyFileSize)
	}
	r, err := age.Decrypt(bytes.NewReader(sealed), identities...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, ErrKeyLocked
		}
		return nil, fmt.Errorf("open key: %w", err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, int64(len(keyFileMagic)+2*seedSize+1)))
	if err != nil {
		return nil, fmt.Errorf("open key: %w", err)
	}
	if len(plain) != len(keyFileMagic)+2*seedSize || string(plain[:len(keyFileMagic)]) != keyFileMagic {
		return nil, errors.New("open key: not a calnet private key")
	}
	return FromSeed(plain[len(keyFileMagic):])
}

// SaveKeyFile seals k and writes it to path with mode 0600, atomically.
func SaveKeyFile(path string, k *PrivateKey, recipients ...age.Recipient) error {
	sealed, err := Seal(k, recipients...)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, sealed, 0o600)
}

// LoadKeyFile reads and opens a sealed key file. It refuses files that other
// users can read.
func LoadKeyFile(path string, identities ...age.Identity) (*PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load key %s: mode %v is readable by others, want 0600", path, st.Mode().Perm())
	}
	b, err := limitedfile.Read(path, MaxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	k, err := Open(b, identities...)
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", path, err)
	}
	return k, nil
}
