package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"sort"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/store"
)

// Administrators: the admin credential written by calnet up is the
// administrator "admin" (the root, who alone adds and removes others);
// each further administrator has a credential of its own, stored by the
// SHA-256 of its secret, and approves requests under its name.

const (
	bucketAdmins = "admins"
	adminPrefix  = "calnet_adm_"
	rootAdmin    = "admin"
	maxAdmins    = 32
)

var adminNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// adminByToken finds the named administrator holding tok.
func (s *Server) adminByToken(ctx context.Context, tok string) (*api.Admin, bool) {
	var a api.Admin
	if err := s.store.View(ctx, func(tx store.Tx) error { return store.GetJSON(tx, bucketAdmins, tokenHash(tok), &a) }); err != nil {
		return nil, false
	}
	return &a, true
}

// admins lists every administrator, the root first.
func (s *Server) admins(ctx context.Context) ([]api.Admin, map[string]string, error) {
	out := []api.Admin{{Name: rootAdmin, Root: true}}
	keys := map[string]string{}
	err := s.store.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(bucketAdmins, "", func(k string, _ []byte) error {
			var a api.Admin
			if store.GetJSON(tx, bucketAdmins, k, &a) == nil {
				out = append(out, a)
				keys[a.Name] = k
			}
			return nil
		})
	})
	sort.SliceStable(out[1:], func(i, j int) bool { return out[1+i].Name < out[1+j].Name })
	return out, keys, err
}

// adminCount is the number of administrators (at least the root).
func (s *Server) adminCount(ctx context.Context) int {
	as, _, err := s.admins(ctx)
	if err != nil {
		return 1
	}
	return len(as)
}

func (s *Server) handleAdminsList(w http.ResponseWriter, r *http.Request) {
	as, _, err := s.admins(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, as)
}

func (s *Server) handleAdminAdd(w http.ResponseWriter, r *http.Request, pr principal) {
	var req struct {
		Name string `json:"name"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if !adminNameRE.MatchString(req.Name) || req.Name == rootAdmin {
		writeError(w, apiErr(400, "name: %q: want a lowercase letter, then letters, digits and dashes, at most 32 characters, not %q", req.Name, rootAdmin))
		return
	}
	as, keys, err := s.admins(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if _, taken := keys[req.Name]; taken {
		writeError(w, apiErr(409, "name: administrator %q exists", req.Name))
		return
	}
	if len(as) >= maxAdmins {
		writeError(w, apiErr(400, "administrators: %d, the limit is %d", len(as), maxAdmins))
		return
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	secret := adminPrefix + hex.EncodeToString(raw)
	a := api.Admin{Name: req.Name, CreatedAt: s.now()}
	if err := s.store.Update(r.Context(), func(tx store.Tx) error { return store.PutJSON(tx, bucketAdmins, tokenHash(secret), a) }); err != nil {
		writeError(w, err)
		return
	}
	s.bus.publish(Event{Type: "admin.added", Actor: pr.actor(), Reason: a.Name})
	writeJSON(w, 201, map[string]any{"token": secret, "admin": a})
}

func (s *Server) handleAdminRemove(w http.ResponseWriter, r *http.Request, pr principal) {
	name := r.PathValue("name")
	_, keys, err := s.admins(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	k, ok := keys[name]
	if !ok {
		writeError(w, apiErr(404, "no administrator %q (the root cannot be removed)", name))
		return
	}
	if ps := s.policies.Load(); ps != nil {
		for _, p := range *ps {
			if p.Approvals > len(keys) { // len(keys)+1 administrators now, one fewer after
				writeError(w, apiErr(409, "policy %s requires %d approvals; removing %s would leave %d administrators (change the policy first)", p.Name, p.Approvals, name, len(keys)))
				return
			}
		}
	}
	if err := s.store.Update(r.Context(), func(tx store.Tx) error { return tx.Delete(bucketAdmins, k) }); err != nil {
		writeError(w, err)
		return
	}
	s.bus.publish(Event{Type: "admin.removed", Actor: pr.actor(), Reason: name})
	w.WriteHeader(204)
}
