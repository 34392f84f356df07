package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/soulfra/calnet/internal/witness"
	"github.com/soulfra/calnet/ledger"
)

// WitnessEndpoint is a witness the control plane submits its checkpoints
// to (C2SP tlog-witness add-checkpoint at URL+"/add-checkpoint").
type WitnessEndpoint struct {
	URL string
	Key *ledger.WitnessKey
}

// witnessInterval is how often new checkpoints go to the witnesses.
const witnessInterval = time.Second

// witnessTimeout bounds one add-checkpoint request.
const witnessTimeout = 10 * time.Second

// witnessState is what the control plane knows of one witness.
type witnessState struct {
	ep   WitnessEndpoint
	size uint64 // the witness's latest size, as it last said
	line []byte // its cosignature of the checkpoint being collected
}

// witnessLoop submits each new checkpoint to every witness and publishes
// it with the cosignatures it got back. A witness that is down or refuses
// is logged and retried on the next round; the checkpoint is served with
// the cosignatures that did come.
func (s *Server) witnessLoop(ctx context.Context) {
	ws := make([]*witnessState, len(s.cfg.Witnesses))
	for i, ep := range s.cfg.Witnesses {
		ws[i] = &witnessState{ep: ep}
	}
	hc := &http.Client{Timeout: witnessTimeout}
	t := time.NewTicker(witnessInterval)
	defer t.Stop()
	// done is the size whose round every witness answered; a round with a
	// witness down or refusing is run again on the next tick.
	done := ^uint64(0)
	for {
		cp := s.lg.Checkpoint()
		if cp.Size != done {
			var wg sync.WaitGroup
			for _, w := range ws {
				wg.Go(func() {
					if w.line != nil && w.size == cp.Size {
						return // it cosigned this checkpoint in an earlier round
					}
					w.line = nil
					if err := s.submit(ctx, hc, w, cp); err != nil && ctx.Err() == nil {
						s.log.Warn("witness did not cosign", "witness", w.ep.Key.Name(), "size", cp.Size, "err", err)
					}
				})
			}
			wg.Wait()
			note := bytes.Clone(cp.Note)
			n := 0
			for _, w := range ws {
				if w.line != nil {
					note = append(note, w.line...)
					n++
				}
			}
			s.cosigned.Store(&note)
			if n == len(ws) {
				done = cp.Size
			}
			s.log.Debug("checkpoint cosigned", "size", cp.Size, "witnesses", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// submit sends cp to one witness, learning its size from a 409 and
// retrying once, and keeps its cosignature line if it verifies.
func (s *Server) submit(ctx context.Context, hc *http.Client, w *witnessState, cp *ledger.Checkpoint) error {
	for attempt := 0; attempt < 2; attempt++ {
		req := &witness.AddRequest{OldSize: w.size, Checkpoint: cp.Note}
		if w.size > cp.Size {
			return fmt.Errorf("the witness is at size %d, beyond the log's %d", w.size, cp.Size)
		}
		if w.size > 0 && w.size < cp.Size {
			p, err := s.lg.Consistency(w.size, cp.Size)
			if err != nil {
				return err
			}
			req.Proof = p.Hashes
		}
		status, body, err := postWitness(ctx, hc, w.ep.URL+"/add-checkpoint", req.Marshal())
		if err != nil {
			return err
		}
		switch status {
		case http.StatusOK:
			full := append(bytes.Clone(cp.Note), body...)
			if _, err := ledger.VerifyCosigned(full, s.net.Info.Origin, s.net.Info.LogKey, ledger.WitnessPolicy{Witnesses: []*ledger.WitnessKey{w.ep.Key}, Required: 1}); err != nil {
				return fmt.Errorf("its answer: %w", err)
			}
			w.line, w.size = body, cp.Size
			return nil
		case http.StatusConflict:
			sz, err := strconv.ParseUint(strings.TrimSpace(string(body)), 10, 64)
			if err != nil {
				return fmt.Errorf("409: %s", bytes.TrimSpace(body))
			}
			w.size = sz
		default:
			return fmt.Errorf("%d: %s", status, bytes.TrimSpace(body))
		}
	}
	return errors.New("the witness's size kept changing")
}

func postWitness(ctx context.Context, hc *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, nil, err
	}
	// A cosignature is one line; refuse anything else.
	if resp.StatusCode == http.StatusOK && (bytes.Count(b, []byte("\n")) != 1 || !bytes.HasPrefix(b, []byte("\u2014 ")) || !bytes.HasSuffix(b, []byte("\n"))) {
		return 0, nil, fmt.Errorf("answer is not one signature line")
	}
	return resp.StatusCode, b, nil
}
