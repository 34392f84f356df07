package controlplane

import (
	"net/http"
	"slices"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
)

// runningCal resolves a Cal the principal may see and checks it runs.
func (s *Server) runningCal(r *http.Request, pr principal, ref string) (*CalRecord, identity.ID, *APIError) {
	rec, aerr := s.resolveScoped(r.Context(), pr, ref)
	if aerr != nil {
		return nil, identity.ID{}, aerr
	}
	if rec.State != StateRunning {
		return nil, identity.ID{}, apiErr(409, "cal %s is %s", rec.ID, rec.State)
	}
	id, _ := identity.ParseID(rec.ID)
	return rec, id, nil
}

// handleReflections reads (GET ?from=N) or appends (POST) a Cal's
// reflections, relayed to the Cal over mutual TLS: only the Cal can
// decrypt its vault.
func (s *Server) handleReflections(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, id, aerr := s.runningCal(r, pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	path := calproto.PathReflections
	var body []byte
	status := 200
	if r.Method == http.MethodPost {
		var req calproto.Reflect
		if !readJSON(w, r, &req) {
			return
		}
		body, _ = jsonMarshal(req)
		status = 201
	} else if from := r.URL.Query().Get("from"); from != "" {
		path += "?from=" + from
	}
	out, err := s.callCalRaw(r.Context(), id, r.Method, path, body)
	if err != nil {
		writeError(w, relayErr(rec.ID, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(out)
}

// mayShare reports whether from may share reflections with to: from holds
// share, and to is its parent or child, or both hold talk.
func mayShare(from, to *CalRecord) bool {
	if !slices.Contains(from.Permissions, "share") {
		return false
	}
	if to.Parent == from.ID || from.Parent == to.ID {
		return true
	}
	return slices.Contains(from.Permissions, "talk") && slices.Contains(to.Permissions, "talk")
}

func (s *Server) handleShare(w http.ResponseWriter, r *http.Request, pr principal) {
	var req struct {
		To   string   `json:"to"`
		Seqs []uint64 `json:"seqs"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	from, fromID, aerr := s.runningCal(r, pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	// A token shares only between Cals of its subtree: the recipient's
	// vault is written too.
	to, toID, aerr := s.runningCal(r, pr, req.To)
	if aerr != nil {
		aerr.Msg = "to: " + aerr.Msg
		writeError(w, aerr)
		return
	}
	if !mayShare(from, to) {
		writeError(w, apiErr(403, "share: cal %s may share only with its parent, its children, or peers it may talk to (needs share, and talk on both sides for peers)", from.ID))
		return
	}
	rid, err := s.kek(r.Context(), to.ID)
	if err != nil {
		writeError(w, err)
		return
	}
	var reply calproto.ShareReply
	if err := s.callCal(r.Context(), fromID, http.MethodPost, calproto.PathShare, calproto.ShareRequest{Seqs: req.Seqs, To: to.ID, Recipient: rid.Recipient().String()}, &reply); err != nil {
		writeError(w, relayErr(from.ID, err))
		return
	}
	chain, err := s.chainOf(fromID)
	if err != nil {
		writeError(w, err)
		return
	}
	cj, _ := chain.MarshalJSON()
	in, _ := jsonMarshal(calproto.Inbox{Bundle: reply.Bundle, SharerChain: cj})
	out, err := s.callCalRaw(r.Context(), toID, http.MethodPost, calproto.PathInbox, in)
	if err != nil {
		writeError(w, relayErr(to.ID, err))
		return
	}
	s.bus.publish(Event{Type: "reflections.shared", Cal: from.ID, Parent: to.ID, Actor: pr.actor(), Reason: "shared with " + to.ID})
	s.usePermission(r.Context(), from.ID, "share")
	s.note(from.ID, to.ID, "share", len(reply.Bundle))
	if to.Parent != from.ID && from.Parent != to.ID {
		s.usePermission(r.Context(), from.ID, "talk")
		s.usePermission(r.Context(), to.ID, "talk")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	w.Write(out)
}
