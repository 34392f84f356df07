package controlplane

import (
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/soulfra/calnet/internal/connlimit"
)

// Timeouts of every server of the control plane (the API, the router, the
// Cals' mTLS API): a client has headerTimeout to send a request's headers,
// bodyTimeout to send its body (readJSON), and a kept-alive connection
// waiting for its next request closes after idleTimeout.
const (
	headerTimeout = 10 * time.Second
	bodyTimeout   = 30 * time.Second
	idleTimeout   = 60 * time.Second
)

// Connection limits of the control plane's listeners. Every listener also
// draws on one budget: the file descriptors left once fdReserve is set
// aside, so that accept() can never starve the rest of the process (the
// ledger, the store, the Cals' pipes and logs) of descriptors.
var (
	apiConns    = connlimit.Limits{Total: 4096, PerClient: 1024}
	routerConns = connlimit.Limits{Total: 8192, PerClient: 256}
	calConns    = connlimit.Limits{Total: 4096, PerClient: 128} // per Cal uid
	dnsConns    = connlimit.Limits{Total: 256, PerClient: 32}
)

// fdReserve is the descriptors kept out of the connection budget: a
// quarter of the limit, at least minFDReserve.
func fdReserve(limit uint64) uint64 { return max(limit/4, minFDReserve) }

const minFDReserve = 1024

// raiseNoFile raises RLIMIT_NOFILE's soft limit to its hard limit and
// returns the connection budget it leaves.
func raiseNoFile() (limit uint64, budget int, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	reserve := fdReserve(lim.Cur)
	if lim.Cur <= reserve+64 {
		return lim.Cur, 64, nil // a tiny limit: still serve a few
	}
	return lim.Cur, int(lim.Cur - reserve), nil
}

// limitListener bounds ln's connections against the process's budget.
func (s *Server) limitListener(ln net.Listener, name string, lim connlimit.Limits, http bool) *connlimit.Listener {
	return connlimit.New(ln, connlimit.Config{Limits: lim, Budget: s.connBudget, HTTP: http, Name: name, Logger: s.log})
}
