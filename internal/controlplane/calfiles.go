package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/caldir"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/sandbox"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/internal/template"
	"github.com/soulfra/calnet/trust"
)

// A Cal's directory is the Cal's to rewrite: the control plane writes it
// once, through caldir, and keeps its own copy of what it needs back (the
// soul chain, in the store). The sockets it dials are in the Cal's host
// directory, each connection checked to be the Cal's (calSocket).

// bucketChains holds every Cal's soul chain, as the control plane
// verified it when the Cal was blessed.
const bucketChains = "chains"

// sandboxFiles writes a Cal's sandbox directory: its sealed key, public
// identity, blessing, soul chain and the network's public keys, and keeps
// the chain in the store. The key-encryption identity stays in the
// control plane's store and reaches the Cal only in memory.
func (s *Server) sandboxFiles(ctx context.Context, id string, uid int, sealedKey []byte, b *trust.Blessing, c *trust.Chain, tmpl *template.Template) error {
	tj, _ := jsonMarshal(tmpl)
	return s.writeSandbox(ctx, id, uid, sealedKey, b, c, tj)
}

// writeSandbox is sandboxFiles with the template as the Cal reads it
// (template.json).
func (s *Server) writeSandbox(ctx context.Context, id string, uid int, sealedKey []byte, b *trust.Blessing, c *trust.Chain, tj []byte) error {
	bj, _ := b.MarshalJSON()
	cj, _ := c.MarshalJSON()
	rk, _ := s.net.Info.RootKeys.MarshalJSON()
	ni, _ := jsonMarshal(calproto.NetworkInfo{Network: s.net.Info.Network.String(), RootKeys: rk})
	if err := s.store.Update(ctx, func(tx store.Tx) error { return tx.Put(bucketChains, id, cj) }); err != nil {
		return fmt.Errorf("keep the soul chain: %w", err)
	}
	if s.pool != nil {
		// A subvolume of the Cal filesystem, which the disk quota limits.
		if _, err := s.pool.Create(id); err != nil {
			return err
		}
	}
	files := map[string][]byte{"identity.key": sealedKey, netdir.BlessingFile: bj, netdir.SoulChainFile: cj, calproto.NetworkFile: ni, calproto.TemplateFile: tj}
	return s.dirs.Sandbox(id).Populate(files, uid, uid)
}

// chainOf returns the soul chain of a Cal from the control plane's own
// copy, never from the Cal's directory.
func (s *Server) chainOf(id identity.ID) (*trust.Chain, error) {
	s.trustMu.RLock()
	c := s.chains[id]
	s.trustMu.RUnlock()
	if c != nil {
		return c, nil
	}
	var b []byte
	err := s.store.View(context.Background(), func(tx store.Tx) error {
		var err error
		b, err = tx.Get(bucketChains, id.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("soul chain of %s: %w", id, err)
	}
	if c, err = trust.ParseChain(b); err != nil {
		return nil, fmt.Errorf("soul chain of %s: %w", id, err)
	}
	s.trustMu.Lock()
	s.chains[id] = c
	s.trustMu.Unlock()
	return c, nil
}

// keepChains copies into the store the soul chain of every Cal recorded
// before the control plane kept its own copies. The Cal's file is read
// without following a link and kept only if its leaf is the blessing the
// ledger holds for that Cal and the chain verifies: a Cal cannot pass
// another's chain off as its own.
func (s *Server) keepChains(ctx context.Context) error {
	recs, err := s.listCals(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		err := s.store.View(ctx, func(tx store.Tx) error { _, err := tx.Get(bucketChains, r.ID); return err })
		if !errors.Is(err, store.ErrNotFound) {
			if err != nil {
				return err
			}
			continue
		}
		if err := s.keepChain(ctx, r.ID); err != nil {
			s.log.Warn("no soul chain kept for a cal recorded before chains were kept", "cal", r.ID, "err", err)
		}
	}
	return nil
}

func (s *Server) keepChain(ctx context.Context, id string) error {
	cid, err := identity.ParseID(id)
	if err != nil {
		return err
	}
	b, err := s.dirs.Sandbox(id).ReadFile(netdir.SoulChainFile, trust.MaxChainJSON)
	if err != nil {
		return err
	}
	c, err := trust.ParseChain(b)
	if err != nil {
		return err
	}
	s.trustMu.Lock()
	want := s.state.Blessings[cid]
	s.trustMu.Unlock()
	if want == nil || c.Leaf().Child() != cid || c.Leaf().Digest() != want.Digest() {
		return fmt.Errorf("its %s does not end in the blessing the ledger holds for it", netdir.SoulChainFile)
	}
	s.trustMu.Lock()
	_, err = s.net.Verifier().Verify(c, s.now(), nil)
	s.trustMu.Unlock()
	if err != nil {
		return err
	}
	cj, _ := c.MarshalJSON()
	return s.store.Update(ctx, func(tx store.Tx) error { return tx.Put(bucketChains, id, cj) })
}

// peerUID is the uid a Cal's processes run as: its own with own-uid, else
// the control plane's.
func peerUID(features []string, uid int) int {
	if slices.Contains(features, string(sandbox.OwnUID)) {
		return uid
	}
	return os.Geteuid()
}

// calSocket is one of a Cal's sockets, checked on every connection to be
// the Cal's.
func (s *Server) calSocket(id, name string) (caldir.Socket, error) {
	c, ok := s.lite(id)
	if !ok {
		return caldir.Socket{}, fmt.Errorf("cal %s: not in the registry", id)
	}
	return s.dirs.Host(id).Socket(name, c.PeerUID), nil
}
