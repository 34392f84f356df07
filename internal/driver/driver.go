// Package driver defines how the supervisor runs Cals: a Driver starts an
// instance from a Spec, finds again the instances an earlier control plane
// started (Adopt), and an Instance can be waited on, stopped and inspected
// for the isolation it really has.
//
// A Cal outlives its control plane: a crash, restart or upgrade of the
// control plane leaves every Cal running, and the next control plane adopts
// them (as containerd adopts the containers its shims kept running) instead
// of starting them again.
package driver

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/soulfra/calnet/internal/sandbox"
)

// Limits are the limits of one Cal, from its blessing's quota.
type Limits struct {
	CPUMillis   int64 `json:"cpu_millis"`
	MemoryBytes int64 `json:"memory_bytes"`
	PIDs        int64 `json:"pids"`
	// DiskBytes bounds what the Cal stores in Dir (feature disk-quota).
	DiskBytes int64 `json:"disk_bytes"`
}

// Spec describes one Cal process to run.
type Spec struct {
	CalID string
	// Network is the network ID. Lineage lists the Cal's ancestors from the
	// Master down to its parent (empty for the Master). Drivers that keep
	// their records in a shared API (kubernetes) label each Cal with them,
	// so that a network's Cals and a subtree can be selected; the process
	// driver does not need them.
	Network string
	Lineage []string
	// Dir is the Cal's private writable directory on the host.
	Dir string
	// RunDir holds the control plane's socket, mounted read-only.
	RunDir string
	// ProgramsDir holds workload programs, mounted read-only at /opt/calnet.
	ProgramsDir string
	// RootMount is an empty directory the Cal cannot write, on which its
	// sandbox builds its new root (caldir.Host.RootMount).
	RootMount string
	// Sockets are unix sockets bound for the Cal where it cannot write
	// (caldir.Host.Bind), by name: the Cal's process inherits them and
	// listens on them. The caller keeps and closes its copies.
	Sockets map[string]*os.File
	// Binary and Args start the Cal runtime (`calnet cal`).
	Binary string
	Args   []string
	Env    []string
	UID    int
	GID    int
	// Features is the isolation to apply; a feature that the host cannot
	// provide makes Start fail, never silently downgrade.
	Features []sandbox.Feature
	Limits   Limits
	// StartCPUMillis, when above Limits.CPUMillis, is the CPU limit for the
	// first StartWindow of the process; then Limits.CPUMillis applies. A
	// Cal's start (the Go runtime and package init, its own chain check,
	// the activation proof) costs tens of milliseconds of CPU: under a
	// 100m limit the kernel runs it 10 ms per 100 ms period, so that each
	// 10 ms of start cost a period of waiting (healing took 10 times what
	// it took unthrottled).
	StartCPUMillis int64
	StartWindow    time.Duration
	// Secret is passed to the runtime in memory through the config pipe.
	Secret string
	// Log receives the Cal's stdout and stderr. The driver hands the Cal
	// this file itself, never a pipe the control plane reads, so the Cal's
	// output keeps reaching it while no control plane runs. Nil discards.
	Log *os.File
}

// Instance is one started Cal process.
type Instance interface {
	// PID is the host PID.
	PID() int
	// Wait blocks until the process exits and returns its exit error
	// (ErrExitUnknown for an adopted process, which is not the control
	// plane's child). It then removes what is left of the Cal on the host.
	Wait() error
	// Stop asks the process to exit (SIGTERM) and kills it after grace.
	Stop(ctx context.Context, grace time.Duration) error
	// Isolation measures, from outside the process, which features are in
	// force for it.
	Isolation() (map[sandbox.Feature]bool, error)
	// Usage reports the Cal's cumulative CPU time and current memory, from
	// its cgroups, and what it stores on disk.
	Usage() (Usage, error)
}

// Usage is a Cal's resource use.
type Usage struct {
	CPUNanos    uint64
	MemoryBytes uint64
	// DiskBytes is what the Cal stores in its directory (with disk-quota).
	DiskBytes uint64
}

// ErrNotRunning is Adopt's answer for a Cal of which nothing runs.
var ErrNotRunning = errors.New("not running")

// ErrExitUnknown is Wait's answer when an adopted Cal exits: it is not the
// control plane's child, so its exit status is not known.
var ErrExitUnknown = errors.New("exited (status unknown: adopted from an earlier control plane)")

// Driver starts Cals. Its methods are safe for concurrent use, for
// different Cals.
type Driver interface {
	// Name identifies the driver ("process", later "oci", "kubernetes").
	Name() string
	// Available lists the isolation features this host can provide.
	Available() []sandbox.Feature
	// Start launches a Cal. It returns once the process runs inside its
	// cgroups and has its config; the Cal registers itself when ready.
	Start(ctx context.Context, spec Spec) (Instance, error)
	// Adopt attaches to the running instance of the Cal calID that an
	// earlier control plane started, after checking that it is the same
	// process and not another that reuses its PID. When nothing of the Cal
	// runs it removes what is left of it (stray processes of its group,
	// the group, the driver's record) and returns an error wrapping
	// ErrNotRunning; the Cal may then be started. It must not be called
	// for a Cal whose instance this control plane holds.
	Adopt(ctx context.Context, calID string) (Instance, error)
	// Recorded lists the Cals the driver keeps a record of: those it
	// started, until their instance ends, including those of an earlier
	// control plane that nobody adopted yet.
	Recorded() ([]string, error)
}
