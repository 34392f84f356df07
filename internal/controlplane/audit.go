package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/soulfra/calnet/internal/auditlog"
	"github.com/soulfra/calnet/ledger"
)

// The audit trail: every event (spawn transitions, state changes,
// revocations, the kill switch, tokens, approvals), with who and why, in
// <data>/audit/ (internal/auditlog: hash-chained JSON Lines, rotated,
// fsynced in groups). Its head is anchored in the ledger every
// auditAnchorEvery and at shutdown, so the trail cannot be cut back or
// rewritten past an anchor unnoticed (`calnet audit verify`).

// auditAnchorEvery is how often the trail's head is anchored in the ledger
// when it moved.
const auditAnchorEvery = time.Minute

// AuditDir is where a data directory keeps its audit trail.
func AuditDir(dataDir string) string { return filepath.Join(dataDir, "audit") }

func (s *Server) openAudit() error {
	a, err := auditlog.Open(auditlog.Config{Dir: AuditDir(s.cfg.DataDir), Network: s.net.Info.Network.String(), Logger: s.log})
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, "audit.log")); err == nil {
		s.log.Info("audit trail: audit.log (before hash chaining) is kept as it was; the trail goes on in audit/")
	}
	s.audit = a
	// Event sequence numbers are the trail's: they go on across restarts,
	// so a client resuming the event stream never sees them start over.
	s.bus.seq, _ = a.Head()
	s.bus.sink = func(e Event) Event {
		if err := s.checkDisk(context.Background()); err != nil {
			// Below the disk reserve nothing is written; the trail declares
			// the events it missed, and why, when there is room again.
			e = a.Skip(e, err.Error())
		} else if rec, err := a.Append(e); err == nil {
			e = rec.Event
		} else {
			s.log.Error("audit trail: append failed", "err", err, "type", e.Type)
		}
		s.health.record(e)
		return e
	}
	return nil
}

// anchorAudit appends the trail's head to the ledger if it moved since the
// last anchor, once what it names is on disk.
func (s *Server) anchorAudit(ctx context.Context) {
	seq, hash := s.audit.Head()
	if seq == 0 || seq <= s.auditAnchored {
		return
	}
	if err := s.audit.Sync(ctx); err != nil {
		s.log.Error("audit trail: sync before anchoring", "err", err)
		return
	}
	data, err := auditlog.AnchorEntry(seq, hash)
	if err == nil {
		_, err = s.lg.Append(ctx, ledger.Entry{Type: ledger.TypeAudit, Time: s.now(), Subject: s.net.Info.Network.String(), Actor: "control-plane", Data: data})
	}
	if err != nil {
		s.log.Error("audit trail: anchoring its head in the ledger", "err", err)
		return
	}
	s.auditAnchored = seq
}

// auditAnchorLoop anchors the trail every auditAnchorEvery; Run anchors it
// a last time at shutdown.
func (s *Server) auditAnchorLoop(ctx context.Context) {
	every(ctx, auditAnchorEvery, func() { s.anchorAudit(ctx) })
}

func (s *Server) closeAudit() {
	if s.audit != nil {
		if err := s.audit.Close(); err != nil {
			s.log.Error("audit trail: close", "err", err)
		}
	}
}

// handleAudit is GET /v1/audit (administrators): a page of the trail,
// oldest first, filtered by since, until (RFC 3339), actor, type ("cal."
// for a prefix), cal (a name, an ID or a prefix), after or before
// (sequence numbers) and limit.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	q, err := parseAuditQuery(r.URL.Query(), func(ref string) string {
		// A name or prefix of a Cal in the registry becomes its ID; other
		// values stay prefixes (the trail outlives the registry's records).
		if rec, aerr := s.resolve(r.Context(), ref); aerr == nil {
			return rec.ID
		}
		return ref
	})
	if err != nil {
		writeError(w, apiErr(400, "%v", err))
		return
	}
	page, err := s.audit.Query(r.Context(), q)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Error("audit trail: query", "err", err)
		}
		writeError(w, err)
		return
	}
	writeJSON(w, 200, page)
}

// parseAuditQuery reads GET /v1/audit's parameters, naming the one that is
// wrong; resolveCal (if not nil) turns a Cal's name into its ID.
func parseAuditQuery(v map[string][]string, resolveCal func(string) string) (auditlog.Query, error) {
	var q auditlog.Query
	get := func(k string) string {
		if x := v[k]; len(x) > 0 {
			return x[0]
		}
		return ""
	}
	for k, x := range v {
		switch k {
		case "since", "until", "actor", "type", "cal", "after", "before", "limit":
			if len(x) > 1 {
				return q, fmt.Errorf("%s: given %d times", k, len(x))
			}
		default:
			return q, fmt.Errorf("%s: unknown parameter (since, until, actor, type, cal, after, before, limit)", k)
		}
	}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if x := get(t.name); x != "" {
			tm, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return q, fmt.Errorf("%s %q: want an RFC 3339 time", t.name, x)
			}
			*t.to = tm
		}
	}
	for _, n := range []struct {
		name string
		to   *uint64
	}{{"after", &q.After}, {"before", &q.Before}} {
		if x := get(n.name); x != "" {
			u, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return q, fmt.Errorf("%s %q: want a sequence number", n.name, x)
			}
			*n.to = u
		}
	}
	if x := get("limit"); x != "" {
		n, err := strconv.Atoi(x)
		if err != nil || n < 1 || n > auditlog.MaxQueryLimit {
			return q, fmt.Errorf("limit %q: want 1..%d", x, auditlog.MaxQueryLimit)
		}
		q.Limit = n
	}
	q.Actor, q.Type, q.Cal = get("actor"), get("type"), get("cal")
	if q.Cal != "" && len(q.Cal) <= 64 && resolveCal != nil {
		q.Cal = resolveCal(q.Cal)
	}
	return q, q.Validate()
}
