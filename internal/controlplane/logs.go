package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/strictjson"
)

// Log aggregation (UX-4.1): the logs of every Cal in the caller's scope,
// merged by time, filtered by text, level and Cal, and followed with a
// cursor (the byte offset reached in each Cal's log).

const (
	logTail      = 256 << 10 // bytes read back from the end of each log without a cursor
	logFollowMax = 1 << 20   // bytes read from a cursor onwards per Cal and request
	// logBudget bounds the bytes one request reads over all Cals: with
	// many Cals each gets a smaller share (at least logMinShare).
	logBudget     = 32 << 20
	logMinShare   = 8 << 10
	maxLogLines   = 2000
	defLogLines   = 200
	maxLogQuery   = 200
	maxCursorSize = 256 << 10
)

var levels = map[string]int{"DEBUG": 0, "INFO": 1, "WARN": 2, "ERROR": 3}

// parseLogLine reads slog's text format: time=... level=... msg=...
func parseLogLine(line string) (t time.Time, level string) {
	if v, ok := strings.CutPrefix(line, "time="); ok {
		if i := strings.IndexByte(v, ' '); i > 0 {
			t, _ = time.Parse(time.RFC3339Nano, v[:i])
			v = v[i+1:]
		}
		if l, ok := strings.CutPrefix(v, "level="); ok {
			if i := strings.IndexByte(l, ' '); i > 0 {
				level = l[:i]
			}
		}
	}
	return t, level
}

// readLog returns the complete lines of path from offset (or its tail when
// offset < 0), and the offset after the last complete line.
func readLog(path string, offset, limit int64) ([]string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, offset, err
	}
	size := st.Size()
	start, skipPartial := offset, false
	switch {
	case offset < 0:
		start = max(0, size-min(logTail, limit))
		skipPartial = start > 0
	case offset > size: // the log was replaced: start again
		start = 0
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return nil, offset, err
	}
	b, err := io.ReadAll(io.LimitReader(f, min(logFollowMax, limit)))
	if err != nil {
		return nil, offset, err
	}
	if skipPartial {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			start += int64(i + 1)
			b = b[i+1:]
		}
	}
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return nil, start, nil
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b[:end+1]))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, start + int64(end+1), nil
}

func decodeCursor(s string) (map[string]int64, *APIError) {
	cur := map[string]int64{}
	if s == "" {
		return cur, nil
	}
	if len(s) > maxCursorSize {
		return nil, apiErr(400, "cursor: over the limit of %d bytes", maxCursorSize)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || strictjson.Unmarshal(b, maxCursorSize, &cur) != nil {
		return nil, apiErr(400, "cursor: not a cursor this API returned")
	}
	for _, v := range cur {
		if v < 0 {
			return nil, apiErr(400, "cursor: negative offset")
		}
	}
	return cur, nil
}

// handleLogsAll is GET /v1/logs.
func (s *Server) handleLogsAll(w http.ResponseWriter, r *http.Request, pr principal) {
	q := r.URL.Query()
	text := q.Get("q")
	if len(text) > maxLogQuery {
		writeError(w, apiErr(400, "q: %d characters, over the limit of %d", len(text), maxLogQuery))
		return
	}
	minLevel := -1
	if l := strings.ToUpper(q.Get("level")); l != "" {
		v, ok := levels[l]
		if !ok {
			writeError(w, apiErr(400, "level: %q: want debug, info, warn or error", q.Get("level")))
			return
		}
		minLevel = v
	}
	lines := defLogLines
	if v := q.Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLogLines {
			writeError(w, apiErr(400, "lines: %q: want 1 to %d", v, maxLogLines))
			return
		}
		lines = n
	}
	cursor, aerr := decodeCursor(q.Get("cursor"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var only map[string]bool
	if v := q.Get("cals"); v != "" {
		only = map[string]bool{}
		for _, c := range strings.Split(v, ",") {
			rec, aerr := s.resolveScoped(r.Context(), pr, strings.TrimSpace(c))
			if aerr != nil {
				aerr.Msg = "cals: " + aerr.Msg
				writeError(w, aerr)
				return
			}
			only[rec.ID] = true
		}
	}
	page, err := s.aggregateLogs(r.Context(), pr, only, text, minLevel, lines, cursor)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, page)
}

func (s *Server) aggregateLogs(ctx context.Context, pr principal, only map[string]bool, text string, minLevel, lines int, cursor map[string]int64) (*api.LogPage, error) {
	recs, err := s.listCals(ctx)
	if err != nil {
		return nil, err
	}
	needle := strings.ToLower(text)
	page := &api.LogPage{Entries: []api.LogEntry{}}
	next := map[string]int64{}
	var picked []*CalRecord
	for _, rec := range recs {
		if (only == nil || only[rec.ID]) && s.inScope(ctx, pr, rec.ID) {
			picked = append(picked, rec)
		}
	}
	share := int64(logBudget)
	if len(picked) > 0 {
		share = max(logMinShare, int64(logBudget)/int64(len(picked)))
	}
	for _, rec := range picked {
		off, ok := cursor[rec.ID]
		if !ok {
			off = -1
			if len(cursor) > 0 { // following: a Cal new since the cursor is read from its start
				off = 0
			}
		}
		ls, end, err := readLog(s.logPath(rec.ID), off, share)
		if err != nil {
			continue // no log yet
		}
		next[rec.ID] = end
		for _, l := range ls {
			if needle != "" && !strings.Contains(strings.ToLower(l), needle) {
				continue
			}
			t, level := parseLogLine(l)
			if minLevel >= 0 {
				if v, ok := levels[level]; !ok || v < minLevel {
					continue
				}
			}
			page.Entries = append(page.Entries, api.LogEntry{Cal: rec.ID, Name: rec.Name, Time: t, Level: level, Text: l})
		}
	}
	sort.SliceStable(page.Entries, func(i, j int) bool { return page.Entries[i].Time.Before(page.Entries[j].Time) })
	if len(page.Entries) > lines {
		page.Truncated = len(page.Entries) - lines
		page.Entries = page.Entries[len(page.Entries)-lines:]
	}
	b, _ := json.Marshal(next)
	page.Cursor = base64.RawURLEncoding.EncodeToString(b)
	return page, nil
}
