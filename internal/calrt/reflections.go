package calrt

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"filippo.io/age"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/vault"
	"github.com/soulfra/calnet/trust"
)

// vaultOK writes the vault's verification failure, if any: a tampered
// vault is reported on every use, never skipped.
func (rt *Runtime) vaultOK(w http.ResponseWriter) bool {
	if rt.vaultErr != nil {
		writeErr(w, http.StatusConflict, "vault: %v", rt.vaultErr)
		return false
	}
	return true
}

func (rt *Runtime) readReflections(w http.ResponseWriter, r *http.Request) {
	if !rt.vaultOK(w) {
		return
	}
	from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	es, err := rt.vault.Read(from)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, vault.ErrTampered) {
			status = http.StatusConflict
		}
		writeErr(w, status, "%v", err)
		return
	}
	writeJSON(w, 200, es)
}

func (rt *Runtime) appendReflection(w http.ResponseWriter, r *http.Request) {
	if !rt.vaultOK(w) {
		return
	}
	var req calproto.Reflect
	if !decode(w, r, &req) {
		return
	}
	e, err := rt.vault.Append(req.Kind, req.Text, req.Data)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, 201, e)
}

// share re-encrypts entries to another Cal (the control plane checked
// that this Cal may share with it and supplies its recipient).
func (rt *Runtime) share(w http.ResponseWriter, r *http.Request) {
	if !rt.vaultOK(w) {
		return
	}
	var req calproto.ShareRequest
	if !decode(w, r, &req) {
		return
	}
	to, err := identity.ParseID(req.To)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "to: %v", err)
		return
	}
	rcpt, err := age.ParseHybridRecipient(req.Recipient)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "recipient: %v", err)
		return
	}
	b, err := rt.vault.Share(req.Seqs, to, rcpt)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, 200, calproto.ShareReply{Bundle: b})
}

// inbox receives reflections another Cal shared: it verifies the sharer's
// soul chain against the network's root, then the bundle's signature, and
// records the bundle in its own log as a "shared" reflection naming the
// sharer.
func (rt *Runtime) inbox(w http.ResponseWriter, r *http.Request) {
	if !rt.vaultOK(w) {
		return
	}
	var req calproto.Inbox
	if !decode(w, r, &req) {
		return
	}
	chain, err := trust.ParseChain(req.SharerChain)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "sharer_chain: %v", err)
		return
	}
	v, err := rt.verifier.Verify(chain, nowUTC(), nil)
	if err != nil {
		writeErr(w, http.StatusForbidden, "sharer_chain: %v", err)
		return
	}
	b, err := vault.OpenShared(req.Bundle, rt.kek, rt.ID(), func(id identity.ID) (*identity.PublicKey, error) {
		if id != v.Cal {
			return nil, errors.New("the bundle's sharer is not the chain's cal")
		}
		return v.Key, nil
	})
	if err != nil {
		writeErr(w, http.StatusForbidden, "%v", err)
		return
	}
	data, _ := json.Marshal(map[string]any{"from": b.From, "shared_at": b.Time, "entries": b.Entries})
	e, err := rt.vault.Append("shared", "reflections shared by "+b.From.String(), data)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, 201, e)
}
