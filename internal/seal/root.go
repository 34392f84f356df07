package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
)

// blobMagic starts every sealed blob; it is part of the authenticated data.
const blobMagic = "calnet-sealed-v1\n"

// RootSize is the size of the root sealing key.
const RootSize = 32

// Named reasons a sealed blob is refused.
var (
	// ErrNotSealed: the bytes are not a sealed blob (no magic); a value
	// from before sealing, for instance.
	ErrNotSealed = errors.New("not a sealed blob")
	// ErrTruncated: the blob ends before its header or tag.
	ErrTruncated = errors.New("sealed blob is cut short")
	// ErrOtherNetwork: the blob was sealed by another network's root.
	ErrOtherNetwork = errors.New("sealed blob belongs to another network")
	// ErrPurpose: the blob was sealed for another purpose (another Cal's
	// key, another file).
	ErrPurpose = errors.New("sealed blob was sealed for another purpose")
	// ErrTampered: the blob's header or ciphertext was changed, or it was
	// sealed by another root of the same network.
	ErrTampered = errors.New("sealed blob fails authentication (changed, or sealed by another root key)")
	// ErrDestroyed: the root was destroyed (the network was sealed again).
	ErrDestroyed = errors.New("the root sealing key is not in memory (sealed)")
)

// BlobError names what a refused blob was, and why.
type BlobError struct {
	Purpose string // what the caller expected
	Err     error  // one of the named reasons
	Detail  string
}

func (e *BlobError) Error() string {
	s := fmt.Sprintf("open sealed %s: %v", e.Purpose, e.Err)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *BlobError) Unwrap() error { return e.Err }

// Root is a network's unsealed root sealing key, held in locked memory.
// It is safe for concurrent use. Roots cannot be compared with ==.
type Root struct {
	_       [0]func() // not comparable
	network string
	mu      sync.RWMutex
	key     *lockedBytes
	aead    cipher.AEAD
}

// newRoot takes ownership of key (RootSize bytes, wiped by Destroy).
func newRoot(network string, key *lockedBytes) (*Root, error) {
	if len(key.b) != RootSize {
		return nil, fmt.Errorf("root sealing key: %d bytes, want %d", len(key.b), RootSize)
	}
	block, err := aes.NewCipher(key.b)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Root{network: network, key: key, aead: aead}, nil
}

// Network is the network the root belongs to.
func (r *Root) Network() string { return r.network }

// Destroy wipes the key from memory; Seal and Open fail afterwards.
func (r *Root) Destroy() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.key != nil {
		r.key.wipe()
		r.key, r.aead = nil, nil
	}
}

func header(network, purpose string) []byte {
	h := make([]byte, 0, len(blobMagic)+2+len(network)+len(purpose))
	h = append(h, blobMagic...)
	h = append(h, byte(len(network)))
	h = append(h, network...)
	h = append(h, byte(len(purpose)))
	h = append(h, purpose...)
	return h
}

func checkLabel(field, s string, max int) error {
	if s == "" || len(s) > max || len(s) > 255 {
		return fmt.Errorf("%s: %d bytes, want 1 to %d", field, len(s), min(max, 255))
	}
	return nil
}

// Seal encrypts plaintext for purpose, bound to the root's network.
func (r *Root) Seal(purpose string, plaintext []byte) ([]byte, error) {
	if err := checkLabel("purpose", purpose, MaxPurpose); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.aead == nil {
		return nil, ErrDestroyed
	}
	h := header(r.network, purpose)
	nonce := make([]byte, r.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(h, nonce...)
	out = r.aead.Seal(out, nonce, plaintext, h)
	if len(out) > MaxBlob {
		return nil, fmt.Errorf("seal %s: %d bytes sealed, over the limit of %d", purpose, len(out), MaxBlob)
	}
	return out, nil
}

// blob is a parsed sealed blob.
type blob struct {
	network, purpose string
	header           []byte
	nonce, ct        []byte
}

// parseBlob splits a sealed blob, refusing what cannot be one.
func parseBlob(b []byte) (*blob, error) {
	if len(b) > MaxBlob {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrTampered, len(b), MaxBlob)
	}
	if !bytes.HasPrefix(b, []byte(blobMagic)) {
		if len(b) < len(blobMagic) && bytes.HasPrefix([]byte(blobMagic), b) && len(b) > 0 {
			return nil, ErrTruncated
		}
		return nil, ErrNotSealed
	}
	rest := b[len(blobMagic):]
	label := func() (string, error) {
		if len(rest) < 1 {
			return "", ErrTruncated
		}
		n := int(rest[0])
		if n == 0 {
			return "", fmt.Errorf("%w: empty label", ErrTampered)
		}
		if len(rest) < 1+n {
			return "", ErrTruncated
		}
		s := string(rest[1 : 1+n])
		rest = rest[1+n:]
		return s, nil
	}
	network, err := label()
	if err != nil {
		return nil, err
	}
	purpose, err := label()
	if err != nil {
		return nil, err
	}
	const nonceSize, tagSize = 12, 16
	if len(rest) < nonceSize+tagSize {
		return nil, ErrTruncated
	}
	hl := len(b) - len(rest)
	return &blob{network: network, purpose: purpose, header: b[:hl], nonce: rest[:nonceSize], ct: rest[nonceSize:]}, nil
}

// Open decrypts a blob sealed for purpose by this root. It names why a blob
// is refused: not sealed, cut short, another network, another purpose,
// changed.
func (r *Root) Open(purpose string, sealed []byte) ([]byte, error) {
	bl, err := parseBlob(sealed)
	if err != nil {
		return nil, &BlobError{Purpose: purpose, Err: err}
	}
	if bl.network != r.network {
		return nil, &BlobError{Purpose: purpose, Err: ErrOtherNetwork, Detail: fmt.Sprintf("sealed by %.40q, this is %s", bl.network, r.network)}
	}
	if bl.purpose != purpose {
		return nil, &BlobError{Purpose: purpose, Err: ErrPurpose, Detail: fmt.Sprintf("sealed for %.80q", bl.purpose)}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.aead == nil {
		return nil, &BlobError{Purpose: purpose, Err: ErrDestroyed}
	}
	plain, err := r.aead.Open(nil, bl.nonce, bl.ct, bl.header)
	if err != nil {
		return nil, &BlobError{Purpose: purpose, Err: ErrTampered}
	}
	return plain, nil
}

// IsSealed reports whether b starts as a sealed blob (so a value written
// before sealing can be told apart and migrated).
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, []byte(blobMagic)) }
