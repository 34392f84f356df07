package snapshot

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/ledger"
)

// Ledger is what a capture reads of the ledger (*ledger.Log).
type Ledger interface {
	Checkpoint() *ledger.Checkpoint
	Entry(i uint64) ([]byte, error)
}

// Source is a running network's durable state, as Capture takes it. The
// control plane fills it in; a Raft store's FSM would fill it in the same
// way from its own store and ledger.
type Source struct {
	// Network and Origin name the network and its ledger.
	Network, Origin string
	// DataDir is the data directory whose DataEntries are carried.
	DataDir string
	// Store is the state store.
	Store store.Snapshotter
	// Ledger is the network's ledger.
	Ledger Ledger
	// Cals lists, from the store's view, the Cals whose keys to keep.
	Cals func(view store.Snapshot) ([]string, error)
	// CalFile reads one of a Cal's sandbox files (a name in CalFiles),
	// and for the sealed key checks that it is the Cal's (opens with its
	// key-encryption identity in view to the Cal's ID). An error leaves
	// the Cal out with the error as the reason.
	CalFile func(view store.Snapshot, id, name string) ([]byte, error)
	// Sync, if set, runs before the data directory's files are read (it
	// flushes the audit trail).
	Sync func(ctx context.Context) error
	Now  func() time.Time
}

// spoolMemory is how much of the store's copy is kept in memory; a larger
// store is copied to an unlinked file in the data directory.
const spoolMemory = 64 << 20

// Capture writes a consistent snapshot of src to w, unencrypted (Seal it).
//
// Consistency: the store's view is fixed first and copied at once (its
// open view would hold up a writer that grows the store); the ledger's
// checkpoint is read after it, so the snapshot's ledger holds at least
// every entry the state refers to, perhaps a few more: what a crash just
// after the view was fixed would have left, which `calnet up` recovers
// from. The ledger anchor the state records is therefore never ahead of
// the snapshot's ledger.
func Capture(ctx context.Context, w io.Writer, src Source) (*Manifest, error) {
	now := time.Now
	if src.Now != nil {
		now = src.Now
	}
	view, err := src.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	created := now().UTC()
	index, size := view.Index(), view.Size()
	spool, err := spoolView(view, src.DataDir)
	var ids []string
	type calFile struct {
		id, name string
		data     []byte
	}
	var calFiles []calFile
	m := &Manifest{Format: Format, Network: src.Network, Origin: src.Origin, CreatedAt: created, Store: StoreView{Index: index, Size: size}}
	if err == nil {
		ids, err = src.Cals(view)
	}
	if err == nil {
		sort.Strings(ids)
		m.Cals.Total = len(ids)
		for _, id := range ids {
			var got []calFile
			var why error
			for _, name := range CalFiles {
				b, err := src.CalFile(view, id, name)
				if err != nil {
					why = fmt.Errorf("%s: %w", name, err)
					break
				}
				got = append(got, calFile{id, name, b})
			}
			if why != nil {
				m.Cals.Missing = append(m.Cals.Missing, MissingKey{ID: id, Reason: why.Error()})
				continue
			}
			m.Cals.WithKey++
			calFiles = append(calFiles, got...)
		}
	}
	err = errors.Join(err, view.Close())
	if err != nil {
		if spool != nil {
			spool.Close()
		}
		return nil, fmt.Errorf("snapshot of the state store: %w", err)
	}
	defer spool.Close()
	cp := src.Ledger.Checkpoint()
	m.Ledger = LedgerHead{Size: cp.Size, Root: hex.EncodeToString(cp.Root)}
	if src.Sync != nil {
		if err := src.Sync(ctx); err != nil {
			return nil, err
		}
	}
	files, err := dataFiles(src.DataDir)
	if err != nil {
		return nil, err
	}
	m.Bytes = size
	for _, f := range files {
		m.Bytes += f.size
	}
	for _, c := range calFiles {
		m.Bytes += int64(len(c.data))
	}
	sw, err := NewWriter(w, m)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := f.write(sw); err != nil {
			return nil, err
		}
	}
	for _, c := range calFiles {
		if err := sw.CalFile(c.id, c.name, c.data); err != nil {
			return nil, err
		}
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if err := sw.State(size, spool); err != nil {
		return nil, err
	}
	const batch = 4096
	for i := uint64(0); i < cp.Size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(batch, cp.Size-i)
		es := make([][]byte, 0, n)
		for j := i; j < i+n; j++ {
			e, err := src.Ledger.Entry(j)
			if err != nil {
				return nil, fmt.Errorf("snapshot of the ledger: %w", err)
			}
			es = append(es, e)
		}
		if err := sw.Ledger(i, es); err != nil {
			return nil, err
		}
		i += n
	}
	if err := sw.Checkpoint(cp.Note); err != nil {
		return nil, err
	}
	if err := sw.Close(); err != nil {
		return nil, err
	}
	return m, nil
}

// readSeekCloser is the spooled copy of the store.
type readSeekCloser interface {
	io.ReadSeeker
	io.Closer
}

type memSpool struct{ *bytes.Reader }

func (memSpool) Close() error { return nil }

// spoolView copies the view to memory or, when large, to an unlinked file
// in dir (root's, where the store lives anyway).
func spoolView(view store.Snapshot, dir string) (readSeekCloser, error) {
	if view.Size() <= spoolMemory {
		var b bytes.Buffer
		b.Grow(int(view.Size()))
		if _, err := view.WriteTo(&b); err != nil {
			return nil, err
		}
		return memSpool{bytes.NewReader(b.Bytes())}, nil
	}
	f, err := os.CreateTemp(dir, ".snapshot-state-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	if _, err := view.WriteTo(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// dataFile is one carried file of the data directory.
type dataFile struct {
	rel  string
	abs  string
	mode fs.FileMode
	size int64
	data []byte // read at once (small files, and the audit trail cut at a line)
}

// maxInMemory is the size up to which a file is read when listed.
const maxInMemory = 8 << 20

func (f *dataFile) write(sw *Writer) error {
	if f.data != nil || f.size == 0 {
		return sw.File(f.rel, f.mode, int64(len(f.data)), bytes.NewReader(f.data))
	}
	fh, err := os.Open(f.abs)
	if err != nil {
		return err
	}
	defer fh.Close()
	return sw.File(f.rel, f.mode, f.size, fh)
}

// dataFiles lists the carried files of data, in name order, never
// following a link; an audit segment is cut after its last complete line
// (one being appended is in the next snapshot).
func dataFiles(data string) ([]*dataFile, error) {
	var out []*dataFile
	for _, top := range DataEntries {
		root := filepath.Join(data, top)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return nil
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(data, p)
			rel = filepath.ToSlash(rel)
			if d.IsDir() || !d.Type().IsRegular() || !CarriedFile(rel) {
				return nil // sockets, links and the ledger's own files stay
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Size() > MaxFile {
				return fmt.Errorf("%s: %d bytes, over the snapshot's limit of %d for one file", p, fi.Size(), int64(MaxFile))
			}
			f := &dataFile{rel: rel, abs: p, mode: fi.Mode().Perm(), size: fi.Size()}
			if fi.Size() <= maxInMemory {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if top == "audit" {
					b = b[:bytes.LastIndexByte(b, '\n')+1]
				}
				f.data, f.size = b, int64(len(b))
			}
			out = append(out, f)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("snapshot of %s: %w", root, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].rel, out[j].rel) < 0 })
	return out, nil
}
