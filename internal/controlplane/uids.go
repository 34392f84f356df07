package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/soulfra/calnet/internal/hostuid"
	"github.com/soulfra/calnet/internal/store"
)

// Meta keys of the uid allocation.
const (
	keyNextUID   = "next_uid"
	keyUIDBlocks = "uid_blocks"
)

// claimUIDs takes this network's host-wide uid blocks (see package
// hostuid) before any Cal gets a uid. A network made before host-wide
// allocation asks for the blocks its Cals already use; when another
// network holds them, its Cals are given new uids from the blocks it gets
// (their directories chowned). Then no process may run, and no shared
// temporary file may be owned, as a uid of these blocks that no Cal of
// this network has.
func (s *Server) claimUIDs(ctx context.Context) error {
	h, network := s.uidHost, s.net.Info.Network.String()
	var stored []int
	next := -1
	err := s.store.View(ctx, func(tx store.Tx) error {
		if err := store.GetJSON(tx, bucketMeta, keyUIDBlocks, &stored); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		b, err := tx.Get(bucketMeta, keyNextUID)
		if err == nil {
			next, err = strconv.Atoi(string(b))
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("meta/%s: %w", keyNextUID, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("uid blocks: %w", err)
	}
	want := stored
	if want == nil && next > hostuid.Base {
		// Made before host-wide allocation: its uids run from Base.
		for b := 0; b <= h.BlockOf(next-1) && b >= 0; b++ {
			want = append(want, b)
		}
	}
	got, err := h.Claim(ctx, s.cfg.DataDir, network, want)
	if err != nil {
		return fmt.Errorf("uid blocks: %w", err)
	}
	if !slices.Equal(got, stored) {
		if err := s.store.Update(ctx, func(tx store.Tx) error { return store.PutJSON(tx, bucketMeta, keyUIDBlocks, got) }); err != nil {
			return fmt.Errorf("uid blocks: %w", err)
		}
	}
	recs, err := s.listCals(ctx)
	if err != nil {
		return err
	}
	ours := map[int]bool{}
	for _, r := range recs {
		if !s.ownsUID(got, r.UID) {
			uid, err := s.renumber(ctx, r)
			if err != nil {
				return fmt.Errorf("cal %s: moving uid %d into this network's blocks %v: %w", r.ID, r.UID, got, err)
			}
			r.UID = uid
		}
		ours[r.UID] = true
	}
	for _, b := range got {
		owner, err := h.Owner(h.Block(b), func(uid int) bool { return ours[uid] })
		if err != nil {
			return fmt.Errorf("uid blocks: %w", err)
		}
		if owner != "" {
			return fmt.Errorf("uid block %s is this network's, but %s, which no Cal of this network has: stop it (or remove the file) before starting the network", h.Block(b), owner)
		}
	}
	return nil
}

// ownsUID reports whether uid lies in one of blocks.
func (s *Server) ownsUID(blocks []int, uid int) bool {
	return slices.ContainsFunc(blocks, func(b int) bool { return s.uidHost.Block(b).Contains(uid) })
}

// renumber gives a Cal a new uid from this network's blocks and chowns
// what it owns in its directory. The Cal must not run. (Another network's
// process may run as the old uid: a copy of this network's directory.)
func (s *Server) renumber(ctx context.Context, r *CalRecord) (int, error) {
	id, old := r.ID, r.UID
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.PID)); r.PID > 0 && err == nil && uidOf(st) == old && !exited(st) {
		return 0, fmt.Errorf("its process %d still runs as uid %d: stop it first", r.PID, old)
	}
	uid, err := s.nextUID(ctx)
	if err != nil {
		return 0, err
	}
	// Never through a link: the directory is the Cal's.
	if err := s.dirs.Sandbox(id).Rechown(old, uid); err != nil {
		return 0, err
	}
	if _, err := s.updateCal(ctx, id, func(r *CalRecord) { r.UID = uid }); err != nil {
		return 0, err
	}
	s.log.Info("cal moved to a uid of this network's blocks", "cal", id, "old_uid", old, "uid", uid)
	return uid, nil
}

// uidOf returns the real uid in a /proc/<pid>/status, or -1.
// exited reports whether a /proc/<pid>/status is of a process that has
// exited and waits to be reaped (a zombie): a SIGKILLed Cal whose parent
// died with it lingers so until init reaps it, and runs nothing.
func exited(status []byte) bool {
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "State:"); ok {
			v = strings.TrimSpace(v)
			return strings.HasPrefix(v, "Z") || strings.HasPrefix(v, "X")
		}
	}
	return false
}

func uidOf(status []byte) int {
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				if uid, err := strconv.Atoi(f[0]); err == nil {
					return uid
				}
			}
		}
	}
	return -1
}

// nextUID allocates an unprivileged uid for a new Cal from this network's
// blocks, claiming another block host-wide when they are used up.
func (s *Server) nextUID(ctx context.Context) (int, error) {
	for {
		uid := -1
		var blocks []int
		err := s.store.Update(ctx, func(tx store.Tx) error {
			if err := store.GetJSON(tx, bucketMeta, keyUIDBlocks, &blocks); err != nil {
				return fmt.Errorf("meta/%s: %w", keyUIDBlocks, err)
			}
			next := s.uidHost.Block(blocks[0]).First
			b, err := tx.Get(bucketMeta, keyNextUID)
			switch {
			case err == nil:
				if next, err = strconv.Atoi(string(b)); err != nil {
					return fmt.Errorf("meta/%s: %w", keyNextUID, err)
				}
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			// The next uid, or the start of the first block past it.
			for _, bl := range blocks {
				r := s.uidHost.Block(bl)
				if r.Contains(next) {
					uid = next
					break
				}
				if r.First > next && (uid < 0 || r.First < uid) {
					uid = r.First
				}
			}
			if uid < 0 {
				return nil // used up
			}
			return tx.Put(bucketMeta, keyNextUID, []byte(strconv.Itoa(uid+1)))
		})
		if err != nil || uid >= 0 {
			return uid, err
		}
		b, err := s.uidHost.Grow(ctx, s.cfg.DataDir, s.net.Info.Network.String())
		if err != nil {
			return 0, fmt.Errorf("uid blocks %v are used up: %w", blocks, err)
		}
		blocks = append(blocks, b)
		if err := s.store.Update(ctx, func(tx store.Tx) error { return store.PutJSON(tx, bucketMeta, keyUIDBlocks, blocks) }); err != nil {
			return 0, err
		}
	}
}
