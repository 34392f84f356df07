package calrt

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	httppprof "net/http/pprof"
	"strconv"
	"time"

	"filippo.io/age"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/trust"
)

// Limits on what the Cal reads.
const (
	// maxBody bounds every request body the Cal accepts.
	maxBody = 1 << 20
	// maxAnswer bounds an answer of the control plane and the files it
	// wrote into the Cal's directory (network.json).
	maxAnswer = 1 << 20
	// maxTemplateJSON bounds the Cal's template (its JSON form).
	maxTemplateJSON = 256 << 10
)

// writeJSON is the one writer of the Cal API's JSON answers. v is
// encoded before the status is sent, so a value that does not encode (a
// bug) answers 500 rather than a success with half a body. A write that
// fails means the client has gone: there is nobody left to tell.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // the client has gone; see above
}

func writeErr(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeErr(w, http.StatusRequestEntityTooLarge, "body: over the limit of %d bytes", maxBody)
		return false
	}
	if err := strictjson.Unmarshal(b, maxBody, v); err != nil {
		writeErr(w, http.StatusBadRequest, "body: %v", err)
		return false
	}
	return true
}

type selfView struct {
	ID          string   `json:"id"`
	Network     string   `json:"network"`
	Depth       int      `json:"depth"`
	Parent      string   `json:"parent"`
	Permissions []string `json:"permissions"`
}

func (rt *Runtime) self() selfView {
	leaf := rt.chain.Leaf()
	parent := trust.GenesisParent
	if !leaf.IsGenesis() {
		parent = leaf.Parent().String()
	}
	return selfView{ID: rt.ID().String(), Network: rt.network.String(), Depth: leaf.Depth(), Parent: parent, Permissions: leaf.Permissions().Names()}
}

// apiHandler is the Cal's own API, over mutual TLS, for the control
// plane alone; every route is in the authorization table (package authz).
func (rt *Runtime) apiHandler() http.Handler {
	mux := authz.NewMux(authz.CalServe, rt.serveGuard)
	mux.HandleFunc("GET "+calproto.PathSelf, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, rt.self()) })
	mux.HandleFunc("GET "+calproto.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /metrics", rt.metrics)
	mux.HandleFunc("POST "+calproto.PathBless, rt.bless)
	mux.HandleFunc("GET "+calproto.PathTiers, rt.handleTiers)
	mux.HandleFunc("GET "+calproto.PathReflections, rt.readReflections)
	mux.HandleFunc("POST "+calproto.PathReflections, rt.appendReflection)
	mux.HandleFunc("POST "+calproto.PathShare, rt.share)
	mux.HandleFunc("POST "+calproto.PathInbox, rt.inbox)
	mux.HandleFunc("POST "+calproto.PathSignRevocation, rt.signRevocation)
	// Profiles of this Cal's process, for the operator (through the
	// control plane, which alone reaches this API).
	mux.HandleFunc("GET "+calproto.PathPprof+"profile", httppprof.Profile)
	mux.HandleFunc("GET "+calproto.PathPprof+"{name}", func(w http.ResponseWriter, r *http.Request) {
		httppprof.Handler(r.PathValue("name")).ServeHTTP(w, r)
	})
	return mux.Handler()
}

// bless is the Cal's SpawnController: it makes the child's identity,
// seals its key to the child's sandbox recipient and signs the child's
// blessing with this Cal's key. Issue refuses anything this Cal may not
// grant.
func (rt *Runtime) bless(w http.ResponseWriter, r *http.Request) {
	var req calproto.BlessRequest
	if !decode(w, r, &req) {
		return
	}
	perms, err := trust.ParsePermissions(req.Permissions)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "permissions: %v", err)
		return
	}
	rcp, err := age.ParseHybridRecipient(req.Recipient)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "recipient: %v", err)
		return
	}
	child, err := identity.Generate(nil)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "generate key: %v", err)
		return
	}
	b, err := trust.Issue(rt.key, trust.Grant{
		Network: rt.network, Parent: rt.chain.Leaf(), ChildKey: child.Public(), Serial: req.Serial,
		Permissions: perms, Constraints: req.Constraints, IssuedAt: time.Now(),
	})
	if err != nil {
		writeErr(w, http.StatusForbidden, "%v", err)
		return
	}
	chain, err := trust.Extend(rt.chain, b, rt.key)
	if err != nil {
		writeErr(w, http.StatusForbidden, "%v", err)
		return
	}
	sealed, err := identity.Seal(child, rcp)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "seal key: %v", err)
		return
	}
	bj, _ := b.MarshalJSON()
	cj, _ := chain.MarshalJSON()
	rt.log.Info("blessed a child", "child", b.Child().String(), "permissions", perms.String())
	writeJSON(w, 200, calproto.BlessReply{Blessing: bj, Chain: cj, SealedKey: sealed})
}

// signRevocation signs the revocation of a descendant that one of this
// Cal's rules retires, or that a developer token bound to this Cal
// revokes. The Cal signs only as itself: the control plane applies the
// revocation only if this Cal holds revoke and is an ancestor of the
// target (trust.RevocationSet.Check), as for one its workload asks.
func (rt *Runtime) signRevocation(w http.ResponseWriter, r *http.Request) {
	var req calproto.SignRevocationRequest
	if !decode(w, r, &req) {
		return
	}
	target, err := identity.ParseID(req.Target)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "target: %v", err)
		return
	}
	if !rt.chain.Leaf().Permissions().Has(trust.PermRevoke) {
		writeErr(w, http.StatusForbidden, "cal %s does not hold revoke", rt.ID())
		return
	}
	rev, err := trust.Revoke(rt.key, trust.RevokeRequest{Network: rt.network, Target: target, Reason: req.Reason, IssuedAt: time.Now()})
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	rj, _ := rev.MarshalJSON()
	rt.log.Info("signed a retirement", "target", target.String(), "reason", req.Reason)
	writeJSON(w, 200, calproto.RevokeRequest{Revocation: rj})
}

// localHandler is the API on /data/local.sock for the Cal's own use and
// its workload's: who am I, spawn a child, list children, revoke a
// descendant. The socket is 0600, owned by the Cal's uid.
func (rt *Runtime) localHandler() http.Handler {
	mux := authz.NewMux(authz.Local, rt.localGuard)
	mux.HandleFunc("GET /v1/self", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, rt.self()) })
	mux.HandleFunc("POST /v1/children", func(w http.ResponseWriter, r *http.Request) {
		var req calproto.SpawnRequest
		if !decode(w, r, &req) {
			return
		}
		var out json.RawMessage
		rt.forward(w, r, http.StatusAccepted, http.MethodPost, calproto.PathSpawnRequest, req, &out)
	})
	mux.HandleFunc("GET /v1/reflections", rt.readReflections)
	mux.HandleFunc("POST /v1/reflections", rt.appendReflection)
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		var g map[string]float64
		if !decode(w, r, &g) {
			return
		}
		var out json.RawMessage
		rt.forward(w, r, http.StatusOK, http.MethodPost, calproto.PathGauges, g, &out)
	})
	mux.HandleFunc("GET /v1/children", func(w http.ResponseWriter, r *http.Request) {
		var out json.RawMessage
		rt.forward(w, r, http.StatusOK, http.MethodGet, calproto.PathChildren, nil, &out)
	})
	mux.HandleFunc("DELETE /v1/children/{id}", func(w http.ResponseWriter, r *http.Request) {
		target, err := identity.ParseID(r.PathValue("id"))
		if err != nil {
			writeErr(w, http.StatusBadRequest, "id: %v", err)
			return
		}
		rev, err := trust.Revoke(rt.key, trust.RevokeRequest{Network: rt.network, Target: target, Reason: r.URL.Query().Get("reason"), IssuedAt: time.Now()})
		if err != nil {
			writeErr(w, http.StatusBadRequest, "%v", err)
			return
		}
		rj, _ := rev.MarshalJSON()
		var out json.RawMessage
		rt.forward(w, r, http.StatusOK, http.MethodPost, calproto.PathRevoke, calproto.RevokeRequest{Revocation: rj}, &out)
	})
	return mux.Handler()
}

// forward calls the control plane and relays its answer.
func (rt *Runtime) forward(w http.ResponseWriter, r *http.Request, status int, method, path string, in any, out *json.RawMessage) {
	if err := rt.call(r.Context(), method, path, in, out); err != nil {
		if ce, ok := err.(*CPError); ok {
			if ce.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(ce.RetryAfter/time.Second)))
			}
			writeErr(w, ce.Status, "%s", ce.Msg)
			return
		}
		writeErr(w, http.StatusBadGateway, "%v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(*out)
}

func nowUTC() time.Time { return time.Now().UTC() }

func (rt *Runtime) handleTiers(w http.ResponseWriter, _ *http.Request) {
	tiers, degraded := rt.tiers.snapshot()
	writeJSON(w, 200, map[string]any{"tiers": tiers, "degraded": degraded})
}
