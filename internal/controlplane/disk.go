package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/caldir"
	"github.com/soulfra/calnet/internal/calfs"
	"github.com/soulfra/calnet/internal/sandbox"
)

// openPool mounts the Cal filesystem (package calfs) on <data>/cals when
// the network runs with disk-quota, or when it has one already (a network
// restarted with disk-quota lowered keeps its Cals' directories).
func (s *Server) openPool(ctx context.Context) error {
	_, err := os.Stat(s.calsImage())
	exists := err == nil
	if !exists && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cal filesystem: %w", err)
	}
	if !exists && !slices.Contains(s.cfg.Features, sandbox.DiskQuota) {
		return nil
	}
	size := s.cfg.CalDiskBytes
	if size == 0 {
		if size, err = calfs.DefaultSize(s.cfg.DataDir); err != nil {
			return fmt.Errorf("cal filesystem: %w", err)
		}
	}
	if s.pool, err = calfs.Open(ctx, s.calsImage(), s.calsDir(), size, s.log); err != nil {
		return fmt.Errorf("%w (to run without disk quotas, lower them explicitly: --without %s)", err, sandbox.DiskQuota)
	}
	// The Cals' logs (their output) live on the Cal filesystem too, in a
	// root-only subvolume with a limit of its own: a Cal that floods its
	// output fills that, not the disk of the ledger and state.
	logs, err := s.pool.Create(logsSubvolume)
	if err == nil {
		err = os.Chmod(logs, 0o700)
	}
	if err == nil {
		err = calfs.SetLimit(logs, max(s.pool.Size()/8, 256<<20))
	}
	if err != nil {
		if cerr := s.pool.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("unmounting the cal filesystem: %w", cerr))
		}
		return fmt.Errorf("cal logs: %w", err)
	}
	return nil
}

// logsSubvolume holds the Cals' logs on the Cal filesystem.
const logsSubvolume = caldir.LogsName

// logsDir is where the Cals' logs are.
func (s *Server) logsDir() string {
	if s.pool != nil {
		return filepath.Join(s.pool.Dir(), logsSubvolume)
	}
	return filepath.Join(s.cfg.DataDir, "logs")
}

// diskSize is what the Cals together may store: the Cal filesystem's
// size, or without one the free space of the data directory's.
func (s *Server) diskSize() int64 {
	if s.pool != nil {
		return s.pool.Size()
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.cfg.DataDir, &st); err != nil {
		return calfs.MinSize
	}
	return int64(st.Bavail) * st.Bsize
}

// CalLogPath is where the control plane in dataDir keeps a Cal's log: on
// the Cal filesystem when it has one.
func CalLogPath(dataDir, id string) string {
	if logs := caldir.New(dataDir).Logs(); isDir(logs) {
		return filepath.Join(logs, id+".log")
	}
	return filepath.Join(dataDir, "logs", id+".log")
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
