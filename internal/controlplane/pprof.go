package controlplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	httppprof "net/http/pprof"
	"net/url"
	"strconv"
	"time"

	"github.com/soulfra/calnet/internal/calproto"
)

// Profiling (UX-4.2): the runtime profiles of a Cal's process, relayed
// from its own API over mutual TLS, and of the control plane itself.
// Administrators only: a profile shows memory contents' shapes and code
// paths.

// profiles are the names a profile request may take.
var profiles = map[string]bool{"heap": true, "goroutine": true, "allocs": true, "block": true, "mutex": true, "threadcreate": true, "profile": true}

const maxProfileSeconds = 30

// profileQuery checks a profile request: the name, seconds (CPU profile,
// 1 to 30) and debug (0: the binary format for go tool pprof, 1 or 2:
// text).
func profileQuery(r *http.Request) (name string, q url.Values, aerr *APIError) {
	name = r.PathValue("profile")
	if !profiles[name] {
		return "", nil, apiErr(404, "profile: %q: want heap, goroutine, allocs, block, mutex, threadcreate or profile (CPU)", name)
	}
	q = url.Values{}
	if v := r.URL.Query().Get("seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxProfileSeconds || name != "profile" {
			return "", nil, apiErr(400, "seconds: %q: want 1 to %d, for the CPU profile only", v, maxProfileSeconds)
		}
		q.Set("seconds", v)
	} else if name == "profile" {
		q.Set("seconds", "5")
	}
	if v := r.URL.Query().Get("debug"); v != "" {
		if v != "0" && v != "1" && v != "2" || name == "profile" {
			return "", nil, apiErr(400, "debug: %q: want 0, 1 or 2 (not for the CPU profile)", v)
		}
		q.Set("debug", v)
	}
	return name, q, nil
}

// handleCalProfile is GET /v1/cals/{id}/pprof/{profile}.
func (s *Server) handleCalProfile(w http.ResponseWriter, r *http.Request) {
	rec, id, aerr := s.runningCal(r, principal{admin: true}, r.PathValue("id")) // admin-only route
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	name, q, aerr := profileQuery(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	tr := s.calTransport(id)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(r.Context(), (maxProfileSeconds+10)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://cal"+calproto.PathPprof+name+"?"+q.Encode(), nil)
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		writeError(w, apiErr(502, "cal %s: profile not answered: %v", rec.ID, err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		writeError(w, apiErr(502, "cal %s: profile %s: HTTP %d", rec.ID, name, resp.StatusCode))
		return
	}
	s.bus.publish(Event{Type: "cal.profiled", Cal: rec.ID, Actor: actorOf(r), Reason: name})
	s.note(fromOperator, rec.ID, "profile", 0)
	setProfileHeaders(w, rec.Name+"-"+name, q.Get("debug"))
	if _, err := io.Copy(w, io.LimitReader(resp.Body, 64<<20)); err != nil {
		// The status is sent: the client sees a cut profile, which does
		// not parse.
		s.log.Debug("relaying a profile", "cal", rec.ID, "profile", name, "err", err)
	}
}

// handleOwnProfile is GET /v1/debug/pprof/{profile}: the control plane's.
func (s *Server) handleOwnProfile(w http.ResponseWriter, r *http.Request) {
	name, q, aerr := profileQuery(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	r.URL.RawQuery = q.Encode()
	setProfileHeaders(w, "control-plane-"+name, q.Get("debug"))
	if name == "profile" {
		httppprof.Profile(w, r)
		return
	}
	httppprof.Handler(name).ServeHTTP(w, r)
}

func setProfileHeaders(w http.ResponseWriter, file, debug string) {
	if debug == "" || debug == "0" {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", file+".pb.gz"))
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
}
