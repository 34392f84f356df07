package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"github.com/soulfra/calnet/api"
	"net/http"
	"strings"

	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/trust"
)

// TokenRecord is a developer API token, stored by the SHA-256 of its
// secret: the secret itself is shown once and never stored.
type TokenRecord = api.Token

// principal is who made an API request: an administrator (the root,
// "admin", or a named one) or a developer token.
type principal struct {
	admin bool
	name  string // the administrator's name
	token *TokenRecord
}

func (p principal) actor() string {
	switch {
	case p.admin && p.name == rootAdmin:
		return "admin"
	case p.admin:
		return "admin:" + p.name
	}
	return "token:" + p.token.ID
}

const tokenPrefix = "calnet_dev_"

// principalKey carries the administrator through the request context of
// admin-only handlers.
type principalKey struct{}

// actorOf names who made an admin-only request, for events and audit.
func actorOf(r *http.Request) string {
	if p, ok := r.Context().Value(principalKey{}).(principal); ok {
		return p.actor()
	}
	return "admin"
}

func tokenHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// who authenticates a request: the admin credential or a developer token.
func (s *Server) who(r *http.Request) (principal, bool) {
	if s.authorize(r) {
		return principal{admin: true, name: rootAdmin}, true
	}
	tok := bearer(r)
	if len(tok) < api.MinCredentialLen {
		return principal{}, false
	}
	if strings.HasPrefix(tok, adminPrefix) && len(tok) <= 128 {
		if a, ok := s.adminByToken(r.Context(), tok); ok {
			return principal{admin: true, name: a.Name}, true
		}
		return principal{}, false
	}
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) > 128 {
		return principal{}, false
	}
	var rec TokenRecord
	err := s.store.View(r.Context(), func(tx store.Tx) error { return store.GetJSON(tx, bucketToken, tokenHash(tok), &rec) })
	if err != nil {
		return principal{}, false
	}
	return principal{token: &rec}, true
}

// inScope reports whether cal is the token's parent or a descendant of it.
func (s *Server) inScope(ctx context.Context, p principal, cal string) bool {
	if p.admin {
		return true
	}
	for cur, n := cal, 0; n <= trust.MaxChainDepth+1; n++ {
		if cur == p.token.Parent {
			return true
		}
		rec, err := s.getCal(ctx, cur)
		if err != nil || rec.Parent == trust.GenesisParent {
			return false
		}
		cur = rec.Parent
	}
	return false
}

func (s *Server) handleTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name        string   `json:"name"`
		Parent      string   `json:"parent"`
		Permissions []string `json:"permissions"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if len(req.Name) > maxNameLen {
		writeError(w, apiErr(400, "name: over the limit of %d characters", maxNameLen))
		return
	}
	perms, err := trust.ParsePermissions(req.Permissions)
	if err != nil {
		writeError(w, apiErr(400, "permissions: %v", err))
		return
	}
	if req.Parent == "" {
		req.Parent = s.net.Info.Master.String()
	}
	parent, aerr := s.resolve(r.Context(), req.Parent)
	if aerr != nil {
		aerr.Msg = "parent: " + aerr.Msg
		writeError(w, aerr)
		return
	}
	held, _ := trust.ParsePermissions(parent.Permissions)
	if extra := perms.Minus(held); extra != 0 {
		writeError(w, apiErr(403, "permissions: %s not held by cal %s", extra, parent.ID))
		return
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	secret := tokenPrefix + hex.EncodeToString(raw)
	rec := TokenRecord{ID: newID("tok_"), Name: req.Name, Parent: parent.ID, Permissions: perms.Names(), CreatedAt: s.now(), CreatedBy: actorOf(r)}
	if err := s.store.Update(r.Context(), func(tx store.Tx) error { return store.PutJSON(tx, bucketToken, tokenHash(secret), rec) }); err != nil {
		writeError(w, err)
		return
	}
	s.bus.publish(Event{Type: "token.created", Cal: parent.ID, Actor: actorOf(r), Reason: rec.ID})
	writeJSON(w, 201, map[string]any{"token": secret, "record": rec})
}

func (s *Server) listTokens(ctx context.Context) ([]TokenRecord, error) {
	out := []TokenRecord{}
	err := s.store.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(bucketToken, "", func(_ string, v []byte) error {
			var t TokenRecord
			if err := jsonUnmarshal(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

func (s *Server) handleTokenDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	found := false
	err := s.store.Update(r.Context(), func(tx store.Tx) error {
		var key string
		err := tx.ForEach(bucketToken, "", func(k string, v []byte) error {
			var t TokenRecord
			if jsonUnmarshal(v, &t) == nil && t.ID == id {
				key = k
			}
			return nil
		})
		if err != nil {
			return err
		}
		if key == "" {
			return nil
		}
		found = true
		return tx.Delete(bucketToken, key)
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if !found {
		writeError(w, apiErr(404, "no token %s", id))
		return
	}
	writeJSON(w, 200, map[string]string{"deleted": id})
}
