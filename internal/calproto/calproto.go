// Package calproto defines the messages between a Cal and the control
// plane, and between the control plane and a Cal's SpawnController. Both
// directions run over mutual TLS (see caltls) on unix sockets: the control
// plane's at /run/calnet/cal.sock inside each sandbox, each Cal's api.sock
// bound by the control plane in the Cal's host directory (see caldir) and
// passed to the Cal as a descriptor.
package calproto

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"github.com/soulfra/calnet/api"

	"github.com/soulfra/calnet/trust"
)

// Paths of the control plane's Cal-facing API.
const (
	PathChallenge    = "/cal/v1/challenge"
	PathRegister     = "/cal/v1/register"
	PathWatch        = "/cal/v1/watch"
	PathSpawnRequest = "/cal/v1/spawn"
	PathRevoke       = "/cal/v1/revoke"
	PathChildren     = "/cal/v1/children"
	PathStatus       = "/cal/v1/status"
	PathGauges       = "/cal/v1/gauges"
	// PathSVID issues an X.509-SVID: the Cal's own, or its workload's.
	PathSVID = "/cal/v1/svid"
)

// Paths of a Cal's own API.
const (
	PathBless       = "/v1/spawn-controller/bless"
	PathSelf        = "/v1/self"
	PathHealth      = "/v1/health"
	PathReflections = "/v1/reflections"
	PathTiers       = "/v1/tiers"
	PathShare       = "/v1/reflections/share"
	PathInbox       = "/v1/reflections/inbox"
	// PathSignRevocation asks the Cal to sign the revocation of a
	// descendant: one of its rules retires it, or a developer token bound
	// to the Cal revokes it. Either is the Cal's own revocation.
	PathSignRevocation = "/v1/revocations/sign"
	// PathPprof prefixes the Cal's runtime profiles (heap, goroutine, allocs, block, mutex, threadcreate; profile is CPU).
	PathPprof = "/debug/pprof/"
)

// Files inside a Cal's sandbox (/data).
const (
	NetworkFile  = "network.json"
	TemplateFile = "template.json"
	// LocalSocket is the local API of the Cal and its workload; nothing
	// outside the Cal dials it.
	LocalSocket = "local.sock"
)

// The Cal's sockets that the control plane and the router dial. The
// control plane binds them in the Cal's host directory, where the Cal
// cannot write (caldir.Host.Bind), and passes them to the Cal, which
// listens on them; the names are also their keys in the sandbox config.
const (
	APISocket     = "api.sock"
	GatewaySocket = "gateway.sock"
	// GatewayHandoffSocket takes client connections the router hands
	// over (router.ListenHandoff); only the control plane may connect.
	GatewayHandoffSocket = "gateway.handoff.sock"
	ConsoleSocket        = "console.sock"
)

// ControlSock is the control plane's Cal API, /run/calnet/cal.sock inside.
const ControlSock = "cal.sock"

// NetworkInfo is the public network description written into every sandbox.
type NetworkInfo struct {
	Network  string          `json:"network"`
	RootKeys json.RawMessage `json:"root_keys"`
}

// Challenge is a fresh nonce for one activation.
type Challenge struct {
	Challenge []byte `json:"challenge"`
}

// Register is sent by a Cal once it serves its API. It activates the Cal
// by proving possession of both halves of its identity key for the
// control plane's challenge: a zero-knowledge Schnorr proof for the
// Ed25519 half and a hybrid signature (purpose calnet-activation-v1).
type Register struct {
	PID int `json:"pid"`
	// Degraded says why the platform is not whole, if it is not.
	Degraded   string          `json:"degraded,omitempty"`
	Challenge  []byte          `json:"challenge"`
	Possession json.RawMessage `json:"possession"`
	Signature  json.RawMessage `json:"signature"`
}

// RegisterReply acknowledges a registration.
type RegisterReply struct {
	Revoked bool `json:"revoked"`
	// Namespace is the Cal's namespace in the Infinity Router and DNS.
	Namespace string `json:"namespace,omitempty"`
	// RouterURL is where the namespace is served, e.g.
	// http://127.0.0.1:7080/<namespace>/.
	RouterURL string `json:"router_url,omitempty"`
	// Domain is the DNS zone of the network ("calnet."): the gateway
	// refuses (421) a request whose Host names another namespace of it.
	Domain string `json:"domain,omitempty"`
}

// Event is pushed to Cals on the watch stream.
type Event struct {
	Type string `json:"type"` // EventRevoked, EventRegister, "child-failed" (keepalives are SSE comments)
	Cal  string `json:"cal,omitempty"`
}

// Event types a Cal acts on.
const (
	// EventRevoked tells a Cal of its revocation: it stops.
	EventRevoked = "revoked"
	// EventRegister asks a Cal to register (activate) again: the control
	// plane restarted and adopted it, and has not seen it prove its key.
	EventRegister = "register"
)

// BlessRequest asks a parent's SpawnController to create and bless a child.
type BlessRequest struct {
	Serial      int               `json:"serial"`
	Permissions []string          `json:"permissions"`
	Constraints trust.Constraints `json:"constraints"`
	// Recipient is the age recipient of the child's sandbox; the new
	// private key is sealed to it and never seen in clear by anyone else.
	Recipient string `json:"recipient"`
}

// BlessReply carries the child's credentials.
type BlessReply struct {
	Blessing  json.RawMessage `json:"blessing"`
	Chain     json.RawMessage `json:"chain"`
	SealedKey []byte          `json:"sealed_key"`
}

// SpawnRequest is a Cal asking for a child of its own (its local API's
// spawn). The control plane runs the same pipeline as for an operator's
// request, and calls back this Cal's SpawnController to sign.
type SpawnRequest struct {
	Name           string   `json:"name,omitempty"`
	Permissions    []string `json:"permissions"`
	CPUMillis      int64    `json:"cpu_millis,omitempty"`
	MemoryBytes    int64    `json:"memory_bytes,omitempty"`
	DiskBytes      int64    `json:"disk_bytes,omitempty"`
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
}

// SignRevocationRequest asks a Cal to sign the revocation of Target (a
// descendant); the answer is a RevokeRequest with the revocation.
type SignRevocationRequest struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// RevokeRequest is a Cal revoking a descendant: the revocation it signed.
type RevokeRequest struct {
	Revocation json.RawMessage `json:"revocation"`
}

// Reflect is a reflection to append.
type Reflect struct {
	Kind string          `json:"kind"`
	Text string          `json:"text"`
	Data json.RawMessage `json:"data,omitempty"`
}

// ShareRequest asks a Cal to share entries with another Cal: the control
// plane supplies the receiver's age recipient.
type ShareRequest struct {
	Seqs      []uint64 `json:"seqs"`
	To        string   `json:"to"`
	Recipient string   `json:"recipient"`
}

// ShareReply carries the encrypted, signed bundle.
type ShareReply struct {
	Bundle []byte `json:"bundle"`
}

// Inbox delivers a shared bundle to its receiver, with the sharer's soul
// chain so the receiver can verify the sharer itself.
type Inbox struct {
	Bundle      []byte          `json:"bundle"`
	SharerChain json.RawMessage `json:"sharer_chain"`
}

// Card is a Cal's address card; the QR namespace code encodes its JSON.
type Card = api.Card

// Fingerprint is "SHA256:" and the base64 SHA-256 of a Cal's two public
// key halves, in the style of SSH fingerprints.
func Fingerprint(ed, ml []byte) string {
	h := sha256.New()
	h.Write(ed)
	h.Write(ml)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}

// Status is a Cal's report of a change in its platform's health.
type Status struct {
	Degraded string `json:"degraded,omitempty"`
}

// SVIDRequest asks the network's authority for an X.509-SVID. Without a
// CSR it certifies the Cal's identity key (the mutual TLS handshake
// proved the Cal holds it) as spiffe://<network>/cal/<id>; with one, the
// CSR's key as the Cal's workload, spiffe://<network>/cal/<id>/workload.
type SVIDRequest struct {
	// CSR is a PKCS #10 request (DER), signed by the workload's key.
	CSR []byte `json:"csr,omitempty"`
}

// SVIDReply is an issued SVID and the network's trust bundle.
type SVIDReply struct {
	SPIFFEID string `json:"spiffe_id"`
	// Chain is the leaf, then its issuing CA (DER).
	Chain [][]byte `json:"chain"`
	// Bundle is the network's X.509 authorities (DER).
	Bundle [][]byte `json:"bundle"`
}
