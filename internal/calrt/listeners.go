package calrt

import (
	"syscall"
	"time"

	"github.com/soulfra/calnet/internal/connlimit"
)

// Timeouts of the Cal's servers: a client has headerTimeout to send a
// request's headers (and, on the mTLS API, to finish the handshake), a
// connection idle for idleTimeout closes (the router's pinned connections
// end with it), and a console session idle for consoleIdle ends.
const (
	headerTimeout = 10 * time.Second
	idleTimeout   = 2 * time.Minute
	consoleIdle   = 30 * time.Minute
	// maxConsoleSessions bounds the console sessions open at once.
	maxConsoleSessions = 8
)

// Connection limits of the Cal's sockets; a client is a peer uid (or, for
// connections the router hands over, the remote IP).
var (
	// apiConns: the mTLS API (0666: any Cal may connect, only the control
	// plane gets past the handshake).
	apiConns = connlimit.Limits{Total: 256, PerClient: 64}
	// gatewayConns: tier 0, which the router (root) forwards to.
	gatewayConns = connlimit.Limits{Total: 2048, PerClient: 1024}
	// handoffConns: connections the router hands over, per client IP.
	handoffConns = connlimit.Limits{Total: 2048, PerClient: 256}
	// localConns: the local API (0600: the Cal and its workload).
	localConns = connlimit.Limits{Total: 256}
)

// newConnBudget is the descriptors the Cal's listeners may hold together:
// RLIMIT_NOFILE less a quarter (at least 256) for its own files, pipes and
// workload.
func newConnBudget() *connlimit.Budget {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == ^uint64(0) {
		return connlimit.NewBudget(0)
	}
	reserve := max(lim.Cur/4, 256)
	return connlimit.NewBudget(int(max(lim.Cur, reserve+64) - reserve))
}
