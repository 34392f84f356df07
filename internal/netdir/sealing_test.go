package netdir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulfra/calnet/internal/seal"
	"github.com/soulfra/calnet/trust"
)

// noClearKEK fails if any file under dir holds an age secret key in clear
// (the key-encryption identity, or any other).
func noClearKEK(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("AGE-SECRET-KEY")) {
			t.Errorf("%s holds an age secret key in clear", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// makeLegacy turns a new network back into the layout of a network made
// before sealing: kek.age in clear, no seal.json, key_protection
// age-hybrid-pq.
func makeLegacy(t *testing.T, n *Network) {
	t.Helper()
	makeLegacyKEKAgain(t, n)
	for _, f := range []string{sealedKEKFile, seal.ConfigFile, seal.RootFile} {
		if err := os.Remove(filepath.Join(n.Dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	info := n.Info
	info.KeyProtection = ProtectHybrid
	b, _ := json.Marshal(info)
	if err := os.WriteFile(filepath.Join(n.Dir, infoFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNewNetworkHasNoClearKEK(t *testing.T) {
	n := newNetwork(t)
	if !n.SealsKeys() {
		t.Fatalf("key_protection %s", n.Info.KeyProtection)
	}
	noClearKEK(t, n.Dir)
	for _, f := range []string{seal.ConfigFile, seal.RootFile, sealedKEKFile} {
		if _, err := os.Stat(filepath.Join(n.Dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestMigrateToSealed: a network made before sealing (kek.age in clear)
// is moved to the sealed protection, keeps every key usable, and a
// migration cut short at each step finishes on the next run.
func TestMigrateToSealed(t *testing.T) {
	ctx := context.Background()
	for _, cut := range []string{"none", "after kek.sealed", "after network.json"} {
		t.Run(cut, func(t *testing.T) {
			n := newNetwork(t)
			master := filepath.Join(n.Dir, "master")
			a := n.child(t, master, "a", trust.PermissionsOf(trust.PermRead))
			makeLegacy(t, n)
			l, err := Load(n.Dir, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			if l.SealsKeys() {
				t.Fatal("a legacy network reports sealed keys")
			}
			if _, err := l.LoadKey(master); err != nil {
				t.Fatalf("legacy network: %v", err)
			}
			switch cut {
			case "after kek.sealed":
				// The root and kek.sealed are made, network.json not yet.
				root, err := seal.Create(ctx, l.Dir, l.Info.Network.String(), seal.File{})
				if err != nil {
					t.Fatal(err)
				}
				old, _ := readLegacyKEK(filepath.Join(l.Dir, legacyKEKFile))
				if err := writeSealedKEK(l.Dir, root, old); err != nil {
					t.Fatal(err)
				}
				l, _ = Load(n.Dir, testOpts())
			case "after network.json":
				if _, err := l.MigrateToSealed(ctx); err != nil {
					t.Fatal(err)
				}
				makeLegacyKEKAgain(t, l)
				l, _ = Load(n.Dir, testOpts())
			}
			migrated, err := l.MigrateToSealed(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !migrated {
				t.Fatal("nothing migrated")
			}
			noClearKEK(t, n.Dir)
			if again, err := l.MigrateToSealed(ctx); err != nil || again {
				t.Fatalf("second migration: %v %v", again, err)
			}
			l2, err := Load(n.Dir, testOpts())
			if err != nil {
				t.Fatal(err)
			}
			if !l2.SealsKeys() {
				t.Fatal("not sealed after migration")
			}
			for _, d := range []string{master, a, filepath.Join(n.Dir, "genesis")} {
				if _, err := l2.LoadKey(d); err != nil {
					t.Fatalf("%s after migration: %v", d, err)
				}
			}
			pa, _ := ReadPublic(a)
			if _, _, err := l2.Revoke(ctx, RevokeRequest{Target: pa.ID().String()}); err != nil {
				t.Fatalf("ledger write after migration: %v", err)
			}
		})
	}
}

// makeLegacyKEKAgain puts kek.age back next to kek.sealed, as a crash after
// network.json was rewritten leaves it.
func makeLegacyKEKAgain(t *testing.T, n *Network) {
	t.Helper()
	root, err := n.Root(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id, err := readSealedKEK(n.Dir, root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.Dir, legacyKEKFile), []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPassphraseSealedNetwork: a network sealed with a passphrase opens
// only with it; a wrong one and none are refused by name and change
// nothing.
func TestPassphraseSealedNetwork(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "net")
	opts := testOpts()
	opts.Passphrase = "correct horse battery"
	opts.KDF = seal.KDF{Algorithm: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1}
	n, err := Init(ctx, dir, MasterGrant{Constraints: trust.Constraints{MaxDepth: 2, MaxChildren: 2, NotAfter: testNow.Add(1e12)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	noClearKEK(t, n.Dir)
	if _, err := os.Stat(filepath.Join(dir, seal.RootFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a passphrase network has seal.key: %v", err)
	}
	master := filepath.Join(dir, "master")
	wrong := testOpts()
	wrong.Passphrase = "wrong horse battery"
	l, _ := Load(dir, wrong)
	if _, err := l.LoadKey(master); !errors.Is(err, seal.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	l, _ = Load(dir, testOpts())
	if _, err := l.LoadKey(master); !errors.Is(err, seal.ErrModeMismatch) || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("no passphrase: %v", err)
	}
	l, _ = Load(dir, opts)
	if _, err := l.LoadKey(master); err != nil {
		t.Fatal(err)
	}
}
