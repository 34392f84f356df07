package snapshot

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/ledger"
)

// Item names (see the package documentation).
const (
	nameManifest   = "manifest.json"
	nameState      = "state.db"
	nameCheckpoint = "checkpoint"
	nameEnd        = "end.json"
	prefixFiles    = "files/"
	prefixCals     = "cals/"
	prefixLedger   = "ledger/"
)

// Limits of one item, enforced by Writer and Reader alike.
const (
	// MaxFile bounds one file of the data directory (programs included).
	MaxFile = 1 << 30
	// MaxCalFile bounds a Cal's sealed key or template.
	MaxCalFile = 256 << 10
	// MaxLedgerChunk bounds one ledger item.
	MaxLedgerChunk = 8 << 20
	// MaxItems bounds the number of items in a snapshot.
	MaxItems = 1 << 20
	// MaxPath bounds an item's name.
	MaxPath = 512
)

// CalFiles are the files of a Cal's sandbox a snapshot keeps.
var CalFiles = []string{netdir.KeyFile, calproto.TemplateFile}

// ErrCorrupt wraps every refusal of a snapshot's content.
var ErrCorrupt = errors.New("snapshot corrupt")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// phase orders the items: each phase's names come in this order.
type phase int

const (
	phaseManifest phase = iota
	phaseFiles
	phaseCals
	phaseState
	phaseLedger
	phaseCheckpoint
	phaseEnd
)

// Kind says what an item is.
type Kind int

// Kinds of items.
const (
	KindFile       Kind = iota + 1 // Name is a path relative to the data directory
	KindCalFile                    // Cal and Name (one of CalFiles)
	KindState                      // the store's copy
	KindLedger                     // ledger entries, read with ReadEntries
	KindCheckpoint                 // the signed checkpoint
)

// Item is one item of a snapshot being read. Its content must be read
// (or skipped) before the next Next.
type Item struct {
	Kind Kind
	// Name is a file's path (KindFile) or a Cal's file name (KindCalFile).
	Name string
	// Cal is the Cal's ID (KindCalFile).
	Cal string
	// First is the index of the first ledger entry, Entries the entries
	// (KindLedger; the content is already read).
	First   uint64
	Entries [][]byte
	Mode    fs.FileMode
	Size    int64
	r       io.Reader
}

// Read reads the item's content.
func (it *Item) Read(p []byte) (int, error) { return it.r.Read(p) }

// itemPath checks name and returns its phase and what it names.
func itemPath(name string) (phase, Item, error) {
	if len(name) > MaxPath || name == "" || strings.ContainsRune(name, 0) || path.Clean(name) != name || path.IsAbs(name) || strings.HasPrefix(name, "../") || name == ".." {
		return 0, Item{}, corrupt("item name %q: want a clean relative path of at most %d bytes", name, MaxPath)
	}
	switch {
	case name == nameManifest:
		return phaseManifest, Item{}, nil
	case name == nameState:
		return phaseState, Item{Kind: KindState}, nil
	case name == nameCheckpoint:
		return phaseCheckpoint, Item{Kind: KindCheckpoint}, nil
	case name == nameEnd:
		return phaseEnd, Item{}, nil
	case strings.HasPrefix(name, prefixFiles):
		rel := strings.TrimPrefix(name, prefixFiles)
		for _, c := range strings.Split(rel, "/") {
			if c == "" || c == "." || c == ".." {
				return 0, Item{}, corrupt("item name %q: a bad path component", name)
			}
		}
		return phaseFiles, Item{Kind: KindFile, Name: rel}, nil
	case strings.HasPrefix(name, prefixCals):
		id, file, ok := strings.Cut(strings.TrimPrefix(name, prefixCals), "/")
		if !ok || !validID(id) || !knownCalFile(file) {
			return 0, Item{}, corrupt("item name %q: want cals/<cal id>/<%s>", name, strings.Join(CalFiles, "|"))
		}
		return phaseCals, Item{Kind: KindCalFile, Cal: id, Name: file}, nil
	case strings.HasPrefix(name, prefixLedger):
		n, err := strconv.ParseUint(strings.TrimPrefix(name, prefixLedger), 10, 64)
		if err != nil {
			return 0, Item{}, corrupt("item name %q: want ledger/<first entry index>", name)
		}
		return phaseLedger, Item{Kind: KindLedger, First: n}, nil
	}
	return 0, Item{}, corrupt("item name %q: not an item of this format", name)
}

func knownCalFile(name string) bool {
	for _, f := range CalFiles {
		if f == name {
			return true
		}
	}
	return false
}

// validID accepts a Cal ID's characters (lower-case base32), bounded.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func limitOf(p phase) int64 {
	switch p {
	case phaseManifest:
		return MaxManifest
	case phaseFiles:
		return MaxFile
	case phaseCals:
		return MaxCalFile
	case phaseState:
		return 16 << 30
	case phaseLedger:
		return MaxLedgerChunk
	case phaseCheckpoint:
		return ledger.MaxCheckpointSize
	}
	return 4 << 10
}

// end is end.json.
type end struct {
	Items  int    `json:"items"`
	SHA256 string `json:"sha256"`
}

// digest hashes each item's name, size and content, framed.
type digest struct {
	h     hash.Hash
	items int
}

func newDigest() *digest { return &digest{h: sha256.New()} }

func (d *digest) begin(name string, size int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(len(name)))
	d.h.Write(b[:])
	d.h.Write([]byte(name))
	binary.BigEndian.PutUint64(b[:], uint64(size))
	d.h.Write(b[:])
	d.items++
}

func (d *digest) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

// Writer writes a snapshot's payload (unencrypted; see Seal).
type Writer struct {
	tw    *tar.Writer
	d     *digest
	phase phase
	last  string
	bytes int64
	next  uint64 // the next ledger entry expected
	err   error
	mtime time.Time
}

// NewWriter writes m as the first item and returns the writer of the rest.
// m.Bytes is the caller's estimate; Reader does not rely on it.
func NewWriter(w io.Writer, m *Manifest) (*Writer, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	sw := &Writer{tw: tar.NewWriter(w), d: newDigest(), phase: phaseManifest, mtime: m.CreatedAt.UTC().Truncate(time.Second)}
	if err := sw.add(nameManifest, 0o600, int64(len(b)), bytes.NewReader(b)); err != nil {
		return nil, err
	}
	return sw, nil
}

// add writes one item, checking its place in the order and its limit.
func (w *Writer) add(name string, mode fs.FileMode, size int64, r io.Reader) error {
	if w.err != nil {
		return w.err
	}
	ph, _, err := itemPath(name)
	if err != nil {
		return err
	}
	if ph < w.phase || (ph == w.phase && ph != phaseLedger && name <= w.last && w.last != "") {
		return fmt.Errorf("snapshot: item %s out of order (after %s)", name, w.last)
	}
	if size < 0 || size > limitOf(ph) {
		return fmt.Errorf("snapshot: item %s: %d bytes, over the limit of %d", name, size, limitOf(ph))
	}
	if w.d.items >= MaxItems {
		return fmt.Errorf("snapshot: over %d items", MaxItems)
	}
	w.phase, w.last = ph, name
	w.d.begin(name, size)
	hdr := &tar.Header{Name: name, Mode: int64(mode.Perm()), Size: size, Typeflag: tar.TypeReg, ModTime: w.mtime, Format: tar.FormatPAX}
	if err := w.tw.WriteHeader(hdr); err != nil {
		w.err = err
		return err
	}
	n, err := io.Copy(io.MultiWriter(w.tw, w.d.h), io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("snapshot: item %s: %d of %d bytes: %w", name, n, size, io.ErrUnexpectedEOF)
	}
	if err != nil {
		w.err = err
		return err
	}
	w.bytes += size
	return nil
}

// File adds a file of the data directory (rel is its path there).
func (w *Writer) File(rel string, mode fs.FileMode, size int64, r io.Reader) error {
	return w.add(prefixFiles+rel, mode, size, r)
}

// CalFile adds one of a Cal's sandbox files (a name in CalFiles).
func (w *Writer) CalFile(id, name string, data []byte) error {
	return w.add(prefixCals+id+"/"+name, 0o600, int64(len(data)), bytes.NewReader(data))
}

// State adds the state store's copy.
func (w *Writer) State(size int64, r io.Reader) error {
	return w.add(nameState, 0o600, size, r)
}

// Ledger adds entries first, first+1, ... in order, split into items.
func (w *Writer) Ledger(first uint64, entries [][]byte) error {
	if first != w.next {
		return fmt.Errorf("snapshot: ledger entries from %d, want %d", first, w.next)
	}
	var buf bytes.Buffer
	flush := func(at uint64) error {
		if buf.Len() == 0 {
			return nil
		}
		err := w.add(prefixLedger+strconv.FormatUint(at, 10), 0o600, int64(buf.Len()), &buf)
		buf.Reset()
		return err
	}
	at := first
	for i, e := range entries {
		if len(e) > ledger.MaxEntrySize {
			return fmt.Errorf("snapshot: ledger entry %d: %d bytes, over %d", first+uint64(i), len(e), ledger.MaxEntrySize)
		}
		if buf.Len()+4+len(e) > MaxLedgerChunk {
			if err := flush(at); err != nil {
				return err
			}
			at = first + uint64(i)
		}
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(e)))
		buf.Write(n[:])
		buf.Write(e)
	}
	if err := flush(at); err != nil {
		return err
	}
	w.next = first + uint64(len(entries))
	return nil
}

// Checkpoint adds the ledger's signed checkpoint.
func (w *Writer) Checkpoint(note []byte) error {
	return w.add(nameCheckpoint, 0o600, int64(len(note)), bytes.NewReader(note))
}

// Bytes is the content written so far.
func (w *Writer) Bytes() int64 { return w.bytes }

// Close writes end.json and ends the archive. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	b, _ := json.Marshal(end{Items: w.d.items, SHA256: w.d.sum()})
	w.phase = phaseEnd
	hdr := &tar.Header{Name: nameEnd, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: w.mtime, Format: tar.FormatPAX}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := w.tw.Write(b); err != nil {
		return err
	}
	return w.tw.Close()
}

// Reader reads a snapshot's payload (decrypted; see Open), checking the
// order, names, limits and, at its end, the digest of everything read.
type Reader struct {
	tr             *tar.Reader
	m              *Manifest
	d              *digest
	phase          phase
	last           string
	cur            *Item
	nextLed        uint64
	done           bool
	seenCheckpoint bool
}

// NewReader reads the manifest and returns the reader of the rest.
func NewReader(r io.Reader) (*Reader, *Manifest, error) {
	sr := &Reader{tr: tar.NewReader(r), d: newDigest()}
	hdr, err := sr.header()
	if err != nil {
		return nil, nil, err
	}
	if hdr.Name != nameManifest {
		return nil, nil, corrupt("the first item is %q, not %s", hdr.Name, nameManifest)
	}
	b, err := sr.readAll(hdr)
	if err != nil {
		return nil, nil, err
	}
	if sr.m, err = parseManifest(b); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return sr, sr.m, nil
}

// header reads the next tar header and checks its type and size.
func (r *Reader) header() (*tar.Header, error) {
	hdr, err := r.tr.Next()
	if errors.Is(err, io.EOF) {
		return nil, corrupt("the archive ends before %s: the snapshot was cut short", nameEnd)
	}
	if err != nil {
		return nil, corrupt("archive: %v", err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil, corrupt("item %q: type %q, only regular files are allowed", hdr.Name, hdr.Typeflag)
	}
	if hdr.Mode&^0o777 != 0 {
		return nil, corrupt("item %q: mode %o, only permission bits are allowed", hdr.Name, hdr.Mode)
	}
	return hdr, nil
}

func (r *Reader) readAll(hdr *tar.Header) ([]byte, error) {
	ph, _, err := itemPath(hdr.Name)
	if err != nil {
		return nil, err
	}
	if hdr.Size < 0 || hdr.Size > limitOf(ph) {
		return nil, corrupt("item %s: %d bytes, over the limit of %d", hdr.Name, hdr.Size, limitOf(ph))
	}
	r.d.begin(hdr.Name, hdr.Size)
	b, err := io.ReadAll(io.TeeReader(io.LimitReader(r.tr, hdr.Size), r.d.h))
	if err != nil {
		return nil, corrupt("item %s: %v", hdr.Name, err)
	}
	if int64(len(b)) != hdr.Size {
		return nil, corrupt("item %s: %d of %d bytes", hdr.Name, len(b), hdr.Size)
	}
	return b, nil
}

// Next returns the next item, or io.EOF once end.json was read and the
// digest of everything before it matched. An error other than io.EOF
// wraps ErrCorrupt (or is the underlying reader's, which for an age
// stream means the file was changed or cut).
func (r *Reader) Next() (*Item, error) {
	if r.done {
		return nil, io.EOF
	}
	if r.cur != nil {
		// Whatever the caller left unread still counts in the digest.
		if _, err := io.Copy(io.Discard, r.cur.r); err != nil {
			return nil, corrupt("item %s: %v", r.last, err)
		}
		r.cur = nil
	}
	hdr, err := r.header()
	if err != nil {
		return nil, err
	}
	ph, it, err := itemPath(hdr.Name)
	if err != nil {
		return nil, err
	}
	if ph < r.phase || ph == phaseManifest || (ph == r.phase && ph != phaseLedger && hdr.Name <= r.last) {
		return nil, corrupt("item %s out of order (after %s)", hdr.Name, r.last)
	}
	if ph > phaseState && r.phase < phaseState {
		return nil, corrupt("item %s before %s: the snapshot has no state", hdr.Name, nameState)
	}
	r.phase, r.last = ph, hdr.Name
	if ph == phaseEnd {
		if !r.seenCheckpoint {
			return nil, corrupt("the snapshot has no ledger checkpoint")
		}
		if r.nextLed != r.m.Ledger.Size {
			return nil, corrupt("the snapshot holds %d ledger entries, its manifest says %d", r.nextLed, r.m.Ledger.Size)
		}
		want := end{Items: r.d.items, SHA256: r.d.sum()}
		b, err := r.readAll(hdr)
		if err != nil {
			return nil, err
		}
		var got end
		if err := strictjson.Unmarshal(b, 4<<10, &got); err != nil {
			return nil, corrupt("%s: %v", nameEnd, err)
		}
		if got != want {
			return nil, corrupt("%s: %d items with digest %s, but %d items with digest %s were read", nameEnd, got.Items, got.SHA256, want.Items, want.SHA256)
		}
		if _, err := r.tr.Next(); !errors.Is(err, io.EOF) {
			return nil, corrupt("something follows %s", nameEnd)
		}
		r.done = true
		return nil, io.EOF
	}
	if ph == phaseLedger {
		if it.First != r.nextLed {
			return nil, corrupt("ledger item %s: starts at entry %d, want %d", hdr.Name, it.First, r.nextLed)
		}
	}
	if ph == phaseCheckpoint {
		if r.nextLed != r.m.Ledger.Size {
			return nil, corrupt("the checkpoint follows %d ledger entries, the manifest says %d", r.nextLed, r.m.Ledger.Size)
		}
		r.seenCheckpoint = true
	}
	if hdr.Size < 0 || hdr.Size > limitOf(ph) {
		return nil, corrupt("item %s: %d bytes, over the limit of %d", hdr.Name, hdr.Size, limitOf(ph))
	}
	if ph == phaseState && hdr.Size != r.m.Store.Size {
		return nil, corrupt("%s: %d bytes, the manifest says %d", nameState, hdr.Size, r.m.Store.Size)
	}
	r.d.begin(hdr.Name, hdr.Size)
	it.Mode = fs.FileMode(hdr.Mode).Perm()
	it.Size = hdr.Size
	it.r = &exact{r: io.TeeReader(io.LimitReader(r.tr, hdr.Size), r.d.h), left: hdr.Size, name: hdr.Name}
	r.cur = &it
	if ph == phaseLedger {
		if err := r.readEntries(&it); err != nil {
			return nil, err
		}
	}
	return &it, nil
}

// exact fails with ErrCorrupt if its item ends before its size.
type exact struct {
	r    io.Reader
	left int64
	name string
}

func (e *exact) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) && e.left > 0 {
		return n, corrupt("item %s: cut short (%d bytes missing)", e.name, e.left)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, corrupt("item %s: %v", e.name, err)
	}
	return n, err
}

// readEntries reads a ledger item's entries and advances the count.
func (r *Reader) readEntries(it *Item) error {
	b, err := io.ReadAll(it.r)
	if err != nil {
		return err
	}
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return corrupt("ledger item at %d: a cut length", it.First)
		}
		n := binary.BigEndian.Uint32(b)
		if n > ledger.MaxEntrySize || int(n) > len(b)-4 {
			return corrupt("ledger item at %d: entry %d: length %d over the limit or past the item", it.First, it.First+uint64(len(out)), n)
		}
		out = append(out, b[4:4+n])
		b = b[4+n:]
	}
	if len(out) == 0 {
		return corrupt("ledger item at %d: no entries", it.First)
	}
	r.nextLed = it.First + uint64(len(out))
	if r.nextLed > r.m.Ledger.Size {
		return corrupt("ledger item at %d: entries past the manifest's size %d", it.First, r.m.Ledger.Size)
	}
	it.Entries = out
	return nil
}
