// Package sealgate is what a network started sealed runs until the
// operator unseals it: the API address answers every request with a
// "sealed" status (503, and 200 on GET /v1/seal-status), and a unix
// socket only root may connect to (<data>/unseal.sock, 0600) takes the
// passphrase or PIN from `calnet unseal`. No key is loaded, nothing else
// is served. The secret never crosses TCP, argv or a log.
package sealgate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/soulfra/calnet/internal/seal"
)

// SocketName is the unseal socket's name in the data directory.
const SocketName = "unseal.sock"

// MaxSecret bounds what a client may send (a passphrase or a PIN).
const MaxSecret = seal.MaxPassphrase

// ioTimeout bounds one unseal exchange on the socket but the unsealing.
const ioTimeout = 30 * time.Second

// Status is the JSON answer of the API address while sealed.
type Status struct {
	Sealed bool      `json:"sealed"`
	Seal   seal.Mode `json:"seal"`
	// Error says what to do, on every route but /v1/seal-status.
	Error string `json:"error,omitempty"`
}

// Config configures a Gate.
type Config struct {
	// APIAddr is the operator API address to answer "sealed" on; empty
	// serves none.
	APIAddr string
	// Socket is the unseal socket's path.
	Socket string
	// Mode is how the network is sealed (shown in the status).
	Mode seal.Mode
	// New says the secret will make a new seal (the network is being
	// created): the client asks for it twice.
	New bool
	// Hint says how to unseal, in the 503 answers.
	Hint string
	// Try unseals with a secret. Its error is sent to the client (and
	// the gate keeps waiting); nil ends the gate. Try must not keep secret.
	Try    func(ctx context.Context, secret []byte) error
	Logger *slog.Logger
}

// Run serves until Try succeeds (nil) or ctx ends (its error). It removes
// the socket and closes the API listener before it returns.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_ = os.Remove(cfg.Socket) // a socket left by a killed gate
	ln, err := listenPrivate(cfg.Socket)
	if err != nil {
		return fmt.Errorf("unseal socket: %w", err)
	}
	defer os.Remove(cfg.Socket)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if cfg.APIAddr != "" {
		apiLn, err := net.Listen("tcp", cfg.APIAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen %s: %w", cfg.APIAddr, err)
		}
		srv := &http.Server{Handler: statusHandler(cfg), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("sealed API", "err", err)
			}
		}()
		defer func() {
			_ = srv.Close() // the unsealed control plane takes the address next
			wg.Wait()
		}()
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	log.Info("sealed: the network's keys stay sealed until `calnet unseal`", "seal", cfg.Mode, "socket", cfg.Socket)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("unseal socket: %w", err)
		}
		// One exchange at a time: a wrong passphrase costs the KDF.
		if done := serveOne(ctx, c, cfg, log); done {
			return nil
		}
	}
}

// serveOne reads one secret, tries it and answers "ok" or "error: ...".
func serveOne(ctx context.Context, c net.Conn, cfg Config, log *slog.Logger) bool {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout)) // a failed deadline only loses the bound
	state := "existing"
	if cfg.New {
		state = "new"
	}
	if _, err := fmt.Fprintf(c, "%s %s %s\n", greetingMagic, cfg.Mode, state); err != nil {
		return false
	}
	secret, err := readSecret(c)
	defer clear(secret)
	if errors.Is(err, io.EOF) {
		return false // a client that only read the greeting
	}
	if err != nil {
		fmt.Fprintf(c, "error: %v\n", err)
		return false
	}
	if err := cfg.Try(ctx, secret); err != nil {
		log.Warn("unseal refused", "err", err)
		fmt.Fprintf(c, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return false
	}
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	fmt.Fprintf(c, "ok\n")
	log.Info("unsealed")
	return true
}

// readSecret reads one line of at most MaxSecret bytes.
func readSecret(r io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxSecret+2), MaxSecret+2)
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || (err == nil && len(line) > MaxSecret+1) {
		return nil, fmt.Errorf("secret: over the limit of %d bytes", MaxSecret)
	}
	if err != nil {
		if len(line) == 0 {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("secret: %w (send it on one line)", err)
	}
	s := append([]byte(nil), line[:len(line)-1]...)
	clear(line)
	if n := len(s); n > 0 && s[n-1] == '\r' {
		s = s[:n-1]
	}
	if len(s) == 0 {
		return nil, errors.New("secret: empty")
	}
	return s, nil
}

func statusHandler(cfg Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		st := Status{Sealed: true, Seal: cfg.Mode}
		if r.Method == http.MethodGet && r.URL.Path == "/v1/seal-status" {
			w.WriteHeader(http.StatusOK)
		} else {
			st.Error = "sealed: the network's keys are sealed (" + string(cfg.Mode) + "); " + cfg.Hint
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st) // the client may be gone
	})
}

// greetingMagic starts the line the gate sends first.
const greetingMagic = "calnet-unseal-v1"

// Hello is what the gate says first: how the network is sealed and
// whether the secret makes a new seal.
type Hello struct {
	Mode seal.Mode
	New  bool
}

func dial(ctx context.Context, socket string) (net.Conn, *bufio.Reader, Hello, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, nil, Hello{}, fmt.Errorf("no sealed calnet up listens on %s (is it started with --seal passphrase or pkcs11, and still sealed?): %w", socket, err)
	}
	// The secret goes only to a gate run by the same uid (root): not to
	// whatever another user may have bound in its place.
	if err := checkPeer(c); err != nil {
		c.Close()
		return nil, nil, Hello{}, fmt.Errorf("unseal socket %s: %w", socket, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	}
	br := bufio.NewReader(io.LimitReader(c, 8<<10))
	line, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, nil, Hello{}, fmt.Errorf("unseal socket %s: no greeting: %w", socket, err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != greetingMagic || (f[2] != "new" && f[2] != "existing") {
		c.Close()
		return nil, nil, Hello{}, fmt.Errorf("unseal socket %s: not a calnet unseal gate (greeting %.60q)", socket, line)
	}
	return c, br, Hello{Mode: seal.Mode(f[1]), New: f[2] == "new"}, nil
}

// Greeting asks the gate on socket how it is sealed.
func Greeting(ctx context.Context, socket string) (Hello, error) {
	c, _, h, err := dial(ctx, socket)
	if err != nil {
		return Hello{}, err
	}
	c.Close()
	return h, nil
}

// Unseal sends secret to the gate listening on socket and returns its
// refusal, if any.
func Unseal(ctx context.Context, socket string, secret []byte) error {
	c, br, _, err := dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := make([]byte, 0, len(secret)+1)
	msg = append(append(msg, secret...), '\n')
	_, err = c.Write(msg)
	clear(msg)
	if err != nil {
		return err
	}
	reply, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("unseal: no answer: %w", err)
	}
	reply = strings.TrimSpace(reply)
	if reply == "ok" {
		return nil
	}
	return errors.New(strings.TrimPrefix(reply, "error: "))
}
