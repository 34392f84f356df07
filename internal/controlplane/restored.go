package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/snapshot"
)

// restoreSandboxes gives the registry's Cals back the sandboxes a
// `calnet snapshot restore` left their files for (internal/snapshot:
// restore/sandboxes/<id>/: the sealed key and template as the Cal had them);
// the blessing and soul chain come from the store. Then it removes what
// the restore left. A Cal whose files are missing stays without a sandbox:
// its start fails and says so.
func (s *Server) restoreSandboxes(ctx context.Context) error {
	dir := snapshot.RestoredDir(s.cfg.DataDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restored cal files: %w", err)
	}
	restored := 0
	for _, e := range ents {
		id := e.Name()
		if err := s.restoreSandbox(ctx, filepath.Join(dir, id), id); err != nil {
			s.log.Error("a restored cal gets no sandbox; it cannot run", "cal", id, "err", err)
			continue
		}
		restored++
	}
	s.log.Info("rebuilt the sandboxes of restored cals", "cals", restored, "of", len(ents))
	if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("removing the restored cal files: %w", err)
	}
	return nil
}

func (s *Server) restoreSandbox(ctx context.Context, from, id string) error {
	rec, err := s.getCal(ctx, id)
	if err != nil {
		return fmt.Errorf("not in the registry: %w", err)
	}
	if rec.State == StateRevoked {
		return errors.New("revoked")
	}
	if _, err := os.Lstat(filepath.Join(s.dirs.Cals(), id)); err == nil {
		return nil // it has one (a restore over a directory that kept it)
	}
	cid, err := identity.ParseID(id)
	if err != nil {
		return err
	}
	chain, err := s.chainOf(cid)
	if err != nil {
		return err
	}
	key, err := limitedfile.Read(filepath.Join(from, netdir.KeyFile), snapshot.MaxCalFile)
	if err != nil {
		return err
	}
	tj, err := limitedfile.Read(filepath.Join(from, calproto.TemplateFile), snapshot.MaxCalFile)
	if err != nil {
		return err
	}
	// The key must still be the Cal's (as the snapshot checked when it was
	// taken): it opens with the Cal's key-encryption identity to its ID.
	kek, err := s.kek(ctx, id)
	if err != nil {
		return err
	}
	if err := checkSealedKey(key, kek, id); err != nil {
		return err
	}
	return s.writeSandbox(ctx, id, rec.UID, key, chain.Leaf(), chain, tj)
}
