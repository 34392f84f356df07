package netdir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/soulfra/calnet/internal/limitedfile"
)

// TestVerifyRefusesNonRegularFiles: `calnet verify` reads directories
// anyone may hand it. A file replaced by a symlink to /dev/zero or by a
// FIFO is refused, naming the file, instead of being read without end
// (/dev/zero as blessing.json ran the verifier to 24 GB) or blocking.
func TestVerifyRefusesNonRegularFiles(t *testing.T) {
	zero := func(t *testing.T, p string) {
		os.Remove(p)
		if err := os.Symlink("/dev/zero", p); err != nil {
			t.Fatal(err)
		}
	}
	fifo := func(t *testing.T, p string) {
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		file    func(n *Network) string // in the network or the master's identity directory
		replace func(*testing.T, string)
	}{
		{"blessing.json is /dev/zero", func(n *Network) string { return filepath.Join(n.Dir, "master", BlessingFile) }, zero},
		{"identity.pub is /dev/zero", func(n *Network) string { return filepath.Join(n.Dir, "master", PublicFile) }, zero},
		{"soul-chain.sig is /dev/zero", func(n *Network) string { return filepath.Join(n.Dir, "master", SoulChainFile) }, zero},
		{"soul-chain.sig is a FIFO", func(n *Network) string { return filepath.Join(n.Dir, "master", SoulChainFile) }, fifo},
		{"blessing.json is a FIFO", func(n *Network) string { return filepath.Join(n.Dir, "master", BlessingFile) }, fifo},
		{"the ledger's checkpoints are /dev/zero", func(n *Network) string { return filepath.Join(n.Dir, "ledger", "checkpoints") }, zero},
		{"network.json is /dev/zero", func(n *Network) string { return filepath.Join(n.Dir, infoFile) }, zero},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNetwork(t)
			p := tt.file(n)
			tt.replace(t, p)
			err := verifyDir(n.Dir, filepath.Join(n.Dir, "master"))
			// A chain file is reported as a malformed chain (the verifier's
			// report), the others as errors: both name the file.
			if err == nil || !strings.Contains(err.Error(), limitedfile.ErrNotRegular.Error()) || !strings.Contains(err.Error(), filepath.Base(p)) {
				t.Fatalf("verify = %v, want a refusal of %s as not a regular file", err, filepath.Base(p))
			}
		})
	}
}

// verifyDir does what `calnet verify --dir network path` does.
func verifyDir(network, path string) error {
	n, err := Load(network, testOpts())
	if err != nil {
		return err
	}
	res, err := n.VerifyPath(context.Background(), path, testNow)
	if err != nil {
		return err
	}
	return res.Err
}
