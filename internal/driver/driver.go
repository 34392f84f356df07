// Package driver defines how the supervisor runs Cals: a Driver starts an
// instance from a Spec, and an Instance can be waited on, stopped and
// inspected for the isolation it really has.
package driver

import (
	"context"
	"io"
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
	// Secret is passed to the runtime in memory through the config pipe.
	Secret string
	// Output receives the Cal's stdout and stderr.
	Output io.Writer
}

// Instance is one started Cal process.
type Instance interface {
	// PID is the host PID.
	PID() int
	// Wait blocks until the process exits and returns its exit error.
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

// Driver starts Cals.
type Driver interface {
	// Name identifies the driver ("process", later "oci", "kubernetes").
	Name() string
	// Available lists the isolation features this host can provide.
	Available() []sandbox.Feature
	// Start launches a Cal. It returns once the process runs inside its
	// cgroups and has its config; the Cal registers itself when ready.
	Start(ctx context.Context, spec Spec) (Instance, error)
}
