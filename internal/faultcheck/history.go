// Package faultcheck checks a calnet network after a randomized fault
// run: a workload of spawns and revocations through the real API while
// the control plane is killed, stopped and restarted, then a checker that
// trusts no single witness. It reads the host itself (the Cals' processes
// in /proc, sampled all along), every server's registry through its API,
// and every server's ledger on disk, against the History the workload
// recorded, and reports each violation of:
//
//   - every acknowledged operation is present (an acknowledged spawn's
//     record on every server, its Cal blessed in every ledger once it ran;
//     an acknowledged revocation in every ledger and registry);
//   - no Cal ever runs twice (two live processes with the same Cal ID at
//     one sampled instant);
//   - a revoked Cal never runs again (no process of it, or of its
//     subtree, starts after the ledger records the revocation, and none
//     runs at the end);
//   - every ledger verifies, and each checkpoint seen during the run is
//     consistent with each ledger's final state (so all servers' ledgers
//     are consistent with each other).
//
// One server today, three (in three network namespaces, package netlab)
// once the control plane is replicated: a Server is one control plane as
// the checker sees it, and the checks run over all of them.
package faultcheck

import (
	"sync"
	"time"
)

// Op kinds.
const (
	OpSpawn  = "spawn"
	OpRevoke = "revoke"
)

// Op is one operation of the workload as its client saw it.
type Op struct {
	Kind string
	// Key is the spawn's idempotency key.
	Key string
	// Target is the Cal a revocation is for, or a spawn's parent.
	Target string
	// Start and End bound the call (End is zero while it runs).
	Start, End time.Time
	// Acked: the API answered success. A call that failed or timed out
	// may or may not have happened; only acknowledged ones must be present.
	Acked bool
	// Spawn and Cal are what an acknowledged spawn's answer named (Cal is
	// empty when it answered before the Cal was made).
	Spawn, Cal string
	// State is the spawn's state in its answer.
	State string
	// Err is the failure of an unacknowledged call.
	Err string
}

// History records the workload's operations. Its methods are safe for
// concurrent use.
type History struct {
	mu  sync.Mutex
	ops []*Op
	now func() time.Time
}

// NewHistory returns an empty history; now is its clock (nil: time.Now).
func NewHistory(now func() time.Time) *History {
	if now == nil {
		now = time.Now
	}
	return &History{now: now}
}

// Begin records the start of an operation and returns its index, for End.
func (h *History) Begin(kind, target, key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, &Op{Kind: kind, Target: target, Key: key, Start: h.now()})
	return len(h.ops) - 1
}

// Ack records that operation i was acknowledged, with what the answer
// named (spawn ID, Cal ID and spawn state for a spawn).
func (h *History) Ack(i int, spawn, cal, state string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	op := h.ops[i]
	op.End, op.Acked, op.Spawn, op.Cal, op.State = h.now(), true, spawn, cal, state
}

// Fail records that operation i was not acknowledged.
func (h *History) Fail(i int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	op := h.ops[i]
	op.End, op.Err = h.now(), err.Error()
}

// Ops returns a copy of the operations so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Op, len(h.ops))
	for i, op := range h.ops {
		out[i] = *op
	}
	return out
}
