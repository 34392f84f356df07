// Package p11 is the token side of package hsm: it answers the helper
// protocol with a PKCS#11 token through ThalesGroup/crypto11. It needs
// cgo; only cmd/calnet-pkcs11 imports it (never the calnet binary).
package p11

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/soulfra/calnet/internal/hsm"
	"github.com/soulfra/calnet/internal/strictjson"
)

// Serve answers requests read from r on w until r ends.
func Serve(r io.Reader, w io.Writer) error {
	var ctx *crypto11.Context
	defer func() {
		if ctx != nil {
			_ = ctx.Close() // the process exits next; the token logs the session out
		}
	}()
	br := bufio.NewReaderSize(r, hsm.MaxMessage+1)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		var resp hsm.Response
		var req hsm.Request
		switch {
		case err != nil:
			resp = fail(hsm.ReasonBadInput, fmt.Errorf("request over %d bytes or cut short: %w", hsm.MaxMessage, err))
		default:
			if err := strictjson.Unmarshal(line, hsm.MaxMessage, &req); err != nil {
				resp = fail(hsm.ReasonBadInput, err)
			} else {
				resp = handle(&ctx, &req)
			}
		}
		clear(line)
		req.PIN, req.Data = "", nil
		b, _ := json.Marshal(resp)
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
		if err != nil {
			return err
		}
	}
}

func fail(reason string, err error) hsm.Response {
	return hsm.Response{Reason: reason, Error: err.Error()}
}

func handle(ctx **crypto11.Context, req *hsm.Request) hsm.Response {
	switch req.Op {
	case "login":
		if *ctx != nil {
			return fail(hsm.ReasonBadInput, errors.New("already logged in"))
		}
		c, reason, err := login(req)
		if err != nil {
			return fail(reason, err)
		}
		*ctx = c
		return hsm.Response{}
	case "encrypt", "decrypt":
		if *ctx == nil {
			return fail(hsm.ReasonNotLogged, errors.New("log in first"))
		}
		if req.Key == "" || len(req.Key) > 32 {
			return fail(hsm.ReasonBadInput, fmt.Errorf("key: %d bytes, want 1 to 32", len(req.Key)))
		}
		keys, err := (*ctx).FindKeys(nil, []byte(req.Key))
		if err != nil {
			return fail(hsm.ReasonHSM, err)
		}
		if len(keys) > 1 {
			return fail(hsm.ReasonHSM, fmt.Errorf("%d secret keys are labelled %q on the token: keep one", len(keys), req.Key))
		}
		var key *crypto11.SecretKey
		if len(keys) == 1 {
			key = keys[0]
		}
		if key == nil && req.Op == "encrypt" && req.Create {
			id := make([]byte, 16)
			if _, err := rand.Read(id); err != nil {
				return fail(hsm.ReasonHSM, err)
			}
			if key, err = (*ctx).GenerateSecretKeyWithLabel(id, []byte(req.Key), 256, crypto11.CipherAES); err != nil {
				return fail(hsm.ReasonHSM, fmt.Errorf("generate AES-256 key %q: %w", req.Key, err))
			}
		}
		if key == nil {
			return fail(hsm.ReasonNoKey, fmt.Errorf("no secret key labelled %q on the token", req.Key))
		}
		aead, err := key.NewGCM()
		if err != nil {
			return fail(hsm.ReasonHSM, err)
		}
		if req.Op == "encrypt" {
			return encrypt(aead, req)
		}
		if len(req.Data) < hsm.NonceSize+16 {
			return fail(hsm.ReasonDecrypt, errors.New("data: cut short"))
		}
		plain, err := aead.Open(nil, req.Data[:hsm.NonceSize], req.Data[hsm.NonceSize:], req.AAD)
		if err != nil {
			return fail(hsm.ReasonDecrypt, err)
		}
		return hsm.Response{Data: plain}
	}
	return fail(hsm.ReasonBadInput, fmt.Errorf("op: %.20q is unknown", req.Op))
}

// encrypt seals with the token (crypto11's Seal panics on a token error).
func encrypt(aead interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
}, req *hsm.Request) (resp hsm.Response) {
	defer func() {
		if r := recover(); r != nil {
			resp = fail(hsm.ReasonHSM, fmt.Errorf("encrypt: %v", r))
		}
	}()
	nonce := make([]byte, hsm.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return fail(hsm.ReasonHSM, err)
	}
	return hsm.Response{Data: aead.Seal(nonce, nonce, req.Data, req.AAD)}
}

func login(req *hsm.Request) (*crypto11.Context, string, error) {
	if _, err := os.Stat(req.Module); err != nil {
		return nil, hsm.ReasonNoModule, fmt.Errorf("module %s: %w", req.Module, err)
	}
	c, err := crypto11.Configure(&crypto11.Config{Path: req.Module, TokenLabel: req.Token, Pin: req.PIN, GCMIVLength: hsm.NonceSize, MaxSessions: 2})
	if err == nil {
		return c, "", nil
	}
	var pe pkcs11.Error
	switch {
	case errors.As(err, &pe) && (pe == pkcs11.CKR_PIN_INCORRECT || pe == pkcs11.CKR_PIN_LEN_RANGE || pe == pkcs11.CKR_PIN_INVALID):
		return nil, hsm.ReasonWrongPIN, fmt.Errorf("token %q: %w", req.Token, err)
	case errors.As(err, &pe) && pe == pkcs11.CKR_PIN_LOCKED:
		return nil, hsm.ReasonWrongPIN, fmt.Errorf("token %q: the PIN is locked: %w", req.Token, err)
	case strings.Contains(err.Error(), "could not find PKCS#11 token"):
		return nil, hsm.ReasonNoToken, fmt.Errorf("token %q: %w", req.Token, err)
	case strings.Contains(err.Error(), "failed to load module"):
		return nil, hsm.ReasonNoModule, err
	}
	return nil, hsm.ReasonHSM, err
}
