// Package hostuid hands every calnet network on a host its own blocks of
// uids, so that no two networks (and so no two Cals) ever share a uid: a
// Cal could otherwise signal, or read the files of, a Cal of another
// network that happened to get the same number.
//
// The blocks are recorded in one host-wide file (DefaultDir/uids.json),
// read and rewritten only under an exclusive flock of DefaultDir/uids.lock,
// so any number of `calnet up` on different data directories may claim at
// once. A block is released when the data directory that held it is gone
// and no process runs with one of its uids; a block is handed out only when
// no process, and no file in the shared temporary directories, is owned by
// one of its uids.
package hostuid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/strictjson"
)

// Defaults of a Host.
const (
	// DefaultDir holds the allocation file and its lock.
	DefaultDir = "/var/lib/calnet"
	// Base is the first Cal uid, far from system and user ids (and the
	// first uid of networks made before host-wide allocation).
	Base = 200000
	// BlockSize is how many uids one block holds (the usual size of a
	// subordinate id range).
	BlockSize = 65536
	// MaxBlocks keeps every uid below 2^31.
	MaxBlocks = (1<<31 - Base) / BlockSize
	// maxScan bounds the entries the file check reads in the shared
	// temporary directories.
	maxScan = 100000
)

// ErrExhausted reports that no free block is left.
var ErrExhausted = errors.New("no free uid block left on this host")

// Host allocates uid blocks host-wide. The zero value is not usable; use
// New. A Host is safe for concurrent use, in one process or many.
type Host struct {
	// Dir holds uids.json and uids.lock.
	Dir string
	// ProcDir is where processes are listed ("/proc").
	ProcDir string
	// ScanDirs are the world-writable directories checked for files a
	// candidate block's uids own.
	ScanDirs []string
	// Base, BlockSize and Blocks shape the uid space.
	Base, BlockSize, Blocks int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// New returns the host allocator on dir (DefaultDir when empty).
func New(dir string) *Host {
	if dir == "" {
		dir = DefaultDir
	}
	return &Host{Dir: dir, ProcDir: "/proc", ScanDirs: []string{"/tmp", "/var/tmp", "/dev/shm"},
		Base: Base, BlockSize: BlockSize, Blocks: MaxBlocks}
}

// Range is the uids [First, First+Count).
type Range struct {
	First int `json:"first"`
	Count int `json:"count"`
}

// Contains reports whether uid lies in r.
func (r Range) Contains(uid int) bool { return uid >= r.First && uid < r.First+r.Count }

// Last is the highest uid of r.
func (r Range) Last() int { return r.First + r.Count - 1 }

func (r Range) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last()) }

// Block returns the uids of block i.
func (h *Host) Block(i int) Range { return Range{First: h.Base + i*h.BlockSize, Count: h.BlockSize} }

// BlockOf returns the block holding uid, or -1.
func (h *Host) BlockOf(uid int) int {
	if uid < h.Base || uid >= h.Base+h.Blocks*h.BlockSize {
		return -1
	}
	return (uid - h.Base) / h.BlockSize
}

// Claim is one network's entry in the allocation file.
type Claim struct {
	DataDir   string    `json:"data_dir"`
	Network   string    `json:"network"`
	Blocks    []int     `json:"blocks"`
	ClaimedAt time.Time `json:"claimed_at"`
}

type allocFile struct {
	Version int     `json:"version"`
	Claims  []Claim `json:"claims"`
}

const fileVersion = 1

// maxAllocFile bounds uids.json.
const maxAllocFile = 4 << 20

// find returns the index of the claim of network in dataDir, or -1.
func (f *allocFile) find(dataDir, network string) int {
	return slices.IndexFunc(f.Claims, func(c Claim) bool { return c.DataDir == dataDir && c.Network == network })
}

// Claim returns the blocks the network in dataDir holds, claiming them
// when it holds none: the blocks in want when they are all free (a network
// keeps the uids its Cals already have), else one new free block. dataDir
// must be absolute.
func (h *Host) Claim(ctx context.Context, dataDir, network string, want []int) ([]int, error) {
	var out []int
	err := h.locked(ctx, func(f *allocFile) (bool, error) {
		changed := h.release(f, dataDir, network)
		if i := f.find(dataDir, network); i >= 0 {
			out = slices.Clone(f.Claims[i].Blocks)
			return changed, nil
		}
		blocks, err := h.pick(f, want)
		if err != nil {
			return changed, err
		}
		f.Claims = append(f.Claims, Claim{DataDir: dataDir, Network: network, Blocks: blocks, ClaimedAt: h.now()})
		out = slices.Clone(blocks)
		return true, nil
	})
	return out, err
}

// Grow claims one more free block for the network in dataDir, for when
// its blocks are used up, and returns it.
func (h *Host) Grow(ctx context.Context, dataDir, network string) (int, error) {
	b := -1
	err := h.locked(ctx, func(f *allocFile) (bool, error) {
		i := f.find(dataDir, network)
		if i < 0 {
			return false, fmt.Errorf("uid blocks: %s holds no claim", dataDir)
		}
		blocks, err := h.pick(f, nil)
		if err != nil {
			return false, err
		}
		b = blocks[0]
		f.Claims[i].Blocks = append(f.Claims[i].Blocks, b)
		return true, nil
	})
	return b, err
}

// Release gives up the blocks of the network in dataDir (when the network
// is removed). Releasing a data directory that holds nothing is not an
// error.
func (h *Host) Release(ctx context.Context, dataDir, network string) error {
	return h.locked(ctx, func(f *allocFile) (bool, error) {
		n := len(f.Claims)
		f.Claims = slices.DeleteFunc(f.Claims, func(c Claim) bool { return c.DataDir == dataDir && c.Network == network })
		return len(f.Claims) != n, nil
	})
}

// Claims lists the allocation file's entries.
func (h *Host) Claims(ctx context.Context) ([]Claim, error) {
	var out []Claim
	err := h.locked(ctx, func(f *allocFile) (bool, error) {
		out = slices.Clone(f.Claims)
		return false, nil
	})
	return out, err
}

// release drops the claims of networks that are gone: their data
// directory no longer exists, or (for dataDir) now holds another network;
// a claim whose blocks a process still uses stays (keyed by its network,
// it is not handed to the new one).
func (h *Host) release(f *allocFile, dataDir, network string) bool {
	n := len(f.Claims)
	f.Claims = slices.DeleteFunc(f.Claims, func(c Claim) bool {
		gone := c.DataDir == dataDir && c.Network != network
		if !gone {
			_, err := os.Stat(c.DataDir)
			gone = errors.Is(err, fs.ErrNotExist)
		}
		if !gone {
			return false
		}
		for _, b := range c.Blocks {
			if busy, err := h.processIn(h.Block(b)); err != nil || busy != "" {
				return false
			}
		}
		return true
	})
	return len(f.Claims) != n
}

// pick returns want when every block of it is free, else the lowest free
// block that nothing on the host uses.
func (h *Host) pick(f *allocFile, want []int) ([]int, error) {
	taken := map[int]bool{}
	for _, c := range f.Claims {
		for _, b := range c.Blocks {
			taken[b] = true
		}
	}
	if len(want) > 0 && !slices.ContainsFunc(want, func(b int) bool { return b < 0 || b >= h.Blocks || taken[b] }) {
		return slices.Clone(want), nil
	}
	all := Range{First: h.Base, Count: h.Blocks * h.BlockSize}
	used := map[int]bool{} // blocks used outside any claim (an older calnet, a leftover)
	if err := h.scan(all, nil, true, func(uid int, _ string) bool { used[h.BlockOf(uid)] = true; return true }); err != nil {
		return nil, err
	}
	for b := range h.Blocks {
		if !taken[b] && !used[b] {
			return []int{b}, nil
		}
	}
	return nil, ErrExhausted
}

// Owner names a process, or a file in the shared temporary directories,
// owned by a uid of r that ours does not accept, or "" when there is none.
// ours may be nil (no uid is accepted).
func (h *Host) Owner(r Range, ours func(uid int) bool) (string, error) {
	found := ""
	err := h.scan(r, ours, true, func(_ int, what string) bool { found = what; return false })
	return found, err
}

// processIn names a process running as a uid of r; an error (the process
// table could not be read) counts as busy.
func (h *Host) processIn(r Range) (string, error) {
	found := ""
	err := h.scan(r, nil, false, func(_ int, what string) bool { found = what; return false })
	return found, err
}

// scan calls found for each process (and, with files, each file in
// ScanDirs) owned by a uid of r that ours does not accept, until found
// returns false.
func (h *Host) scan(r Range, ours func(int) bool, files bool, found func(uid int, what string) bool) error {
	match := func(uid int) bool { return r.Contains(uid) && (ours == nil || !ours(uid)) }
	ents, err := os.ReadDir(h.ProcDir)
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(h.ProcDir, e.Name(), "status"))
		if err != nil {
			continue // exited meanwhile
		}
		var name string
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "Name":
				name = strings.TrimSpace(v)
			case "Uid": // real, effective, saved and filesystem uid
				for _, f := range strings.Fields(v) {
					if uid, err := strconv.Atoi(f); err == nil && match(uid) {
						if !found(uid, fmt.Sprintf("process %d (%s) runs as uid %d", pid, name, uid)) {
							return nil
						}
						break
					}
				}
			}
		}
	}
	if !files {
		return nil
	}
	seen := 0
	for _, root := range h.ScanDirs {
		stop := false
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { // the callback never returns an error
			if err != nil {
				return nil
			}
			if seen++; seen > maxScan {
				stop = true
				return filepath.SkipAll
			}
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil {
				return nil
			}
			if uid := int(st.Uid); match(uid) && !found(uid, fmt.Sprintf("file %s is owned by uid %d", p, uid)) {
				stop = true
				return filepath.SkipAll
			}
			return nil
		})
		if stop {
			break
		}
	}
	return nil
}

func (h *Host) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

// locked runs fn on the allocation file under the host-wide lock and
// writes the file back when fn reports a change.
func (h *Host) locked(ctx context.Context, fn func(*allocFile) (bool, error)) error {
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return fmt.Errorf("uid blocks: %w", err)
	}
	lk, err := os.OpenFile(filepath.Join(h.Dir, "uids.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("uid blocks: %w", err)
	}
	defer lk.Close()
	for {
		err := unix.Flock(int(lk.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("uid blocks: lock %s: %w", lk.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("uid blocks: waiting for %s: %w", lk.Name(), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	defer func() { _ = unix.Flock(int(lk.Fd()), unix.LOCK_UN) }() // closing the file releases it anyway
	path := filepath.Join(h.Dir, "uids.json")
	var f allocFile
	switch b, err := os.ReadFile(path); {
	case errors.Is(err, fs.ErrNotExist):
		f.Version = fileVersion
	case err != nil:
		return fmt.Errorf("uid blocks: %w", err)
	default:
		if err := strictjson.Unmarshal(b, maxAllocFile, &f); err != nil {
			return fmt.Errorf("uid blocks: %s: %w", path, err)
		}
		if f.Version != fileVersion {
			return fmt.Errorf("uid blocks: %s: version %d is not supported (want %d)", path, f.Version, fileVersion)
		}
	}
	changed, err := fn(&f)
	if err != nil || !changed {
		return err
	}
	b, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("uid blocks: %w", err)
	}
	return nil
}
