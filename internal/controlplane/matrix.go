package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/trust"
)

// The permission matrix of a subtree (UX-2.2): for every live Cal, the
// permissions it holds (fixed by its signed blessing: a delegation is only
// ever narrowed by a new one), how often it used each, and the permissions
// it may grant to new children, which administrators edit. The spawn
// engine refuses a child asking for a permission its parent may not
// grant, after the blessing's own attenuation check.

const (
	bucketGrants = "grants"
	maxMatrix    = 5000 // rows of one matrix
)

// grantable returns what cal may grant (nil: whatever it holds).
func (s *Server) grantable(cal string) []string {
	s.grantMu.RLock()
	defer s.grantMu.RUnlock()
	return s.grants[cal]
}

func (s *Server) loadGrants(ctx context.Context) error {
	g := map[string][]string{}
	err := s.store.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(bucketGrants, "", func(k string, _ []byte) error {
			var perms []string
			if store.GetJSON(tx, bucketGrants, k, &perms) == nil {
				g[k] = perms
			}
			return nil
		})
	})
	s.grantMu.Lock()
	s.grants = g
	s.grantMu.Unlock()
	return err
}

// checkGrant refuses permissions a parent may not grant (the matrix).
func (s *Server) checkGrant(parent string, perms trust.Permissions) *APIError {
	g := s.grantable(parent)
	if g == nil {
		return nil
	}
	allowed, _ := trust.ParsePermissions(g)
	if extra := perms.Minus(allowed); extra != 0 {
		return apiErr(403, "permissions: %s may not be granted by cal %s (permission matrix: it may grant %s)", extra, parent, orNone(g))
	}
	return nil
}

func orNone(p []string) string {
	if len(p) == 0 {
		return "none"
	}
	return strings.Join(p, ",")
}

// matrix builds the matrix of the subtree rooted at root.
func (s *Server) matrix(ctx context.Context, root *CalRecord) (*api.PermissionMatrix, error) {
	recs, err := s.listCals(ctx)
	if err != nil {
		return nil, err
	}
	m := &api.PermissionMatrix{Root: root.ID, Permissions: trust.AllPermissions.Names(), Rows: []api.MatrixRow{}}
	for _, c := range subtreeOf(recs, root.ID) {
		row := api.MatrixRow{Cal: c.ID, Name: c.Name, Parent: c.Parent, Depth: c.Depth, Held: c.Permissions, Used: s.usesOf(c)}
		if g := s.grantable(c.ID); g != nil {
			row.Grantable = slices.Clone(g)
		}
		m.Rows = append(m.Rows, row)
	}
	return m, nil
}

func (s *Server) handleMatrixGet(w http.ResponseWriter, r *http.Request, pr principal) {
	root, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	m, err := s.matrix(r.Context(), root)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, m)
}

// handleMatrixPut sets what Cals of the subtree may grant. Every row is
// checked before anything is stored: a Cal in the subtree, grantable a
// subset of what it holds; a row with grantable null lifts the limit.
func (s *Server) handleMatrixPut(w http.ResponseWriter, r *http.Request, pr principal) {
	ctx := r.Context()
	root, aerr := s.resolveScoped(ctx, pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var doc api.MatrixUpdate
	if !readJSON(w, r, &doc) {
		return
	}
	if len(doc.Rows) > maxMatrix {
		writeError(w, apiErr(400, "rows: %d, over the limit of %d", len(doc.Rows), maxMatrix))
		return
	}
	recs, err := s.listCals(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	in := map[string]*CalRecord{}
	for _, c := range subtreeOf(recs, root.ID) {
		in[c.ID] = c
	}
	seen := map[string]bool{}
	for i, row := range doc.Rows {
		field := fmt.Sprintf("rows[%d]", i)
		c := in[row.Cal]
		if c == nil {
			writeError(w, apiErr(400, "%s.cal: %q is not a live Cal of the subtree of %s", field, row.Cal, root.ID))
			return
		}
		if seen[c.ID] {
			writeError(w, apiErr(400, "%s.cal: %s appears twice", field, c.ID))
			return
		}
		seen[c.ID] = true
		if row.Grantable == nil {
			continue
		}
		g, err := trust.ParsePermissions(row.Grantable)
		if err != nil {
			writeError(w, apiErr(400, "%s.grantable: %v", field, err))
			return
		}
		held, _ := trust.ParsePermissions(c.Permissions)
		if extra := g.Minus(held); extra != 0 {
			writeError(w, apiErr(400, "%s.grantable: %s is not held by cal %s (it holds %s): a Cal grants only what it holds", field, extra, c.ID, orNone(c.Permissions)))
			return
		}
		doc.Rows[i].Grantable = append([]string{}, g.Names()...) // empty, not nil: grants nothing
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		for _, row := range doc.Rows {
			if row.Grantable == nil {
				if err := tx.Delete(bucketGrants, row.Cal); err != nil {
					return err
				}
				continue
			}
			if err := store.PutJSON(tx, bucketGrants, row.Cal, row.Grantable); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	s.grantMu.Lock()
	if s.grants == nil {
		s.grants = map[string][]string{}
	}
	for _, row := range doc.Rows {
		if row.Grantable == nil {
			delete(s.grants, row.Cal)
		} else {
			s.grants[row.Cal] = row.Grantable
		}
	}
	s.grantMu.Unlock()
	s.bus.publish(Event{Type: "matrix.changed", Cal: root.ID, Actor: pr.actor(), Reason: fmt.Sprintf("%d rows", len(doc.Rows))})
	m, err := s.matrix(ctx, root)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, m)
}
