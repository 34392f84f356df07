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
	headFile        = "head"
	frameHeader     = 8  // u32 length + u32 CRC-32C
	indexRecord     = 40 // u64 offset + 32-byte leaf hash
	// maxCheckpointsFile bounds the checkpoints file read at open: a
	// format-1 file (one record per commit, never compacted) can be large.
	maxCheckpointsFile = 1 << 30
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

// ErrDamaged wraps every refusal to open a log whose files were damaged,
// truncated, reordered or replaced by older copies in a way that loses
// (or may lose) acknowledged data. Repair shows what can be recovered.
var ErrDamaged = errors.New("ledger damaged")

// Log is an open ledger. It is safe for concurrent use.
type Log struct {
	cfg      Config
	readOnly bool
	log      *slog.Logger

	mu        sync.Mutex // guards the fields below and the writers
	tree      tree
	offsets   []int64
	end       int64 // offset of the next entry record
	entries   *os.File
	index     *os.File
	cps       *os.File // the checkpoints file (writers only)
	headF     *os.File // the head file (writers only)
	lock      *os.File // the writer's lock (writers only)
	ew, iw    *bufio.Writer
	broken    error
	cpEnd     int64  // end of the last checkpoint record
	cpCount   int    // records in the checkpoints file
	seq       uint64 // sequence number of the latest checkpoint
	headDirty bool   // the head was written since its last sync
	durable   uint64
	latest    *Checkpoint
	commit    chan struct{} // closed when the running commit ends; nil if none
}

// Open opens or creates the log in cfg.Dir. It verifies the latest
// checkpoint with cfg.LogKey, checks it against the head file (so a
// checkpoints file that lost acknowledged records is refused), rebuilds the
// tree from the index and checks its root. A writer (cfg.Signer set) takes
// the directory's lock and drops only what a crash left beyond the last
// acknowledged checkpoint; any other damage is an error wrapping
// ErrDamaged that names the file and the record.
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
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		lk, err := lockDir(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		l.lock = lk
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
	l.entries, l.index = open(entriesFile), open(indexFile)
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

func frame(p []byte) []byte {
	out := make([]byte, frameHeader, frameHeader+len(p))
	binary.BigEndian.PutUint32(out[:4], uint32(len(p)))
	binary.BigEndian.PutUint32(out[4:], crc32.Checksum(p, crcTable))
	return append(out, p...)
}

// readSmallFile reads a whole regular file of at most limit bytes; a
// missing file is (nil, false, nil).
func readSmallFile(path string, limit int64) ([]byte, bool, error) {
	b, err := limitedfile.Read(path, limit)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return b, true, nil
}

// damaged wraps ErrDamaged.
func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprintf(format, args...))
}

// onDisk is what recover read of the head and checkpoints files.
type onDisk struct {
	head      head
	hasHead   bool
	headBad   []int // damaged head slots
	scan      *cpScan
	hasCPFile bool
	cpSize    int64
}

func (l *Log) readMeta() (*onDisk, error) {
	// The head first: a checkpoints file read after it holds every record
	// the head names, even while a writer appends or compacts.
	d := &onDisk{}
	hb, ok, err := readSmallFile(filepath.Join(l.cfg.Dir, headFile), headSize)
	if err != nil {
		return nil, err
	}
	if ok {
		d.hasHead = true
		if d.head, d.headBad, err = parseHead(hb); err != nil {
			return nil, damaged("%s: %v", headFile, err)
		}
	}
	cb, ok, err := readSmallFile(filepath.Join(l.cfg.Dir, checkpointsFile), maxCheckpointsFile)
	if err != nil {
		return nil, err
	}
	d.hasCPFile, d.cpSize = ok, int64(len(cb))
	switch {
	case len(cb) == 0:
		d.scan = &cpScan{Version: cpVersion}
	case isLegacyCheckpoints(cb):
		d.scan = parseLegacyCheckpoints(cb)
	default:
		if d.scan, err = parseCheckpoints(cb); err != nil {
			return nil, damaged("%s: %v", checkpointsFile, err)
		}
	}
	return d, nil
}

func (l *Log) recover() error {
	d, err := l.readMeta()
	if err != nil {
		return err
	}
	scan := d.scan
	if scan.Damage != nil && scan.Damage.Later {
		return damaged("%s: %s, and an intact record follows it: the file was damaged after it was written", checkpointsFile, scan.Damage)
	}
	if scan.Version == 1 && scan.Damage != nil {
		// Format 1 has no head file and no header checksum: a damaged
		// last frame may be an acknowledged checkpoint.
		return damaged("%s (format 1): %s; it may have been acknowledged", checkpointsFile, scan.Damage)
	}
	last := scan.latest()
	switch {
	case !d.hasHead && scan.Version == cpVersion && last != nil:
		return damaged("%s is missing but %s holds checkpoints: restore %s", headFile, checkpointsFile, filepath.Join(l.cfg.Dir, headFile))
	case d.hasHead && (last == nil && d.head.Seq > 0 || last != nil && last.Seq < d.head.Seq):
		have := "no checkpoint"
		if last != nil {
			have = fmt.Sprintf("checkpoint #%d", last.Seq)
		}
		if scan.Damage != nil {
			have += ", then a damaged " + scan.Damage.String()
		}
		return damaged("%s ends at %s, but %s records checkpoint #%d (size %d) as acknowledged: acknowledged checkpoints are missing (%s was truncated, damaged or replaced by an older copy)",
			checkpointsFile, have, headFile, d.head.Seq, d.head.Size, checkpointsFile)
	}
	if last == nil {
		// Nothing was ever acknowledged: a new log, or one whose creation
		// a crash interrupted.
		if st, _ := l.index.Stat(); st != nil && st.Size() > 0 && l.readOnly {
			return damaged("entries exist but no checkpoint covers them")
		}
		if l.readOnly {
			if !d.hasHead && !d.hasCPFile {
				return fmt.Errorf("no ledger here: %w", os.ErrNotExist)
			}
			return damaged("no checkpoint has been written yet")
		}
		if err := l.truncateTail(entriesFile, l.entries, 0); err != nil {
			return err
		}
		if err := l.truncateTail(indexFile, l.index, 0); err != nil {
			return err
		}
		return l.createMeta()
	}
	cp, err := VerifyCheckpoint(last.Note, l.cfg.Origin, l.cfg.LogKey)
	if err != nil {
		return damaged("%s: latest record #%d at offset %d: %v", checkpointsFile, last.Seq, last.Off, err)
	}
	if d.hasHead && d.head.Seq == last.Seq && (d.head.Size != cp.Size || string(d.head.Root) != string(cp.Root)) {
		return damaged("%s names checkpoint #%d at size %d, but that checkpoint has size %d and another root", headFile, d.head.Seq, d.head.Size, cp.Size)
	}
	if d.hasHead && d.head.Size > cp.Size {
		return damaged("%s records size %d, beyond the latest checkpoint's %d", headFile, d.head.Size, cp.Size)
	}
	if err := l.loadTree(cp); err != nil {
		return err
	}
	if d.hasHead && d.head.Seq > 0 {
		root, _ := l.tree.root(d.head.Size)
		if string(root) != string(d.head.Root) {
			return damaged("%s records root %x at size %d, but the index gives %x: the log's history differs from what was acknowledged", headFile, d.head.Root, d.head.Size, root)
		}
	}
	l.latest, l.durable, l.seq = cp, cp.Size, last.Seq
	l.cpEnd, l.cpCount = scan.End, len(scan.Records)
	if l.readOnly {
		return nil
	}
	// A writer drops what a crash left beyond the last acknowledged
	// checkpoint: never acknowledged, so never relied upon.
	if err := l.truncateTail(entriesFile, l.entries, l.end); err != nil {
		return err
	}
	if err := l.truncateTail(indexFile, l.index, int64(cp.Size)*indexRecord); err != nil {
		return err
	}
	if scan.Version == 1 {
		return l.migrate(last)
	}
	if l.cps, err = os.OpenFile(filepath.Join(l.cfg.Dir, checkpointsFile), os.O_RDWR, 0o600); err != nil {
		return err
	}
	if scan.Damage != nil {
		l.log.Warn("ledger: dropping a checkpoint record never acknowledged", "file", checkpointsFile, "damage", scan.Damage.String())
	}
	if err := l.truncateTail(checkpointsFile, l.cps, scan.End); err != nil {
		return err
	}
	os.Remove(filepath.Join(l.cfg.Dir, checkpointsFile+".tmp"))
	if l.headF, err = os.OpenFile(filepath.Join(l.cfg.Dir, headFile), os.O_RDWR, 0o600); err != nil {
		return err
	}
	if !d.hasHead || d.head.Seq < last.Seq {
		// Bring the head up to the latest checkpoint (it lags after a
		// crash between the checkpoint's sync and the head's write).
		if err := l.writeHead(head{Seq: last.Seq, Size: cp.Size, Root: cp.Root}, true); err != nil {
			return err
		}
	}
	return nil
}

// loadTree rebuilds the tree from the index up to the checkpoint's size
// and checks the root and the last entry.
func (l *Log) loadTree(cp *Checkpoint) error {
	st, err := l.index.Stat()
	if err != nil {
		return err
	}
	if have := uint64(st.Size() / indexRecord); have < cp.Size {
		return damaged("%s holds %d entries but the checkpoint covers %d: the log lost data", indexFile, have, cp.Size)
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
			return damaged("%s record %d (offset %d): entry offset %d out of order", indexFile, i, int64(i)*indexRecord, off)
		}
		l.offsets = append(l.offsets, off)
		l.tree.push(rec[8:])
	}
	root, err := l.tree.root(cp.Size)
	if err != nil {
		return err
	}
	if string(root) != string(cp.Root) {
		return damaged("%s does not match the checkpoint root at size %d: a record was changed or reordered (ledger verify names the entry)", indexFile, cp.Size)
	}
	if cp.Size > 0 {
		last := l.offsets[cp.Size-1]
		var hdr [frameHeader]byte
		if _, err := l.entries.ReadAt(hdr[:], last); err != nil {
			return damaged("%s: entry %d at offset %d: %v (the file lost data)", entriesFile, cp.Size-1, last, err)
		}
		l.end = last + frameHeader + int64(binary.BigEndian.Uint32(hdr[:4]))
		if _, err := l.readEntry(cp.Size - 1); err != nil {
			return fmt.Errorf("%w: %w", ErrDamaged, err)
		}
	}
	return nil
}

// truncateTail drops the bytes of f beyond size, which no acknowledged
// checkpoint covers.
func (l *Log) truncateTail(name string, f *os.File, size int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() <= size {
		return nil
	}
	l.log.Warn("ledger: dropping an unacknowledged tail", "file", name, "offset", size, "bytes", st.Size()-size)
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// createMeta writes the head (sequence 0: nothing acknowledged) and an
// empty checkpoints file, for a new log.
func (l *Log) createMeta() error {
	hp := filepath.Join(l.cfg.Dir, headFile)
	if err := writeFileSync(hp, head{Root: make([]byte, 32)}.slot(), headSize); err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(l.cfg.Dir, checkpointsFile), cpHeader(), 0); err != nil {
		return err
	}
	if err := syncDir(l.cfg.Dir); err != nil {
		return err
	}
	var err error
	if l.headF, err = os.OpenFile(hp, os.O_RDWR, 0o600); err != nil {
		return err
	}
	if l.cps, err = os.OpenFile(filepath.Join(l.cfg.Dir, checkpointsFile), os.O_RDWR, 0o600); err != nil {
		return err
	}
	l.cpEnd, l.cpCount = cpFileHeader, 0
	return nil
}

// writeFileSync replaces path with b (padded with zeros to size) through a
// temporary file and a rename, synced.
func writeFileSync(path string, b []byte, size int) error {
	if len(b) < size {
		b = append(b, make([]byte, size-len(b))...)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// migrate turns a format-1 checkpoints file into format 2 with its latest
// checkpoint, after writing the head that names it.
func (l *Log) migrate(last *cpRecord) error {
	l.log.Info("ledger: converting the checkpoints file to format 2", "checkpoints", last.Seq)
	hp := filepath.Join(l.cfg.Dir, headFile)
	h := head{Seq: last.Seq, Size: l.latest.Size, Root: l.latest.Root}
	b := make([]byte, headSize)
	copy(b[slotOffset(h.Seq):], h.slot())
	if err := writeFileSync(hp, b, headSize); err != nil {
		return err
	}
	if err := l.rewriteCheckpoints(last.Seq, last.Note); err != nil {
		return err
	}
	var err error
	l.headF, err = os.OpenFile(hp, os.O_RDWR, 0o600)
	return err
}

// rewriteCheckpoints replaces the checkpoints file with one holding only
// the given record, and reopens it.
func (l *Log) rewriteCheckpoints(seq uint64, note []byte) error {
	p := filepath.Join(l.cfg.Dir, checkpointsFile)
	b := append(cpHeader(), cpRecordBytes(seq, note)...)
	if err := writeFileSync(p, b, 0); err != nil {
		return err
	}
	if err := syncDir(l.cfg.Dir); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if l.cps != nil {
		l.cps.Close()
	}
	l.cps, l.cpEnd, l.cpCount = f, int64(len(b)), 1
	return nil
}

// writeHead writes h into its slot; sync makes it durable now, otherwise
// the next commit syncs it.
func (l *Log) writeHead(h head, sync bool) error {
	if _, err := l.headF.WriteAt(h.slot(), slotOffset(h.Seq)); err != nil {
		return err
	}
	if sync {
		l.headDirty = false
		return l.headF.Sync()
	}
	l.headDirty = true
	return nil
}

func (l *Log) closeFiles() {
	for _, f := range []*os.File{l.entries, l.index, l.cps, l.headF, l.lock} {
		if f != nil {
			f.Close()
		}
	}
}

// Append adds entries and returns their indices once a signed checkpoint
// covers them. Concurrent calls share commits (group commit).
func (l *Log) Append(ctx context.Context, entries ...Entry) ([]uint64, error) {
	st, err := l.Stage(entries...)
	if err != nil {
		return nil, err
	}
	if err := st.Wait(ctx); err != nil {
		return nil, err
	}
	return st.Indices, nil
}

// AppendRaw is Append for already-encoded entries.
func (l *Log) AppendRaw(ctx context.Context, leaves ...[]byte) ([]uint64, error) {
	st, err := l.StageRaw(leaves...)
	if err != nil {
		return nil, err
	}
	if err := st.Wait(ctx); err != nil {
		return nil, err
	}
	return st.Indices, nil
}

// Staged is a batch of entries given its place in the log but not yet
// durable. Stage under a lock of your own and Wait outside it: the lock
// orders your state changes as the log orders the entries, without being
// held across the disk writes, and concurrent callers share one commit.
type Staged struct {
	l *Log
	// Indices are the entries' positions in the log.
	Indices []uint64
	target  uint64
}

// Wait returns once a signed checkpoint covers the staged entries. An
// error means they may never become durable: the log is broken (ErrBroken)
// until reopened, or ctx ended first (they may still be committed).
func (st *Staged) Wait(ctx context.Context) error { return st.l.waitDurable(ctx, st.target) }

// Stage places entries at the end of the log without waiting for them to
// be durable; it does no disk I/O but buffered writes.
func (l *Log) Stage(entries ...Entry) (*Staged, error) {
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
	return l.StageRaw(leaves...)
}

// StageRaw is Stage for already-encoded entries.
func (l *Log) StageRaw(leaves ...[]byte) (*Staged, error) {
	if l.readOnly {
		return nil, errors.New("ledger: opened read-only")
	}
	l.mu.Lock()
	if l.broken != nil {
		l.mu.Unlock()
		return nil, l.broken
	}
	idx := make([]uint64, len(leaves))
	var rec [indexRecord]byte
	for i, b := range leaves {
		if len(b) > MaxBundleEntrySize {
			// Every entry must fit a tlog-tiles entry bundle (uint16 length).
			l.mu.Unlock()
			return nil, fmt.Errorf("ledger: entry is %d bytes, over the limit of %d", len(b), MaxBundleEntrySize)
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
	return &Staged{l: l, Indices: idx, target: target}, nil
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
//
// Order: entries and index are synced (with the previous commit's head
// write, while the checkpoint is signed); then the checkpoint record is
// appended and synced; then the head names it. So a checkpoint is never
// durable before the entries it covers, and the head never names a
// checkpoint that is not durable.
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
	seq := l.seq + 1
	headDirty := l.headDirty
	var root []byte
	if err == nil {
		root, err = l.tree.root(size)
	}
	l.mu.Unlock()

	var note []byte
	if err == nil {
		var wg sync.WaitGroup
		var se, si, sh error
		wg.Go(func() { se = l.entries.Sync() })
		wg.Go(func() { si = l.index.Sync() })
		if headDirty {
			wg.Go(func() { sh = l.headF.Sync() })
		}
		note, err = signCheckpoint(l.cfg.Origin, size, root, l.cfg.Signer)
		wg.Wait()
		err = errors.Join(err, se, si, sh)
	}
	if err == nil {
		rec := cpRecordBytes(seq, note)
		if _, err = l.cps.WriteAt(rec, l.cpEnd); err == nil {
			err = l.cps.Sync()
		}
		if err == nil {
			l.cpEnd += int64(len(rec))
			l.cpCount++
			err = l.writeHead(head{Seq: seq, Size: size, Root: root}, false)
		}
	}
	if err == nil && l.cpCount >= compactAfter {
		// The latest record is all verification needs from this file:
		// older checkpoints are implied by the tree (any consistency proof
		// can be built from it) and their holders keep their own copies.
		if err = l.rewriteCheckpoints(seq, note); err != nil {
			err = fmt.Errorf("compact %s: %w", checkpointsFile, err)
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.commit = nil
	close(done)
	if err != nil {
		l.broken = fmt.Errorf("%w: %v", ErrBroken, err)
		return l.broken
	}
	l.seq = seq
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

// Close syncs the head (appends are durable when they return), closes the
// files and releases the writer's lock. It waits for a running commit.
func (l *Log) Close() error {
	for {
		l.mu.Lock()
		if l.commit == nil {
			break
		}
		done := l.commit
		l.mu.Unlock()
		<-done
	}
	defer l.mu.Unlock()
	var err error
	if l.headDirty && l.headF != nil && l.broken == nil {
		err = l.headF.Sync()
		l.headDirty = false
	}
	l.closeFiles()
	if l.broken == nil {
		l.broken = errors.New("ledger: closed")
	}
	return err
}
