package auditlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/atomicfile"
)

// Config configures a Log.
type Config struct {
	// Dir holds the segments; it is created (0700) if missing.
	Dir string
	// Network is the network ID; it seeds the chain.
	Network string
	// MaxSegment is the size at which a segment is closed (default
	// DefaultMaxSegment).
	MaxSegment int64
	// KeepSegments is how many segments are kept (default
	// DefaultKeepSegments).
	KeepSegments int
	Logger       *slog.Logger
}

// Log is an open audit trail. It is safe for concurrent use.
type Log struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	seq      uint64   // of the newest record appended (or skipped)
	head     string   // the hash of the newest record appended
	skipped  []uint64 // first and last seq skipped since the last append
	skipWhy  string
	queue    []queued
	written  uint64 // newest record written to its segment (not yet synced)
	synced   uint64 // newest record synced
	err      error  // a failed write: later appends fail too
	closing  bool
	progress chan struct{} // closed and replaced whenever written or synced moves
	kick     chan struct{}
	done     chan struct{}
	syncs    atomic.Uint64 // fsyncs of segments, for measurements

	// Owned by the writer goroutine (and Query, under segMu).
	segMu   sync.RWMutex
	segs    []segment // in order; the last is the active one
	active  *os.File
	actSize int64
}

type queued struct {
	seq  uint64
	line []byte // with its newline
}

// segment is one file of the trail.
type segment struct {
	first uint64 // sequence number of its first record
	path  string
	size  int64 // bytes written (the active one grows)
}

const segPrefix, segSuffix = "audit-", ".jsonl"

func segName(first uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, first, segSuffix) }

// listSegments returns the segments of dir in order.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []segment
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, segPrefix) || !strings.HasSuffix(n, segSuffix) || !e.Type().IsRegular() {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, segPrefix), segSuffix), 10, 64)
		if err != nil || segName(first) != n {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, segment{first: first, path: filepath.Join(dir, n), size: fi.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first < out[j].first })
	return out, nil
}

// Open opens (or starts) the trail in cfg.Dir and continues its chain: the
// sequence number and hash go on from its last record. A last line cut
// short by a crash (no newline) is dropped; a last line that is not a
// record refuses to open, naming the file and line.
func Open(cfg Config) (*Log, error) {
	if cfg.Network == "" {
		return nil, errors.New("audit log: Network is required")
	}
	if cfg.MaxSegment <= 0 {
		cfg.MaxSegment = DefaultMaxSegment
	}
	if cfg.KeepSegments <= 0 {
		cfg.KeepSegments = DefaultKeepSegments
	}
	l := &Log{cfg: cfg, log: cfg.Logger, progress: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan struct{})}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	segs, err := listSegments(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l.segs = segs
	l.head = Genesis(cfg.Network)
	// The chain goes on from the last record of the last non-empty segment.
	for i := len(segs) - 1; i >= 0; i-- {
		rec, ok, err := l.lastRecord(&l.segs[i])
		if err != nil {
			return nil, err
		}
		if ok {
			l.seq, l.head = rec.Seq, rec.Hash
			break
		}
		if i == 0 {
			l.seq = segs[0].first - 1 // an empty first segment
		}
	}
	l.written, l.synced = l.seq, l.seq
	if n := len(l.segs); n > 0 {
		s := l.segs[n-1]
		if l.active, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		l.actSize = s.size
	}
	go l.writer()
	return l, nil
}

// lastRecord reads the last line of seg, dropping a partial one.
func (l *Log) lastRecord(seg *segment) (api.AuditRecord, bool, error) {
	var rec api.AuditRecord
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return rec, false, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	// The last MaxLine+1 bytes hold the last complete line.
	start := max(0, seg.size-MaxLine-2)
	buf := make([]byte, seg.size-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return rec, false, fmt.Errorf("audit log: %w", err)
	}
	if cut := bytes.LastIndexByte(buf, '\n') + 1; cut < len(buf) {
		if start > 0 && cut == 0 {
			return rec, false, fmt.Errorf("audit log: %s ends with %d bytes that are not a line", seg.path, len(buf))
		}
		l.log.Warn("audit log: dropping a line a crash cut short", "file", seg.path, "bytes", len(buf)-cut)
		if err := f.Truncate(start + int64(cut)); err != nil {
			return rec, false, err
		}
		if err := f.Sync(); err != nil {
			return rec, false, err
		}
		seg.size = start + int64(cut)
		buf = buf[:cut]
	}
	if len(buf) == 0 {
		return rec, false, nil
	}
	lines := bytes.Split(buf[:len(buf)-1], []byte("\n"))
	last := lines[len(lines)-1]
	rec, hashOK, err := decode(last)
	if err != nil {
		return rec, false, fmt.Errorf("audit log: the last line of %s is not an audit record (%v): it was damaged or edited; `calnet audit verify` names what else is; move %s aside to start a new chain", seg.path, err, l.cfg.Dir)
	}
	if !hashOK {
		l.log.Warn("audit log: the last record's hash does not match its content (edited?); continuing the chain from it, `calnet audit verify` reports it", "file", seg.path, "seq", rec.Seq)
	}
	return rec, true, nil
}

// Append adds an event to the trail and returns its record: e.Seq is
// replaced by the trail's next sequence number. It does not wait for the
// disk; Sync does.
func (l *Log) Append(e api.Event) (api.AuditRecord, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return api.AuditRecord{}, l.err
	}
	if l.closing {
		return api.AuditRecord{}, errors.New("audit log: closed")
	}
	if l.skipped != nil {
		// First the record of what was skipped, so the gap is declared in
		// the chain.
		d := api.AuditRecord{Event: api.Event{Seq: l.seq + 1, Time: e.Time, Type: TypeDropped,
			Reason: fmt.Sprintf("%d events were published but not written: %s", l.skipped[1]-l.skipped[0]+1, l.skipWhy)}, Dropped: l.skipped, Prev: l.head}
		if err := l.queueLocked(&d); err != nil {
			return d, err
		}
		l.skipped = nil
	}
	e.Seq = l.seq + 1
	rec := api.AuditRecord{Event: e, Prev: l.head}
	return rec, l.queueLocked(&rec)
}

// TypeDropped is the type of the record that declares skipped events.
const TypeDropped = "audit.dropped"

func (l *Log) queueLocked(rec *api.AuditRecord) error {
	line, err := encode(rec)
	if err != nil {
		return err
	}
	l.seq, l.head = rec.Seq, rec.Hash
	l.queue = append(l.queue, queued{seq: rec.Seq, line: append(line, '\n')})
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return nil
}

// Skip gives e the next sequence number without writing it (the disk is
// below the reserve, why says so); the next Append first writes an
// audit.dropped record declaring every skipped number, so the chain shows
// the gap and its reason instead of a removal.
func (l *Log) Skip(e api.Event, why string) api.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Seq = l.seq + 1
	l.seq = e.Seq
	if l.skipped == nil {
		l.skipped = []uint64{e.Seq, e.Seq}
	}
	l.skipped[1], l.skipWhy = e.Seq, why
	return e
}

// Head returns the sequence number and hash of the newest record.
func (l *Log) Head() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Sync waits until every record appended before the call is on disk.
func (l *Log) Sync(ctx context.Context) error { return l.wait(ctx, true) }

// wait blocks until every record appended before the call is written to
// its segment (and, with sync, synced).
func (l *Log) wait(ctx context.Context, sync bool) error {
	l.mu.Lock()
	target := l.seq
	for {
		reached := l.written
		if sync {
			reached = l.synced
		}
		if reached >= target {
			l.mu.Unlock()
			return nil
		}
		if l.err != nil {
			err := l.err
			l.mu.Unlock()
			return err
		}
		ch := l.progress
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("audit log: %w", ctx.Err())
		}
		l.mu.Lock()
	}
}

// writer writes what was queued, fsyncs it, and repeats: every fsync covers
// all that queued while the previous one ran.
func (l *Log) writer() {
	defer close(l.done)
	for {
		l.mu.Lock()
		batch := l.queue
		l.queue = nil
		closing := l.closing
		l.mu.Unlock()
		if len(batch) == 0 {
			if closing {
				return
			}
			<-l.kick
			continue
		}
		err := l.writeBatch(batch)
		l.mu.Lock()
		if err != nil && l.err == nil {
			l.err = fmt.Errorf("audit log: %w", err)
			l.log.Error("audit log: write failed; the trail stops here", "err", err)
		}
		if err == nil {
			l.synced = batch[len(batch)-1].seq
			l.written = l.synced
		}
		close(l.progress)
		l.progress = make(chan struct{})
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (l *Log) writeBatch(batch []queued) error {
	var buf []byte
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		n, err := l.active.Write(buf)
		l.segMu.Lock()
		l.actSize += int64(n)
		l.segs[len(l.segs)-1].size = l.actSize
		l.segMu.Unlock()
		buf = buf[:0]
		return err
	}
	for _, q := range batch {
		if l.active == nil || l.actSize+int64(len(buf))+int64(len(q.line)) > l.cfg.MaxSegment && l.actSize+int64(len(buf)) > 0 {
			if err := flush(); err != nil {
				return err
			}
			if err := l.rotate(q.seq); err != nil {
				return err
			}
		}
		buf = append(buf, q.line...)
	}
	if err := flush(); err != nil {
		return err
	}
	// Make the lines visible to Query before the fsync completes.
	l.mu.Lock()
	l.written = batch[len(batch)-1].seq
	close(l.progress)
	l.progress = make(chan struct{})
	l.mu.Unlock()
	l.syncs.Add(1)
	return l.active.Sync()
}

// rotate closes the active segment (synced) and starts one whose first
// record is first; then it removes segments beyond KeepSegments.
func (l *Log) rotate(first uint64) error {
	if l.active != nil {
		if err := l.active.Sync(); err != nil {
			return err
		}
		l.active.Close()
	}
	p := filepath.Join(l.cfg.Dir, segName(first))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// The new segment's name is durable before any record goes in it.
	if err := atomicfile.SyncDir(l.cfg.Dir); err != nil {
		f.Close()
		return fmt.Errorf("new segment %s: sync directory: %w", p, err)
	}
	l.segMu.Lock()
	l.active, l.actSize = f, 0
	l.segs = append(l.segs, segment{first: first, path: p})
	var drop []segment
	if n := len(l.segs) - l.cfg.KeepSegments; n > 0 {
		drop = append(drop, l.segs[:n]...)
		l.segs = append([]segment(nil), l.segs[n:]...)
	}
	l.segMu.Unlock()
	for _, s := range drop {
		l.log.Info("audit log: removing the oldest segment (retention)", "file", s.path, "first_seq", s.first)
		os.Remove(s.path)
	}
	return nil
}

// Close writes and syncs what is queued and closes the trail.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closing = true
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-l.done
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	if l.active != nil {
		l.active.Close()
	}
	return err
}
