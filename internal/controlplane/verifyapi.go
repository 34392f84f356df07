package controlplane

import (
	"errors"
	"net/http"

	"github.com/soulfra/calnet/trust"
)

// linkView is one link of a chain as the trust chain validator shows it.
type linkView struct {
	Link        int      `json:"link"`
	Parent      string   `json:"parent"`
	Cal         string   `json:"cal"`
	Permissions []string `json:"permissions"`
	Status      string   `json:"status"` // ok, failed, unchecked
}

// handleVerify is the trust chain validator (UX-4.4): it verifies a pasted
// soul chain against this network's root keys and revocations, now, and
// explains it link by link.
func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Chain string `json:"chain"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	out := map[string]any{"valid": false, "links": []linkView{}}
	chain, err := trust.ParseChain([]byte(req.Chain))
	var ce *trust.ChainError
	if err == nil {
		s.trustMu.RLock()
		_, err = s.net.Verifier().Verify(chain, s.now(), s.state)
		s.trustMu.RUnlock()
	}
	failed := -1
	if errors.As(err, &ce) {
		out["error"], failed = ce, ce.Link
	} else if err != nil {
		writeError(w, apiErr(400, "chain: %v", err))
		return
	} else {
		out["valid"] = true
		out["cal"] = chain.Leaf().Child().String()
	}
	if chain != nil {
		var links []linkView
		for i, b := range chain.Blessings {
			parent := trust.GenesisParent
			if !b.IsGenesis() {
				parent = b.Parent().String()
			}
			st := "ok"
			if failed >= 0 && i == failed {
				st = "failed"
			} else if failed >= 0 && i > failed {
				st = "unchecked"
			}
			links = append(links, linkView{Link: i, Parent: parent, Cal: b.Child().String(), Permissions: b.Permissions().Names(), Status: st})
		}
		out["links"] = links
	}
	writeJSON(w, 200, out)
}
