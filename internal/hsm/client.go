package hsm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/soulfra/calnet/internal/strictjson"
)

// Named failures of the token.
var (
	ErrNoHelper = errors.New("calnet-pkcs11 (the PKCS#11 helper, built with cgo) was not found")
	ErrNoModule = errors.New("the PKCS#11 module cannot be loaded")
	ErrNoToken  = errors.New("no PKCS#11 token with that label")
	ErrWrongPIN = errors.New("wrong PIN for the PKCS#11 token")
	ErrNoKey    = errors.New("the token holds no key with that label (removed?)")
	ErrDecrypt  = errors.New("the token's key does not open this (another key, or changed)")
)

var reasons = map[string]error{
	ReasonNoModule: ErrNoModule, ReasonNoToken: ErrNoToken, ReasonWrongPIN: ErrWrongPIN,
	ReasonNoKey: ErrNoKey, ReasonDecrypt: ErrDecrypt,
}

// FindHelper returns the helper's path: next to the running executable,
// else on PATH.
func FindHelper() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "calnet-pkcs11")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("calnet-pkcs11")
	if err != nil {
		return "", fmt.Errorf("%w: build it with `CGO_ENABLED=1 go build -o $(dirname $(which calnet))/calnet-pkcs11 ./cmd/calnet-pkcs11`", ErrNoHelper)
	}
	return p, nil
}

// Session is a logged-in helper process. It is safe for concurrent use
// (requests are serialized).
type Session struct {
	mu  sync.Mutex
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// Open starts the helper at path and logs in to the token.
func Open(ctx context.Context, helper, module, token string, pin []byte) (*Session, error) {
	if helper == "" {
		var err error
		if helper, err = FindHelper(); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, helper)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoHelper, err)
	}
	s := &Session{cmd: cmd, in: in, out: bufio.NewReaderSize(out, MaxMessage+1)}
	if _, err := s.call(Request{Op: "login", Module: module, Token: token, PIN: string(pin)}); err != nil {
		_ = s.Close() // the login's error says what failed
		return nil, err
	}
	return s, nil
}

func (s *Session) call(req Request) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("pkcs11 helper: %w", err)
	}
	clear(b)
	line, err := s.out.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("pkcs11 helper: no answer: %w", err)
	}
	return parseResponse(line)
}

// parseResponse decodes one answer of the helper into its data or its
// named error.
func parseResponse(line []byte) ([]byte, error) {
	var resp Response
	if err := strictjson.Unmarshal(line, MaxMessage, &resp); err != nil {
		return nil, fmt.Errorf("pkcs11 helper: %w", err)
	}
	if resp.Error != "" {
		if e, ok := reasons[resp.Reason]; ok {
			return nil, fmt.Errorf("%w: %.200s", e, strings.TrimSpace(resp.Error))
		}
		return nil, fmt.Errorf("pkcs11: %.200s", resp.Error)
	}
	return resp.Data, nil
}

// Encrypt seals data with the token's AES key label (made when create and
// missing); the result is nonce || ciphertext || tag.
func (s *Session) Encrypt(key string, create bool, data, aad []byte) ([]byte, error) {
	return s.call(Request{Op: "encrypt", Key: key, Create: create, Data: data, AAD: aad})
}

// Decrypt opens what Encrypt made.
func (s *Session) Decrypt(key string, data, aad []byte) ([]byte, error) {
	return s.call(Request{Op: "decrypt", Key: key, Data: data, AAD: aad})
}

// Close stops the helper (it logs out as it exits).
func (s *Session) Close() error {
	s.in.Close()
	return s.cmd.Wait()
}
