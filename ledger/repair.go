package ledger

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// RepairPlan is what Repair found in a log's files and what it does (or,
// in a dry run, would do) about it.
type RepairPlan struct {
	// Findings lists the damage, one line each, naming file and offset.
	Findings []string `json:"findings"`
	// Actions lists the changes, in order.
	Actions []string `json:"actions"`
	// Lost lists acknowledged data that cannot be recovered from the files.
	// Repair refuses to change anything when it is not empty.
	Lost []string `json:"lost,omitempty"`
	// Size and Root are the log the repair leaves (or would leave).
	Size uint64 `json:"size"`
	Root []byte `json:"root"`
	// Applied is set when the actions were carried out.
	Applied bool `json:"applied"`
}

// ErrWouldLose is returned (wrapped) by Repair when acknowledged entries
// are damaged beyond what the files can rebuild.
var ErrWouldLose = errors.New("repair would lose acknowledged entries")

// Repair examines a log that Open refuses and rebuilds what the files
// still prove, never dropping an acknowledged entry: the acknowledged size
// is the largest of the head file's and every intact signed checkpoint's.
// It can rebuild the index from intact entries, re-sign a checkpoint for
// the acknowledged size and root (cfg.Signer is required then), rewrite a
// damaged head, and drop what lies beyond the acknowledged size (a tail no
// checkpoint covers). If an acknowledged entry itself is damaged it changes
// nothing and returns the plan with Lost set and an error wrapping
// ErrWouldLose: restore the entries file from a backup. With dryRun it only
// reports. It takes the writer's lock, so the log must not be open.
func Repair(cfg Config, dryRun bool) (*RepairPlan, error) {
	if cfg.LogKey == nil || cfg.Origin == "" {
		return nil, errors.New("ledger: LogKey and Origin are required")
	}
	lk, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer lk.Close()
	p := &RepairPlan{}
	find := func(format string, args ...any) { p.Findings = append(p.Findings, fmt.Sprintf(format, args...)) }
	act := func(format string, args ...any) { p.Actions = append(p.Actions, fmt.Sprintf(format, args...)) }
	path := func(name string) string { return filepath.Join(cfg.Dir, name) }

	// What was acknowledged: the head, and every intact signed checkpoint.
	var hd head
	headOK := false
	hb, ok, err := readSmallFile(path(headFile), headSize)
	switch {
	case err != nil:
		find("%s: %v", headFile, err)
	case !ok:
		find("%s: missing", headFile)
	default:
		var bad []int
		hd, bad, err = parseHead(hb)
		headOK = err == nil
		if err != nil {
			find("%s: %v", headFile, err)
		}
		for _, s := range bad {
			if !allZero(hb[s*headSlot : (s+1)*headSlot]) {
				find("%s: slot %d (offset %d) is damaged", headFile, s, s*headSlot)
			}
		}
	}
	cb, _, err := readSmallFile(path(checkpointsFile), maxCheckpointsFile)
	if err != nil {
		return nil, err
	}
	recs, firstDamage, cpFindings := intactCheckpoints(cb)
	p.Findings = append(p.Findings, cpFindings...)
	type signed struct {
		rec cpRecord
		cp  *Checkpoint
	}
	var cps []signed
	maxSeq := hd.Seq
	for _, r := range recs {
		cp, err := VerifyCheckpoint(r.Note, cfg.Origin, cfg.LogKey)
		if err != nil {
			find("%s: record #%d at offset %d: %v", checkpointsFile, r.Seq, r.Off, err)
			if firstDamage < 0 || r.Off < firstDamage {
				firstDamage = r.Off
			}
			continue
		}
		cps = append(cps, signed{r, cp})
		maxSeq = max(maxSeq, r.Seq)
	}
	var target uint64
	var root []byte
	var best *signed
	for i := range cps {
		if cps[i].cp.Size >= target {
			target, root, best = cps[i].cp.Size, cps[i].cp.Root, &cps[i]
		}
	}
	if headOK && hd.Seq > 0 && (best == nil || hd.Size > target) {
		target, root, best = hd.Size, hd.Root, nil
	}
	if !headOK {
		find("without a readable %s, nothing proves that no checkpoint after the latest intact one was acknowledged", headFile)
	}
	if root == nil {
		root = hasher.EmptyRoot()
	}

	// The entries as the files hold them: the index, and the intact frames
	// of the entries file.
	ib, err := os.ReadFile(path(indexFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	idx := len(ib) / indexRecord
	frames, frameErr := scanEntries(path(entriesFile))
	var fromIndex, fromEntries tree
	for i := 0; i < idx && uint64(i) < target; i++ {
		fromIndex.push(ib[i*indexRecord+8 : (i+1)*indexRecord])
	}
	for i := 0; i < len(frames) && uint64(i) < target; i++ {
		fromEntries.push(frames[i].leaf)
	}
	indexOK := uint64(idx) >= target && rootIs(&fromIndex, target, root)
	entriesOK := uint64(len(frames)) >= target && rootIs(&fromEntries, target, root)
	if indexOK && entriesOK {
		for i := uint64(0); i < target; i++ {
			if int64(binary.BigEndian.Uint64(ib[i*indexRecord:])) != frames[i].off {
				indexOK = false
				find("%s: record %d gives entry offset %d, the entry is at %d", indexFile, i, binary.BigEndian.Uint64(ib[i*indexRecord:]), frames[i].off)
				break
			}
		}
	}
	switch {
	case !entriesOK:
		where := fmt.Sprintf("%d intact entries", len(frames))
		if frameErr != "" {
			where += "; then " + frameErr
		}
		if uint64(len(frames)) >= target {
			where += fmt.Sprintf("; their root at size %d is not the acknowledged one", target)
		}
		p.Lost = append(p.Lost, fmt.Sprintf("%s: %d entries were acknowledged (root %x), the file holds %s: restore %s from a backup", entriesFile, target, root, where, path(entriesFile)))
	case !indexOK:
		find("%s: does not match the acknowledged root at size %d", indexFile, target)
		act("rebuild %s from the %d acknowledged entries", indexFile, target)
	}
	p.Size, p.Root = target, root
	for _, s := range cps {
		if s.cp.Size <= target && entriesOK {
			if r, _ := fromEntries.root(s.cp.Size); !bytes.Equal(r, s.cp.Root) {
				p.Lost = append(p.Lost, fmt.Sprintf("%s: record #%d (size %d) is signed but does not match the entries: the history forked", checkpointsFile, s.rec.Seq, s.cp.Size))
			}
		}
	}
	if len(p.Lost) > 0 {
		return p, fmt.Errorf("%w: %s", ErrWouldLose, p.Lost[0])
	}

	// Beyond the acknowledged size: a tail never acknowledged.
	var keepEnd int64
	if target > 0 {
		keepEnd = frames[target-1].off + frames[target-1].size
	}
	if fi, err := os.Stat(path(entriesFile)); err == nil && fi.Size() > keepEnd {
		act("drop %d bytes of %s after offset %d (%d entries no acknowledged checkpoint covers, or a torn write)", fi.Size()-keepEnd, entriesFile, keepEnd, max(0, len(frames)-int(target)))
	}
	if indexOK && int64(len(ib)) > int64(target)*indexRecord {
		act("drop %d bytes of %s after offset %d", int64(len(ib))-int64(target)*indexRecord, indexFile, int64(target)*indexRecord)
	}
	// The checkpoints file: kept if its latest intact record is the
	// acknowledged checkpoint and all damage lies after it, else rewritten
	// with that checkpoint (re-signed if no intact copy exists).
	var bestEnd int64
	if best != nil {
		bestEnd = best.rec.Off + cpRecordHeader + int64(len(best.rec.Note))
	}
	latestOK := best != nil && &cps[len(cps)-1] == best && best.rec.Seq >= hd.Seq && bytes.HasPrefix(cb, []byte(cpMagic)) &&
		(firstDamage < 0 || firstDamage >= bestEnd)
	var note []byte
	seq := maxSeq + 1
	switch {
	case latestOK:
		seq = best.rec.Seq
		if int64(len(cb)) > bestEnd {
			act("drop %d bytes of %s after offset %d (a record never acknowledged)", int64(len(cb))-bestEnd, checkpointsFile, bestEnd)
		}
	case best != nil:
		note = best.rec.Note
		act("rewrite %s with checkpoint #%d (size %d): the intact signed copy of the acknowledged checkpoint", checkpointsFile, seq, target)
	default:
		act("sign a new checkpoint #%d for the acknowledged size %d and root %x, and rewrite %s with it", seq, target, root, checkpointsFile)
		if cfg.Signer == nil && !dryRun {
			return p, errors.New("ledger repair: re-signing the acknowledged checkpoint needs the log key")
		}
	}
	if !headOK || hd.Seq != seq || hd.Size != target || !bytes.Equal(hd.Root, root) || len(p.Findings) > 0 {
		act("write %s naming checkpoint #%d (size %d)", headFile, seq, target)
	}
	if len(p.Actions) == 0 || dryRun {
		return p, nil
	}

	// Carry it out: index and entries first, then the checkpoint, then the
	// head that names it.
	if !indexOK {
		nb := make([]byte, 0, target*indexRecord)
		var rec [indexRecord]byte
		for i := uint64(0); i < target; i++ {
			binary.BigEndian.PutUint64(rec[:8], uint64(frames[i].off))
			copy(rec[8:], frames[i].leaf)
			nb = append(nb, rec[:]...)
		}
		if err := writeFileSync(path(indexFile), nb, 0); err != nil {
			return p, err
		}
	}
	for _, t := range []struct {
		name string
		size int64
	}{{entriesFile, keepEnd}, {indexFile, int64(target) * indexRecord}} {
		if err := truncateSync(path(t.name), t.size); err != nil {
			return p, err
		}
	}
	switch {
	case latestOK:
		if err := truncateSync(path(checkpointsFile), bestEnd); err != nil {
			return p, err
		}
	default:
		if note == nil {
			if note, err = signCheckpoint(cfg.Origin, target, root, cfg.Signer); err != nil {
				return p, err
			}
		}
		if err := writeFileSync(path(checkpointsFile), append(cpHeader(), cpRecordBytes(seq, note)...), 0); err != nil {
			return p, err
		}
	}
	nh := make([]byte, headSize)
	copy(nh[slotOffset(seq):], head{Seq: seq, Size: target, Root: root}.slot())
	if err := writeFileSync(path(headFile), nh, headSize); err != nil {
		return p, err
	}
	if err := syncDir(cfg.Dir); err != nil {
		return p, err
	}
	p.Applied = true
	return p, nil
}

func rootIs(t *tree, size uint64, want []byte) bool {
	if t.size() < size {
		return false
	}
	r, err := t.root(size)
	return err == nil && bytes.Equal(r, want)
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() <= size {
		return err
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// intactCheckpoints returns every intact record of a checkpoints file (of
// either format), searching past damage, the offset of the first damage
// (-1 if none) and a finding per damaged span.
func intactCheckpoints(b []byte) ([]cpRecord, int64, []string) {
	if len(b) == 0 {
		return nil, 0, []string{checkpointsFile + ": empty or missing"}
	}
	if isLegacyCheckpoints(b) {
		s := parseLegacyCheckpoints(b)
		if s.Damage != nil {
			return s.Records, s.Damage.Off, []string{fmt.Sprintf("%s (format 1): %s", checkpointsFile, s.Damage)}
		}
		return s.Records, -1, nil
	}
	if len(b) < cpFileHeader || !bytes.Equal(b[:8], []byte(cpMagic)) || crc32.Checksum(b[:12], crcTable) != binary.BigEndian.Uint32(b[12:16]) {
		return nil, 0, []string{checkpointsFile + ": file header damaged"}
	}
	var recs []cpRecord
	var findings []string
	first := int64(-1)
	for off := int64(cpFileHeader); off < int64(len(b)); {
		rec, end, _, reason := recordAt(b, off)
		if reason == "" {
			recs = append(recs, rec)
			off = end
			continue
		}
		if first < 0 {
			first = off
		}
		findings = append(findings, fmt.Sprintf("%s: record at offset %d: %s", checkpointsFile, off, reason))
		next := int64(len(b))
		for q := off + 1; q+cpRecordHeader <= int64(len(b)); q++ {
			if _, _, _, r := recordAt(b, q); r == "" {
				next = q
				break
			}
		}
		off = next
	}
	return recs, first, findings
}

type entryFrame struct {
	off, size int64
	leaf      []byte
}

// scanEntries reads the entries file's frames from the start until the
// first one that is cut short or fails its checksum.
func scanEntries(path string) ([]entryFrame, string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err.Error()
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var out []entryFrame
	var off int64
	var hdr [frameHeader]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return out, ""
			}
			return out, fmt.Sprintf("entry %d at offset %d is cut short", len(out), off)
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > MaxEntrySize {
			return out, fmt.Sprintf("entry %d at offset %d: length %d over the limit", len(out), off, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return out, fmt.Sprintf("entry %d at offset %d is cut short", len(out), off)
		}
		if crc32.Checksum(b, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			return out, fmt.Sprintf("entry %d at offset %d: checksum mismatch", len(out), off)
		}
		out = append(out, entryFrame{off: off, size: frameHeader + int64(n), leaf: hasher.HashLeaf(b)})
		off += frameHeader + int64(n)
	}
}
