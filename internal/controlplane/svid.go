package controlplane

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/spiffeca"
)

// handleSVID issues a Cal an X.509-SVID: its own (for its identity key,
// which the mutual TLS handshake proved it holds) or its workload's (for
// the key of the CSR it sends). A Cal that is out of the network (it or
// an ancestor revoked) gets none.
func (s *Server) handleSVID(w http.ResponseWriter, r *http.Request, id identity.ID) {
	var req calproto.SVIDRequest
	if !readJSON(w, r, &req) {
		return
	}
	s.trustMu.RLock()
	b := s.state.Blessings[id]
	by, revoked := s.state.RevokedThrough(id)
	s.trustMu.RUnlock()
	if revoked {
		writeError(w, apiErr(403, "cal %s is revoked (through %s): no SVID", id, by))
		return
	}
	if b == nil {
		writeError(w, apiErr(401, "unknown cal %s", id))
		return
	}
	d := b.Digest()
	ir := spiffeca.Request{Cal: id, Key: ed25519.PublicKey(identityEd(b)), BlessingDigest: d[:]}
	if req.CSR != nil {
		pub, err := spiffeca.ParseCSR(req.CSR)
		if err != nil {
			writeError(w, apiErr(400, "csr: %v", err))
			return
		}
		ir.Key, ir.Workload = pub, true
	}
	start := time.Now()
	svid, err := s.ca.Issue(ir)
	if err != nil {
		writeError(w, apiErr(500, "issue svid: %v", err))
		return
	}
	s.log.Debug("svid issued", "spiffe_id", svid.ID.String(), "expires", svid.Leaf().NotAfter, "took", time.Since(start))
	writeJSON(w, 200, calproto.SVIDReply{SPIFFEID: svid.ID.String(), Chain: svid.Raw(), Bundle: [][]byte{s.ca.Root().Raw}})
}

// spiffeBundle is the network's SPIFFE bundle (the JWKS document of the
// SPIFFE Trust Domain and Bundle specification).
func (s *Server) spiffeBundle() *spiffebundle.Bundle {
	b := spiffebundle.New(s.ca.TrustDomain())
	b.SetX509Authorities(s.ca.Bundle().X509Authorities())
	b.SetRefreshHint(s.ca.TTL() / 2)
	b.SetSequenceNumber(1)
	return b
}

// handleSPIFFEBundle serves the network's SPIFFE bundle, as a SPIFFE
// bundle endpoint serves it (anyone may read it: it is public keys).
func (s *Server) handleSPIFFEBundle(w http.ResponseWriter, _ *http.Request) {
	out, err := s.spiffeBundle().Marshal()
	if err != nil {
		writeError(w, apiErr(500, "bundle: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// handleSPIFFEVerify verifies an X.509-SVID chain (base64 DER, leaf
// first) against the network's bundle and its revocations, now: what a
// peer that consults the network asks before it trusts an SVID.
func (s *Server) handleSPIFFEVerify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Chain []string `json:"chain"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if len(req.Chain) == 0 || len(req.Chain) > spiffeca.MaxChain {
		writeError(w, apiErr(400, "chain: %d certificates, want 1..%d", len(req.Chain), spiffeca.MaxChain))
		return
	}
	raw := make([][]byte, len(req.Chain))
	for i, c := range req.Chain {
		b, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			writeError(w, apiErr(400, "chain[%d]: not base64: %v", i, err))
			return
		}
		raw[i] = b
	}
	writeJSON(w, 200, s.verifySVID(raw))
}

func (s *Server) verifySVID(raw [][]byte) api.SVIDVerdict {
	v, err := spiffeca.Verify(raw, s.ca.Bundle(), s.now(), func(id identity.ID) (identity.ID, bool) {
		s.trustMu.RLock()
		defer s.trustMu.RUnlock()
		if _, known := s.state.Blessings[id]; !known {
			return id, true // never blessed here: not in the network
		}
		return s.state.RevokedThrough(id)
	})
	if err != nil {
		return api.SVIDVerdict{Reason: string(spiffeca.ReasonOf(err)), Error: err.Error()}
	}
	return api.SVIDVerdict{Valid: true, SPIFFEID: v.ID.String(), Cal: v.Cal.String(), Workload: v.Workload}
}
