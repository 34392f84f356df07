package auditlog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/soulfra/calnet/api"
)

// Query selects records. Zero fields select everything.
type Query struct {
	Since, Until time.Time // Since <= time < Until
	// Actor matches the actor exactly.
	Actor string
	// Type matches the type exactly, or every type starting with it when
	// it ends with '.' ("cal." matches cal.revoked, cal.stopped, ...).
	Type string
	// Cal matches records about the Cal or naming it as the parent: a full
	// ID or a prefix of at least 4 characters.
	Cal string
	// After returns the first Limit matches after this sequence number,
	// oldest first; without it a page holds the newest Limit matches
	// before Before (0: the end).
	After, Before uint64
	// Limit is the page size (default 100, at most MaxQueryLimit).
	Limit int
}

// Validate checks the query's limits, naming the field.
func (q *Query) Validate() error {
	switch {
	case q.Limit < 0 || q.Limit > MaxQueryLimit:
		return fmt.Errorf("limit %d: want 1..%d", q.Limit, MaxQueryLimit)
	case q.Cal != "" && len(q.Cal) < 4:
		return fmt.Errorf("cal %q: give an ID or a prefix of at least 4 characters", q.Cal)
	case len(q.Cal) > 64 || len(q.Actor) > 256 || len(q.Type) > 128:
		return fmt.Errorf("cal, actor or type: too long")
	case q.After > 0 && q.Before > 0:
		return fmt.Errorf("after and before: give one")
	case !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until):
		return fmt.Errorf("since %s is not before until %s", q.Since.Format(time.RFC3339), q.Until.Format(time.RFC3339))
	}
	return nil
}

func (q *Query) match(r *api.AuditRecord) bool {
	switch {
	case q.After > 0 && r.Seq <= q.After, q.Before > 0 && r.Seq >= q.Before:
		return false
	case !q.Since.IsZero() && r.Time.Before(q.Since), !q.Until.IsZero() && !r.Time.Before(q.Until):
		return false
	case q.Actor != "" && r.Actor != q.Actor:
		return false
	case q.Type != "" && !(r.Type == q.Type || strings.HasSuffix(q.Type, ".") && strings.HasPrefix(r.Type, q.Type)):
		return false
	case q.Cal != "" && !strings.HasPrefix(r.Cal, q.Cal) && !strings.HasPrefix(r.Parent, q.Cal):
		return false
	}
	return true
}

// Query returns a page of matching records, oldest first. It sees every
// record appended before the call.
func (l *Log) Query(ctx context.Context, q Query) (*api.AuditPage, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	if err := l.wait(ctx, false); err != nil {
		return nil, err
	}
	l.segMu.RLock()
	segs := append([]segment(nil), l.segs...)
	l.segMu.RUnlock()
	page := &api.AuditPage{Records: []api.AuditRecord{}}
	page.HeadSeq, _ = l.Head()
	var ring []api.AuditRecord // the newest matches, for a page without After
	for i, s := range segs {
		// Skip segments wholly outside the sequence range.
		if q.After > 0 && i+1 < len(segs) && segs[i+1].first <= q.After+1 {
			continue
		}
		if q.Before > 0 && s.first >= q.Before {
			break
		}
		stop, err := scanSegment(ctx, s, func(r *api.AuditRecord) bool {
			if !q.match(r) {
				return true
			}
			if q.After > 0 {
				if len(page.Records) == q.Limit {
					page.More = true
					return false
				}
				page.Records = append(page.Records, *r)
				return true
			}
			if len(ring) == q.Limit {
				ring = ring[1:]
				page.More = true
			}
			ring = append(ring, *r)
			return true
		})
		if err != nil {
			return nil, err
		}
		if stop {
			break
		}
	}
	if q.After == 0 {
		page.Records = append(page.Records, ring...)
	}
	return page, nil
}

// scanSegment calls fn for each record of s up to its written size, until
// fn returns false (stop true).
func scanSegment(ctx context.Context, s segment, fn func(*api.AuditRecord) bool) (stop bool, err error) {
	f, err := os.Open(s.path)
	if os.IsNotExist(err) {
		return false, nil // removed by retention meanwhile
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, s.size))
	sc.Buffer(make([]byte, 64<<10), MaxLine+1)
	for n := 0; sc.Scan(); n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return true, ctx.Err()
		}
		rec, _, err := decode(sc.Bytes())
		if err != nil {
			continue // Verify reports it
		}
		if !fn(&rec) {
			return true, nil
		}
	}
	return false, sc.Err()
}
