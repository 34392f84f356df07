package snapshot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/soulfra/calnet/internal/atomicfile"
)

// WriteFile writes a snapshot file at path atomically: write streams the
// content into a new 0600 file beside it, which is synced and renamed over
// path only when write succeeded. On any error nothing is left and path
// is as it was.
func WriteFile(path string, write func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// Suffix ends the name of every scheduled snapshot file.
const Suffix = ".snapshot"

// Prune removes the oldest scheduled snapshots in dir whose names start
// with prefix, keeping the newest retain (names sort by time). It returns
// what it removed.
func Prune(dir, prefix string, retain int) ([]string, error) {
	if retain < 1 {
		return nil, fmt.Errorf("retain %d: keep at least 1 snapshot", retain)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, prefix) && strings.HasSuffix(n, Suffix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var removed []string
	var errs []error
	for _, n := range names[:max(0, len(names)-retain)] {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n)
	}
	return removed, errors.Join(errs...)
}
