package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/ledger"
)

// Refusals of Restore; each error wraps one and says what to do.
var (
	ErrNotEmpty     = errors.New("the data directory is not empty")
	ErrOtherNetwork = errors.New("the snapshot is of another network")
	ErrStale        = errors.New("the snapshot is older than the ledger it would replace")
	ErrInUse        = errors.New("the data directory is in use")
	ErrNoSpace      = errors.New("not enough free disk space")
)

// Top-level entries of a data directory that a snapshot carries (as
// files/...): the network's identity and sealed keys, the root credential,
// the templates, the programs Cals run and the audit trail. The rest is
// rebuilt (the ledger's files from its entries, the Cal filesystem and
// sandboxes by `calnet up`) or belongs to the running host (instances,
// sockets, logs).
var DataEntries = []string{"network", "admin.token", "templates", "programs", "audit"}

// ledgerFiles are the files of the ledger directory rebuilt from its
// entries, never taken from files/.
var ledgerFiles = []string{"entries", "index", "checkpoints", "head", "lock"}

// CarriedFile reports whether rel, a slash-separated path in a data
// directory, is one a snapshot carries.
func CarriedFile(rel string) bool {
	top, rest, _ := strings.Cut(rel, "/")
	known := false
	for _, e := range DataEntries {
		known = known || e == top
	}
	if !known {
		return false
	}
	if top == "network" {
		if dir, name, ok := strings.Cut(rest, "/"); ok && dir == "ledger" {
			for _, f := range ledgerFiles {
				if f == name {
					return false
				}
			}
		}
	}
	return true
}

// RestoredDir is where a restore leaves each Cal's sandbox files in the
// data directory: restore/sandboxes/<id>/<name>. `calnet up` rebuilds the
// sandboxes of the registry's Cals from them, then removes the directory.
func RestoredDir(data string) string { return filepath.Join(data, "restore", "sandboxes") }

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Force replaces a non-empty data directory of the same network whose
	// ledger is not newer; the old one is kept beside it.
	Force bool
	// Passphrase opens the network's keys when they are sealed with one.
	Passphrase string
	Logger     *slog.Logger
	Now        func() time.Time
}

// Restored says what Restore did.
type Restored struct {
	Manifest *Manifest `json:"manifest"`
	Dir      string    `json:"dir"`
	// Replaced is where the data directory that was there was moved.
	Replaced string `json:"replaced,omitempty"`
	// Files and CalKeys count what was written.
	Files   int `json:"files"`
	CalKeys int `json:"cal_keys"`
}

// Restore writes the snapshot read from payload (decrypted: see Open)
// into the data directory dst (absolute). It builds everything in a new
// directory beside dst and renames it into place only once every item was
// written, synced and checked; on any error dst is untouched.
func Restore(ctx context.Context, payload io.Reader, dst string, opts RestoreOptions) (*Restored, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if !filepath.IsAbs(dst) {
		return nil, fmt.Errorf("data directory %q: want an absolute path", dst)
	}
	dst = filepath.Clean(dst)
	rd, m, err := NewReader(payload)
	if err != nil {
		return nil, err
	}
	old, err := checkTarget(dst, m, opts.Force)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	// Room for every item, and for the ledger (entries of about 512 bytes
	// on average, and 48 bytes of index each). A disk that fills anyway
	// fails the write below, and the partial copy is removed.
	need := m.Bytes + int64(m.Ledger.Size)*(512+48) + 4<<20
	var st unix.Statfs_t
	if err := unix.Statfs(parent, &st); err == nil && int64(st.Bavail)*st.Bsize < need {
		return nil, fmt.Errorf("%w: restoring needs about %d bytes, the filesystem of %s has %d free; nothing was written", ErrNoSpace, need, parent, int64(st.Bavail)*st.Bsize)
	}
	tmp, err := os.MkdirTemp(parent, ".calnet-restore-")
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	res := &Restored{Manifest: m, Dir: dst}
	w := &restorer{dir: tmp, m: m, opts: opts}
	defer func() {
		if !done {
			_ = w.close() // the copy is removed; its ledger's close error says nothing more
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		it, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, w.explain(err)
		}
		switch it.Kind {
		case KindFile:
			err = w.file(it)
			res.Files++
		case KindCalFile:
			err = w.calFile(it)
			if it.Name == netdir.KeyFile {
				res.CalKeys++
			}
		case KindState:
			err = w.state(ctx, it)
		case KindLedger:
			err = w.ledgerEntries(ctx, it)
		case KindCheckpoint:
			err = w.checkpoint(it)
		}
		if err != nil {
			return nil, w.explain(err)
		}
	}
	if w.lg == nil || !w.checked {
		return nil, corrupt("the snapshot has no ledger")
	}
	if old != nil {
		root, err := w.lg.Root(old.size)
		if err != nil || !bytes.Equal(root, old.root) {
			return nil, fmt.Errorf("%w: the ledger in %s has a different history at entry %d than the snapshot's (another copy of the network diverged); restore into a new directory instead", ErrStale, dst, old.size)
		}
	}
	if err := w.close(); err != nil {
		return nil, w.explain(err)
	}
	if err := syncTree(tmp); err != nil {
		return nil, w.explain(err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, err
	}
	if old != nil {
		res.Replaced = fmt.Sprintf("%s.replaced-%s", dst, opts.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(dst, res.Replaced); err != nil {
			return nil, fmt.Errorf("moving the old data directory aside: %w", err)
		}
	}
	// An empty directory at dst is replaced by rename(2).
	if err := os.Rename(tmp, dst); err != nil {
		if res.Replaced != "" {
			if berr := os.Rename(res.Replaced, dst); berr != nil {
				err = errors.Join(err, fmt.Errorf("and moving the old data directory back from %s: %w", res.Replaced, berr))
			}
		}
		return nil, fmt.Errorf("putting the restored data directory in place: %w", err)
	}
	done = true
	if err := syncDir(parent); err != nil {
		return res, err
	}
	return res, nil
}

// existing is the ledger of the data directory a forced restore replaces.
type existing struct {
	size uint64
	root []byte
}

// checkTarget refuses a target the snapshot must not be written over.
func checkTarget(dst string, m *Manifest, force bool) (*existing, error) {
	fi, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dst)
	}
	ents, err := os.ReadDir(dst)
	if err != nil {
		return nil, err
	}
	if len(ents) == 0 {
		return nil, nil
	}
	if !force {
		return nil, fmt.Errorf("%w: %s holds %d entries; restore into a new directory, or replace this one (it is kept aside as %s.replaced-<time>) with --force", ErrNotEmpty, dst, len(ents), dst)
	}
	n, err := netdir.Load(filepath.Join(dst, "network"), netdir.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: %s holds files but no calnet network (%v); --force replaces only a data directory of the snapshot's network", ErrNotEmpty, dst, err)
	}
	if got := n.Info.Network.String(); got != m.Network {
		return nil, fmt.Errorf("%w: %s holds network %s, the snapshot is of network %s; restore it into a new directory", ErrOtherNetwork, dst, got, m.Network)
	}
	if busy, err := store.InUse(filepath.Join(dst, "state.db")); err == nil && busy {
		return nil, fmt.Errorf("%w: a running `calnet up` holds %s; stop it first", ErrInUse, filepath.Join(dst, "state.db"))
	}
	lg, err := n.OpenLedger(false)
	if err != nil {
		return nil, fmt.Errorf("the ledger of %s, to compare with the snapshot's: %w", dst, err)
	}
	cp := lg.Checkpoint()
	if err := lg.Close(); err != nil {
		return nil, err
	}
	if cp.Size > m.Ledger.Size {
		return nil, fmt.Errorf("%w: the ledger in %s holds %d entries, the snapshot (taken %s) %d: restoring it would lose %d entries (blessings, revocations). Use a newer snapshot, or restore into a new directory if this one is lost",
			ErrStale, dst, cp.Size, m.CreatedAt.Format(time.RFC3339), m.Ledger.Size, cp.Size-m.Ledger.Size)
	}
	return &existing{size: cp.Size, root: cp.Root}, nil
}

// restorer writes items into the new data directory.
type restorer struct {
	dir     string
	m       *Manifest
	opts    RestoreOptions
	net     *netdir.Network
	lg      *ledger.Log
	checked bool
	closed  bool
}

func (w *restorer) close() error {
	if w.lg == nil || w.closed {
		return nil
	}
	err := w.lg.Close()
	w.closed = true
	return err
}

// explain names a full disk as such.
func (w *restorer) explain(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w; nothing was changed (the partial copy is removed)", ErrNoSpace, err)
	}
	return err
}

func (w *restorer) file(it *Item) error {
	if !CarriedFile(it.Name) {
		return corrupt("file %s: not a file a snapshot carries", it.Name)
	}
	p := filepath.Join(w.dir, filepath.FromSlash(it.Name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return writeFile(p, it.Mode, it)
}

func (w *restorer) calFile(it *Item) error {
	d := filepath.Join(RestoredDir(w.dir), it.Cal)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	return writeFile(filepath.Join(d, it.Name), 0o600, it)
}

func (w *restorer) state(ctx context.Context, it *Item) error {
	idx, err := store.RestoreBolt(ctx, filepath.Join(w.dir, "state.db"), it, it.Size)
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	if idx != w.m.Store.Index {
		return corrupt("the state store's index is %d, the manifest says %d", idx, w.m.Store.Index)
	}
	return nil
}

func (w *restorer) ledgerEntries(ctx context.Context, it *Item) error {
	if w.lg == nil {
		n, err := netdir.Load(filepath.Join(w.dir, "network"), netdir.Options{Passphrase: w.opts.Passphrase, Logger: w.opts.Logger})
		if err != nil {
			return corrupt("the snapshot's network directory: %v", err)
		}
		if n.Info.Network.String() != w.m.Network || n.Info.Origin != w.m.Origin {
			return corrupt("the snapshot's network.json is of network %s (%s), its manifest says %s (%s)", n.Info.Network, n.Info.Origin, w.m.Network, w.m.Origin)
		}
		if w.lg, err = n.OpenLedger(true); err != nil {
			return fmt.Errorf("rebuilding the ledger: %w", err)
		}
		w.net = n
		if s := w.lg.Size(); s != 0 {
			return corrupt("the snapshot's network directory carries a ledger of %d entries", s)
		}
	}
	if _, err := w.lg.AppendRaw(ctx, it.Entries...); err != nil {
		return fmt.Errorf("rebuilding the ledger at entry %d: %w", it.First, err)
	}
	return nil
}

func (w *restorer) checkpoint(it *Item) error {
	note, err := io.ReadAll(it)
	if err != nil {
		return err
	}
	if w.lg == nil {
		return corrupt("a checkpoint but no ledger entries")
	}
	cp, err := ledger.VerifyCheckpoint(note, w.net.Info.Origin, w.net.Info.LogKey)
	if err != nil {
		return corrupt("the ledger checkpoint: %v", err)
	}
	got := w.lg.Checkpoint()
	if cp.Size != w.m.Ledger.Size || !bytes.Equal(cp.Root, w.m.LedgerRoot()) {
		return corrupt("the signed checkpoint (size %d) is not the manifest's ledger (size %d, root %s)", cp.Size, w.m.Ledger.Size, w.m.Ledger.Root)
	}
	if got.Size != cp.Size || !bytes.Equal(got.Root, cp.Root) {
		return corrupt("the rebuilt ledger has size %d root %x, its signed checkpoint size %d root %x", got.Size, got.Root, cp.Size, cp.Root)
	}
	w.checked = true
	return nil
}

// writeFile creates p (never over an existing file) with r's content and
// syncs it.
func writeFile(p string, mode fs.FileMode, r io.Reader) (err error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm()&0o755)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := f.Chmod(mode.Perm() & 0o755); err != nil {
		return err
	}
	return f.Sync()
}

// syncTree syncs every directory under root (files were synced when
// written).
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

func syncDir(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
