package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/ledger/tiles"
)

// Limits on add-checkpoint requests.
const (
	// maxProofLines bounds a consistency proof's hashes (a tree of 2^64
	// entries needs under 130).
	maxProofLines = ledger.MaxProofHashes
	// MaxAddRequest bounds an add-checkpoint request body.
	MaxAddRequest = 32 + maxProofLines*45 + ledger.MaxCheckpointSize
)

// ErrRequest wraps every malformed add-checkpoint request.
var ErrRequest = errors.New("malformed add-checkpoint request")

// AddRequest is a C2SP tlog-witness add-checkpoint request.
type AddRequest struct {
	OldSize    uint64
	Proof      [][]byte
	Checkpoint []byte
}

// ParseAddRequest decodes an add-checkpoint body: "old <size>", one
// base64 hash per line, an empty line, the checkpoint note.
func ParseAddRequest(b []byte) (*AddRequest, error) {
	if len(b) > MaxAddRequest {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrRequest, len(b), MaxAddRequest)
	}
	head, cp, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no empty line before the checkpoint", ErrRequest)
	}
	lines := strings.Split(string(head), "\n")
	sz, ok := strings.CutPrefix(lines[0], "old ")
	if !ok {
		return nil, fmt.Errorf("%w: first line: want \"old <size>\"", ErrRequest)
	}
	old, err := strconv.ParseUint(sz, 10, 64)
	if err != nil || (len(sz) > 1 && sz[0] == '0') {
		return nil, fmt.Errorf("%w: old size %q: want a decimal integer", ErrRequest, sz)
	}
	if len(lines)-1 > maxProofLines {
		return nil, fmt.Errorf("%w: %d proof hashes, over the limit of %d", ErrRequest, len(lines)-1, maxProofLines)
	}
	r := &AddRequest{OldSize: old, Checkpoint: cp}
	for i, l := range lines[1:] {
		h, err := base64.StdEncoding.Strict().DecodeString(l)
		if err != nil || len(h) != 32 {
			return nil, fmt.Errorf("%w: proof line %d: want the base64 of a 32-byte hash", ErrRequest, i+1)
		}
		r.Proof = append(r.Proof, h)
	}
	return r, nil
}

// Marshal encodes the request.
func (r *AddRequest) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", r.OldSize)
	for _, h := range r.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(r.Checkpoint)
	return b.Bytes()
}

// Handler serves the witness: POST /add-checkpoint (C2SP tlog-witness) and
// GET /checkpoint (the latest checkpoint it cosigned, with its
// cosignature).
func (w *Witness) Handler() http.Handler {
	m := authz.NewMux(authz.Witness, authz.Public)
	m.HandleFunc("GET /checkpoint", func(rw http.ResponseWriter, r *http.Request) {
		b := w.Latest()
		if b == nil {
			http.Error(rw, "nothing cosigned yet", http.StatusNotFound)
			return
		}
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Header().Set("Cache-Control", "public, max-age=1, must-revalidate")
		_, _ = rw.Write(b) // the client has gone
	})
	m.HandleFunc("POST /add-checkpoint", func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxAddRequest))
		if err != nil {
			http.Error(rw, fmt.Sprintf("body over the limit of %d bytes", MaxAddRequest), http.StatusRequestEntityTooLarge)
			return
		}
		req, err := ParseAddRequest(body)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		line, err := w.Add(r.Context(), req.OldSize, req.Proof, req.Checkpoint)
		var conflict *ConflictError
		switch {
		case errors.As(err, &conflict):
			rw.Header().Set("Content-Type", "text/x.tlog.size")
			rw.WriteHeader(http.StatusConflict)
			fmt.Fprintf(rw, "%d\n", conflict.Size)
		case errors.Is(err, ErrUnknownLog):
			http.Error(rw, err.Error(), http.StatusNotFound)
		case errors.Is(err, ledger.ErrCheckpoint):
			http.Error(rw, err.Error(), http.StatusForbidden)
		case errors.Is(err, ErrRollback):
			http.Error(rw, err.Error(), http.StatusConflict)
		case errors.Is(err, ledger.ErrFork):
			http.Error(rw, err.Error(), http.StatusUnprocessableEntity)
		case err != nil && strings.Contains(err.Error(), "consistency"):
			http.Error(rw, err.Error(), http.StatusBadRequest)
		case err != nil:
			w.log.Error("witness: add-checkpoint", "err", err)
			http.Error(rw, "internal error", http.StatusInternalServerError)
		default:
			rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = rw.Write(line) // the client has gone
		}
	})
	return m.Handler()
}

// Follow pulls the log's checkpoint from c every interval until ctx ends,
// proves it consistent with the latest cosigned one from the log's tiles,
// and cosigns it. Refusals (a fork, a rollback, a bad signature) are
// logged and the witness keeps its state; it returns only when ctx ends.
func (w *Witness) Follow(ctx context.Context, c *tiles.Client, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := w.Poll(ctx, c); err != nil && ctx.Err() == nil {
			w.log.Error("witness: checkpoint refused or unreachable", "origin", w.cfg.Origin, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll fetches the log's checkpoint once and cosigns it if it is new and
// consistent with the latest cosigned one.
func (w *Witness) Poll(ctx context.Context, c *tiles.Client) error {
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	latest := w.latest
	w.mu.Unlock()
	var have uint64
	var proof [][]byte
	if latest != nil {
		have = latest.Size
		if cp.Size == have && bytes.Equal(cp.Root, latest.Root) {
			return nil // cosigned already
		}
		if cp.Size > have {
			old := &ledger.Checkpoint{Origin: w.cfg.Origin, Size: latest.Size, Root: latest.Root}
			p, err := c.Consistency(ctx, old, cp.Checkpoint)
			if err != nil {
				return err
			}
			proof = p.Hashes
		}
	}
	_, err = w.Add(ctx, have, proof, cp.Note)
	if err == nil {
		w.log.Info("witness: cosigned", "origin", w.cfg.Origin, "size", cp.Size)
	}
	return err
}
