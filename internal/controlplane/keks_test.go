package controlplane

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/soulfra/calnet/internal/seal"
	"github.com/soulfra/calnet/internal/store"
)

func closeServer(t *testing.T, s *Server) {
	t.Helper()
	s.closeAudit()
	must(t, errors.Join(s.store.Close(), s.lg.Close()))
}

// clearSecrets lists the files under dir that hold an age secret key in
// clear.
func clearSecrets(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("AGE-SECRET-KEY")) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestNoKEKInClear: every Cal's key-encryption identity is stored sealed
// (a control plane before this change stored them in clear in state.db,
// where this test found the Master's); values stored in clear by an
// older control plane are sealed at the next start, and still open.
func TestNoKEKInClear(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	s, err := Open(ctx, Config{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.newKEK(ctx, "pending_x"); err != nil {
		t.Fatal(err)
	}
	if err := s.renameKEK(ctx, "pending_x", "calx"); err != nil {
		t.Fatal(err)
	}
	// As an older control plane stored it: in clear.
	old, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.store.Update(ctx, func(tx store.Tx) error { return tx.Put(bucketKEK, "legacy", []byte(old.String())) }))
	closeServer(t, s)
	if found := clearSecrets(t, data); len(found) != 1 || filepath.Base(found[0]) != "state.db" {
		t.Fatalf("before the restart, secrets in clear in %v (want the planted one in state.db)", found)
	}

	s, err = Open(ctx, Config{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.kek(ctx, "legacy")
	if err != nil || k.String() != old.String() {
		t.Fatalf("the legacy identity after sealing: %v", err)
	}
	if _, err := s.kek(ctx, "calx"); err != nil {
		t.Fatal(err)
	}
	// One Cal's sealed identity stored under another's ID is refused.
	var sealed []byte
	must(t, s.store.View(ctx, func(tx store.Tx) (err error) { sealed, err = tx.Get(bucketKEK, "calx"); return err }))
	must(t, s.store.Update(ctx, func(tx store.Tx) error { return tx.Put(bucketKEK, "legacy", sealed) }))
	if _, err := s.kek(ctx, "legacy"); !errors.Is(err, seal.ErrPurpose) {
		t.Fatalf("a swapped identity: %v, want ErrPurpose", err)
	}
	closeServer(t, s)
	if found := clearSecrets(t, data); len(found) != 0 {
		t.Fatalf("secrets in clear: %v", found)
	}
}

// TestStartRefusesDamagedKEK: a key-encryption identity that is neither
// sealed nor an age identity stops the start, naming the Cal, and is not
// rewritten.
func TestStartRefusesDamagedKEK(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	s, err := Open(ctx, Config{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.store.Update(ctx, func(tx store.Tx) error { return tx.Put(bucketKEK, "broken", []byte("garbage")) }))
	closeServer(t, s)
	if _, err := Open(ctx, Config{DataDir: data}); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("got %v", err)
	}
}
