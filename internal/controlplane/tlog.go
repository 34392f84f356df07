package controlplane

import (
	"net"
	"net/http"

	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/connlimit"
	"github.com/soulfra/calnet/ledger/tiles"
)

// The ledger is public: anyone may audit it as a C2SP tlog-tiles log at
// /ledger/ on the operator API (and on --ledger-addr if set), with no
// credential. Every entry (blessings, revocations, spawns, policy
// changes) is already a public trust record; nothing secret is written to
// the ledger.

// ledgerPrefix is where the log is served: the log's URL is
// http://<addr>/ledger.
const ledgerPrefix = "/ledger"

var ledgerConns = connlimit.Limits{Total: 2048, PerClient: 128}

func (s *Server) newTiles() *tiles.Handler {
	return tiles.NewHandler(tiles.Config{Source: s.lg, Checkpoint: s.servedCheckpoint, Logger: s.log})
}

// servedCheckpoint is the note served at /ledger/checkpoint: the latest
// checkpoint, with the witnesses' cosignatures when they cosigned it.
func (s *Server) servedCheckpoint() []byte {
	if len(s.cfg.Witnesses) > 0 {
		if p := s.cosigned.Load(); p != nil {
			return *p
		}
	}
	return s.lg.Checkpoint().Note
}

// handleLedgerRoutes registers the tlog-tiles routes on m.
func (s *Server) handleLedgerRoutes(m *authz.Mux) {
	h := http.StripPrefix(ledgerPrefix, s.tiles)
	m.Handle("GET "+ledgerPrefix+"/checkpoint", h)
	m.Handle("GET "+ledgerPrefix+"/tile/", h)
}

// ledgerServer returns the server of the log alone, on its own listener.
func (s *Server) ledgerServer(ln net.Listener) (*http.Server, net.Listener) {
	m := authz.NewMux(authz.Ledger, authz.Public)
	s.handleLedgerRoutes(m)
	l := s.limitListener(ln, "ledger", ledgerConns, true)
	return &http.Server{Handler: m.Handler(), ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout, ConnState: l.ConnState}, l
}
