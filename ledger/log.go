package ledger

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/limitedfile"
)

const (
	entriesFile     = "entries"
	indexFile       = "index"
	checkpointsFile = "checkpoints"
	frameHeader     = 8  // u32 length + u32 CRC-32C
	indexRecord     = 40 // u64 offset + 32-byte leaf hash
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Config configures a Log.
type Config struct {
	// Dir holds the log's files; it is created (0700) if missing.
	Dir string
	// Origin names the log in its checkpoints (C2SP origin line).
	Origin string
	// LogKey verifies the log's checkpoints.
	LogKey *identity.PublicKey
	// Signer signs new checkpoints with the log key. Nil opens read-only.
	Signer identity.Signer
	Logger *slog.Logger
}

// ErrBroken is returned after a write failed; reopen the log to recover.
var ErrBroken = errors.New("ledger: a write failed; reopen the log")

// Log is an open ledger. It is safe for concurrent use.
type Log struct {
	cfg      Config
	readOnly bool
	log      *slog.Logger

	mu      sync.Mutex // guards the fields below and the writers
	tree    tree
	offsets []int64
	end     int64 // offset of the next entry record
	entries *os.File
	index   *os.File
	cps     *os.File
	ew, iw  *bufio.Writer
	broken  error
	cpEnd   int64
	durable uint64
	latest  *Checkpoint
	commit  chan struct{} // closed when the running commit ends; nil if none
}

// Open opens or creates the log in cfg.Dir. It verifies the latest
// checkpoint with cfg.LogKey, rebuilds the tree from the index, checks the
// root, and, unless read-only, truncates anything a crash left behind the
// checkpoint.
func Open(cfg Config) (*Log, error) {
	if cfg.LogKey == nil || cfg.Origin == "" {
		return nil, errors.New("ledger: LogKey and Origin are required")
	}
	l := &Log{cfg: cfg, readOnly: cfg.Signer == nil, log: cfg.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Signer != nil && !cfg.Signer.Public().Equal(cfg.LogKey) {
		return nil, errors.New("ledger: Signer is not the log key")
	}
	flag := os.O_RDWR | os.O_CREATE
	if l.readOnly {
		flag = os.O_RDONLY
	} else if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	var err error
	open := func(name string) *os.File {
		if err != nil {
			return nil
		}
		var f *os.File
		p := filepath.Join(cfg.Dir, name)
		if f, err = os.OpenFile(p, flag|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0o600); err == nil {
			// A device or a FIFO would be scanned for ever.
			if _, err = limitedfile.Regular(f, p); err != nil {
				f.Close()
				f = nil
			}
		}
		return f
	}
	l.entries, l.index, l.cps = open(entriesFile), open(indexFile), open(checkpointsFile)
	if err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("ledger %s: %w", cfg.Dir, err)
	}
	if !l.readOnly {
		l.ew = bufio.NewWriterSize(&offsetWriter{f: l.entries, off: l.end}, 1<<20)
		l.iw = bufio.NewWriterSize(&offsetWriter{f: l.index, off: int64(l.tree.size()) * indexRecord}, 1<<18)
		if l.latest == nil {
			// A new log: publish the empty tree's checkpoint.
			if err := l.commitNow(); err != nil {
				l.closeFiles()
				return nil, err
			}
		}
	}
	return l, nil
}

// offsetWriter writes at an explicit offset, so the file position never
// matters after a truncation.
type offsetWriter struct {
	f   *os.File
	off int64
}

func (w *offsetWriter) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// readFrames scans framed records, returning their payloads and the end of
// the last intact one. A torn or corrupt frame ends the scan.
func readFrames(f *os.File, limit int) (payloads [][]byte, end int64, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 1<<16)
	var hdr [frameHeader]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return payloads, end, nil
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if int(n) > limit {
			return payloads, end, nil
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return payloads, end, nil
		}
		if crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			return payloads, end, nil
		}
		payloads = append(payloads, p)
		end += frameHeader + int64(n)
	}
}

func frame(p []byte) []byte {
	out := make([]byte, frameHeader, frameHeader+len(p))
	binary.BigEndian.PutUint32(out[:4], uint32(len(p)))
	binary.BigEndian.PutUint32(out[4:], crc32.Checksum(p, crcTable))
	return append(out, p...)
}

func (l *Log) recover() error {
	notes, cpEnd, err := readFrames(l.cps, MaxCheckpointSize)
	if err != nil {
		return err
	}
	l.cpEnd = cpEnd
	if len(notes) == 0 {
		if st, _ := l.index.Stat(); st != nil && st.Size() > 0 {
			return errors.New("entries exist but no checkpoint covers them")
		}
		return nil
	}
	cp, err := VerifyCheckpoint(notes[len(notes)-1], l.cfg.Origin, l.cfg.LogKey)
	if err != nil {
		return fmt.Errorf("latest checkpoint: %w", err)
	}
	st, err := l.index.Stat()
	if err != nil {
		return err
	}
	if have := uint64(st.Size() / indexRecord); have < cp.Size {
		return fmt.Errorf("index holds %d entries but the checkpoint covers %d: the log lost data", have, cp.Size)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(l.index, 0, int64(cp.Size)*indexRecord), 1<<16)
	var rec [indexRecord]byte
	l.offsets = make([]int64, 0, cp.Size)
	for i := uint64(0); i < cp.Size; i++ {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return fmt.Errorf("read index: %w", err)
		}
		off := int64(binary.BigEndian.Uint64(rec[:8]))
		if (i == 0 && off != 0) || (i > 0 && off <= l.offsets[i-1]) {
			return fmt.Errorf("index entry %d: offset %d out of order", i, off)
		}
		l.offsets = append(l.offsets, off)
		l.tree.push(rec[8:])
	}
	root, err := l.tree.root(cp.Size)
	if err != nil {
		return err
	}
	if string(root) != string(cp.Root) {
		return fmt.Errorf("index does not match the checkpoint root at size %d", cp.Size)
	}
	if cp.Size > 0 {
		last := l.offsets[cp.Size-1]
		var hdr [frameHeader]byte
		if _, err := l.entries.ReadAt(hdr[:], last); err != nil {
			return fmt.Errorf("entry %d: %w", cp.Size-1, err)
		}
		l.end = last + frameHeader + int64(binary.BigEndian.Uint32(hdr[:4]))
		if _, err := l.readEntry(cp.Size - 1); err != nil {
			return err
		}
	}
	l.latest, l.durable = cp, cp.Size
	if l.readOnly {
		return nil
	}
	// Drop what a crash left beyond the checkpoint: never acknowledged.
	for _, t := range []struct {
		f    *os.File
		size int64
	}{{l.entries, l.end}, {l.index, int64(cp.Size) * indexRecord}, {l.cps, cpEnd}} {
		st, err := t.f.Stat()
		if err != nil {
			return err
		}
		if st.Size() > t.size {
			l.log.Warn("ledger: dropping an uncommitted tail", "file", filepath.Base(t.f.Name()), "bytes", st.Size()-t.size)
			if err := t.f.Truncate(t.size); err != nil {
				return err
			}
			if err := t.f.Sync(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Log) closeFiles() {
	for _, f := range []*os.File{l.entries, l.index, l.cps} {
		if f != nil {
			f.Close()
		}
	}
}

// Append adds entries and returns their indices once a signed checkpoint
// covers them. Concurrent calls share commits (group commit).
func (l *Log) Append(ctx context.Context, entries ...Entry) ([]uint64, error) {
	if l.readOnly {
		return nil, errors.New("ledger: opened read-only")
	}
	if len(entries) > MaxBatch {
		return nil, fmt.Errorf("ledger: %d entries in one append, over the limit of %d", len(entries), MaxBatch)
	}
	leaves := make([][]byte, len(entries))
	for i := range entries {
		b, err := entries[i].Encode()
		if err != nil {
			return nil, fmt.Errorf("ledger: entry %d: %w", i, err)
		}
		leaves[i] = b
	}
	return l.AppendRaw(ctx, leaves...)
}

// AppendRaw is Append for already-encoded entries.
func (l *Log) AppendRaw(ctx context.Context, leaves ...[]byte) ([]uint64, error) {
	l.mu.Lock()
	if l.broken != nil {
		l.mu.Unlock()
		return nil, l.broken
	}
	idx := make([]uint64, len(leaves))
	var rec [indexRecord]byte
	for i, b := range leaves {
		if len(b) > MaxEntrySize {
			l.mu.Unlock()
			return nil, fmt.Errorf("ledger: entry is %d bytes, over the limit of %d", len(b), MaxEntrySize)
		}
		leaf := hasher.HashLeaf(b)
		binary.BigEndian.PutUint64(rec[:8], uint64(l.end))
		copy(rec[8:], leaf)
		if _, err := l.ew.Write(frame(b)); err != nil {
			return nil, l.breakLocked(err)
		}
		if _, err := l.iw.Write(rec[:]); err != nil {
			return nil, l.breakLocked(err)
		}
		idx[i] = l.tree.size()
		l.offsets = append(l.offsets, l.end)
		l.end += frameHeader + int64(len(b))
		l.tree.push(leaf)
	}
	target := l.tree.size()
	l.mu.Unlock()
	if err := l.waitDurable(ctx, target); err != nil {
		return nil, err
	}
	return idx, nil
}

// breakLocked marks the log broken; l.mu must be held and is released.
func (l *Log) breakLocked(err error) error {
	l.broken = fmt.Errorf("%w: %v", ErrBroken, err)
	l.mu.Unlock()
	return l.broken
}

// waitDurable returns once a checkpoint covers target entries, running the
// commit itself when no other caller is.
func (l *Log) waitDurable(ctx context.Context, target uint64) error {
	for {
		l.mu.Lock()
		switch {
		case l.durable >= target:
			l.mu.Unlock()
			return nil
		case l.broken != nil:
			l.mu.Unlock()
			return l.broken
		case l.commit != nil:
			done := l.commit
			l.mu.Unlock()
			select {
			case <-done:
			case <-ctx.Done():
				return fmt.Errorf("ledger: waiting for commit: %w", ctx.Err())
			}
		default:
			l.mu.Unlock()
			if err := l.commitNow(); err != nil {
				return err
			}
		}
	}
}

// commitNow syncs what is staged and appends a signed checkpoint for it.
func (l *Log) commitNow() error {
	l.mu.Lock()
	if l.commit != nil {
		l.mu.Unlock()
		return nil
	}
	done := make(chan struct{})
	l.commit = done
	err := l.ew.Flush()
	if err == nil {
		err = l.iw.Flush()
	}
	size := l.tree.size()
	var root []byte
	if err == nil {
		root, err = l.tree.root(size)
	}
	l.mu.Unlock()

	if err == nil {
		err = l.entries.Sync()
	}
	if err == nil {
		err = l.index.Sync()
	}
	var note []byte
	if err == nil {
		note, err = signCheckpoint(l.cfg.Origin, size, root, l.cfg.Signer)
	}
	var end int64
	if err == nil {
		l.mu.Lock()
		end = l.cpEnd
		l.mu.Unlock()
		fr := frame(note)
		if _, err = l.cps.WriteAt(fr, end); err == nil {
			err = l.cps.Sync()
		}
		end += int64(len(fr))
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.commit = nil
	close(done)
	if err != nil {
		l.broken = fmt.Errorf("%w: %v", ErrBroken, err)
		return l.broken
	}
	l.cpEnd = end
	l.durable = size
	l.latest = &Checkpoint{Origin: l.cfg.Origin, Size: size, Root: root, Note: note}
	return nil
}

// Checkpoint returns the latest signed checkpoint.
func (l *Log) Checkpoint() *Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latest
}

// Size returns the number of durable entries.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable
}

// Entry returns the raw bytes of entry i, checked against its leaf hash.
func (l *Log) Entry(i uint64) ([]byte, error) {
	l.mu.Lock()
	if i >= l.durable {
		d := l.durable
		l.mu.Unlock()
		return nil, fmt.Errorf("ledger: entry %d does not exist (size %d)", i, d)
	}
	l.mu.Unlock()
	return l.readEntry(i)
}

func (l *Log) readEntry(i uint64) ([]byte, error) {
	l.mu.Lock()
	off := l.offsets[i]
	want := append([]byte(nil), l.tree.node(0, i)...)
	l.mu.Unlock()
	var hdr [frameHeader]byte
	if _, err := l.entries.ReadAt(hdr[:], off); err != nil {
		return nil, fmt.Errorf("ledger: entry %d: %w", i, err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n > MaxEntrySize {
		return nil, fmt.Errorf("ledger: entry %d: corrupted: length %d over the limit", i, n)
	}
	p := make([]byte, n)
	if _, err := l.entries.ReadAt(p, off+frameHeader); err != nil {
		return nil, fmt.Errorf("ledger: entry %d: %w", i, err)
	}
	if crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(hdr[4:]) || string(hasher.HashLeaf(p)) != string(want) {
		return nil, fmt.Errorf("ledger: entry %d: corrupted: its bytes do not match the Merkle leaf", i)
	}
	return p, nil
}

// Inclusion proves entry index is in the tree of size (0 means the latest
// checkpoint's size).
func (l *Log) Inclusion(index, size uint64) (*InclusionProof, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size == 0 {
		size = l.durable
	}
	if size > l.durable {
		return nil, fmt.Errorf("ledger: tree_size %d is beyond the latest checkpoint %d", size, l.durable)
	}
	if index >= size {
		return nil, fmt.Errorf("ledger: index %d is not below tree_size %d", index, size)
	}
	hs, err := l.tree.inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return &InclusionProof{Index: index, TreeSize: size, LeafHash: append([]byte(nil), l.tree.node(0, index)...), Hashes: hs}, nil
}

// Consistency proves the tree of oldSize is a prefix of newSize (0 means
// the latest checkpoint's size).
func (l *Log) Consistency(oldSize, newSize uint64) (*ConsistencyProof, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if newSize == 0 {
		newSize = l.durable
	}
	if newSize > l.durable {
		return nil, fmt.Errorf("ledger: new_size %d is beyond the latest checkpoint %d", newSize, l.durable)
	}
	if oldSize > newSize {
		return nil, fmt.Errorf("ledger: old_size %d is over new_size %d", oldSize, newSize)
	}
	hs, err := l.tree.consistency(oldSize, newSize)
	if err != nil {
		return nil, err
	}
	return &ConsistencyProof{OldSize: oldSize, NewSize: newSize, Hashes: hs}, nil
}

// Root returns the root of the tree of size entries (size <= Size()).
func (l *Log) Root(size uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size > l.durable {
		return nil, fmt.Errorf("ledger: size %d is beyond the latest checkpoint %d", size, l.durable)
	}
	return l.tree.root(size)
}

// Close flushes nothing (appends are durable when they return) and closes
// the files.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeFiles()
	if l.broken == nil {
		l.broken = errors.New("ledger: closed")
	}
	return nil
}
