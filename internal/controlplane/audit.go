package controlplane

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
)

// auditLog is the audit trail: every event (spawn transitions, state
// changes, revocations, kill switch, tokens), with who and why, appended
// as JSON lines to <data>/audit.log (0600). Trust events are also in the
// ledger; this file holds the rest.
type auditLog struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
	// check refuses writes below the disk reserve; the events it refuses
	// are counted and the count is written when there is room again.
	check   func() error
	dropped int
	reason  string
}

func (s *Server) openAudit() error {
	f, err := os.OpenFile(filepath.Join(s.cfg.DataDir, "audit.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	a := &auditLog{f: f, w: bufio.NewWriter(f), check: func() error { return s.checkDisk(context.Background()) }}
	s.audit = a
	s.bus.sink = func(e Event) {
		a.write(e)
		s.health.record(e)
	}
	return nil
}

func (a *auditLog) write(e Event) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.check(); err != nil {
		a.dropped++
		a.reason = err.Error()
		return
	}
	if a.dropped > 0 {
		note, _ := json.Marshal(map[string]any{"type": "audit.dropped", "count": a.dropped, "reason": a.reason})
		a.w.Write(note)
		a.w.WriteByte('\n')
		a.dropped = 0
	}
	a.w.Write(b)
	a.w.WriteByte('\n')
	a.w.Flush()
}

func (s *Server) closeAudit() {
	if s.audit == nil {
		return
	}
	s.audit.mu.Lock()
	defer s.audit.mu.Unlock()
	s.audit.w.Flush()
	s.audit.f.Sync()
	s.audit.f.Close()
}
