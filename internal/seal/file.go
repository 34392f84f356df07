package seal

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/limitedfile"
)

// RootFile holds the root sealing key in the file mode.
const RootFile = "seal.key"

// File is the default protector: the root in seal.key (0600), in clear.
// It needs no operator at start; it protects nothing against a reader of
// the network directory.
type File struct{}

// Mode implements Protector.
func (File) Mode() Mode { return ModeFile }

// Wrap implements Protector: it writes seal.key.
func (File) Wrap(_ context.Context, dir string, cfg *Config, root []byte) error {
	return atomicfile.Write(filepath.Join(dir, RootFile), []byte(hex.EncodeToString(root)+"\n"), 0o600)
}

// Unwrap implements Protector: it reads seal.key, refusing one that others
// may read.
func (File) Unwrap(_ context.Context, dir string, _ *Config, out []byte) error {
	path := filepath.Join(dir, RootFile)
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("root sealing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: mode %v is readable by others, want 0600", path, st.Mode().Perm())
	}
	b, err := limitedfile.Read(path, 2*RootSize+2)
	if err != nil {
		return fmt.Errorf("root sealing key: %w", err)
	}
	defer clear(b)
	s := strings.TrimSpace(string(b))
	if len(s) != 2*RootSize {
		return fmt.Errorf("%s: %d hex digits, want %d", path, len(s), 2*RootSize)
	}
	if _, err := hex.Decode(out, []byte(s)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// removeRootFile overwrites seal.key with zeros, syncs and removes it. (On a
// journaling or copy-on-write filesystem the old blocks may survive: the
// key must be taken as exposed to whoever could read the disk.)
func removeRootFile(dir string) error {
	path := filepath.Join(dir, RootFile)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	_, werr := f.Write(make([]byte, 2*RootSize+1))
	serr := f.Sync()
	cerr := f.Close()
	if werr != nil || serr != nil || cerr != nil {
		return fmt.Errorf("wipe %s: %v %v %v", path, werr, serr, cerr)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}
