package auditlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/ledger"
)

// AnchorData is the document of a ledger entry of type audit: the trail's
// head when it was anchored.
type AnchorData struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Anchor is an AnchorData found in the ledger.
type Anchor struct {
	AnchorData
	// LedgerIndex is the ledger entry that holds it.
	LedgerIndex uint64 `json:"ledger_index"`
}

// AnchorsIn returns the audit anchors the ledger holds, oldest first.
func AnchorsIn(ctx context.Context, lg *ledger.Log) ([]Anchor, error) {
	var out []Anchor
	for i := uint64(0); i < lg.Size(); i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		raw, err := lg.Entry(i)
		if err != nil {
			return nil, err
		}
		// Cheap test before decoding every entry.
		if !bytes.Contains(raw[:min(len(raw), 32)], []byte(`"type":"audit"`)) {
			continue
		}
		e, err := ledger.DecodeEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("ledger entry %d: %w", i, err)
		}
		if e.Type != ledger.TypeAudit {
			continue
		}
		var a AnchorData
		if err := strictjson.Unmarshal(e.Data, 1024, &a); err != nil || len(a.Hash) != 64 || !isHex(a.Hash) {
			return nil, fmt.Errorf("ledger entry %d: not an audit anchor: %v", i, err)
		}
		out = append(out, Anchor{AnchorData: a, LedgerIndex: i})
	}
	return out, nil
}

// AnchorEntry is the ledger entry that anchors the trail at its head.
func AnchorEntry(seq uint64, hash string) (json.RawMessage, error) {
	return json.Marshal(AnchorData{Seq: seq, Hash: hash})
}

// Problem is one break of the chain, naming where it is.
type Problem struct {
	File string `json:"file"`
	Line int    `json:"line,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
	What string `json:"what"`
}

func (p Problem) String() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.What)
	}
	if p.Seq == 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.What)
	}
	return fmt.Sprintf("%s:%d (seq %d): %s", p.File, p.Line, p.Seq, p.What)
}

// Report is the result of Verify.
type Report struct {
	OK       bool   `json:"ok"`
	Segments int    `json:"segments"`
	Records  uint64 `json:"records"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Head     string `json:"head"`
	// Pruned is set when the kept trail does not start at the network's
	// first record (older segments were removed by retention).
	Pruned bool `json:"pruned"`
	// AnchorsChecked and AnchorsBefore count the ledger anchors checked
	// against the trail, and those older than its first kept record.
	// Dropped counts events declared by audit.dropped records: published
	// while the disk was below the reserve, never written.
	Dropped        uint64    `json:"dropped"`
	AnchorsChecked int       `json:"anchors_checked"`
	AnchorsBefore  int       `json:"anchors_before"`
	Problems       []Problem `json:"problems"`
	// TornTail is set when the newest segment ends with a partial line: a
	// write in progress, or cut short by a crash (the next open drops it).
	TornTail bool `json:"torn_tail"`
}

// Verify re-reads the trail in dir and checks every line: that it is a
// record, that its hash matches its content (else it was edited), that its
// sequence number follows the one before (else lines were removed or
// reordered), that its prev is the hash before it, that each segment starts
// where its name says; and that every ledger anchor at or after the first
// kept record names a record with that hash (else the trail was cut or
// rewritten back past it). Problems name the file, the line and the
// sequence number.
func Verify(ctx context.Context, dir, network string, anchors []Anchor) (*Report, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	anchors = append([]Anchor(nil), anchors...)
	sort.Slice(anchors, func(i, j int) bool { return anchors[i].Seq < anchors[j].Seq })
	rep := &Report{Segments: len(segs), Problems: []Problem{}}
	add := func(p Problem) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, p)
		}
	}
	var prevSeq uint64
	prevHash := ""
	ai := 0
	for si, s := range segs {
		name := filepath.Base(s.path)
		f, err := os.Open(s.path)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), MaxLine+2)
		sc.Split(linesWithNewline)
		line := 0
		for sc.Scan() {
			if line%4096 == 0 && ctx.Err() != nil {
				f.Close()
				return nil, ctx.Err()
			}
			b := sc.Bytes()
			line++
			if !bytes.HasSuffix(b, []byte("\n")) { // the last line is partial
				if si == len(segs)-1 {
					rep.TornTail = true
				} else {
					add(Problem{File: name, Line: line, What: "a partial line in the middle of the trail: the segment was cut short"})
				}
				break
			}
			rec, hashOK, derr := decode(bytes.TrimSuffix(b, []byte("\n")))
			if derr != nil {
				add(Problem{File: name, Line: line, What: derr.Error()})
				continue
			}
			p := Problem{File: name, Line: line, Seq: rec.Seq}
			if !hashOK {
				p.What = "the line's hash does not match its content: it was edited"
				add(p)
			}
			switch {
			case rep.Records == 0:
				rep.FirstSeq = rec.Seq
				if line != 1 || rec.Seq != s.first {
					p.What = fmt.Sprintf("the segment's name says its first record is seq %d", s.first)
					add(p)
				}
				if rec.Seq == 1 && rec.Prev != Genesis(network) {
					p.What = "the first record does not start this network's chain (prev is not its genesis hash)"
					add(p)
				}
				rep.Pruned = rec.Seq > 1
			case rec.Seq == prevSeq+1:
				if rec.Prev != prevHash {
					p.What = fmt.Sprintf("prev is not the hash of seq %d before it: the line before was edited or replaced", prevSeq)
					add(p)
				}
			case rec.Seq <= prevSeq:
				p.What = fmt.Sprintf("seq %d follows seq %d: lines were reordered or repeated", rec.Seq, prevSeq)
				add(p)
			case rec.Type == TypeDropped && len(rec.Dropped) == 2 && rec.Dropped[0] == prevSeq+1 && rec.Dropped[1] == rec.Seq-1:
				// A declared gap: events the disk reserve kept out.
				if rec.Prev != prevHash {
					p.What = fmt.Sprintf("prev is not the hash of seq %d before it: the line before was edited or replaced", prevSeq)
					add(p)
				}
				rep.Dropped += rec.Dropped[1] - rec.Dropped[0] + 1
			default:
				p.What = fmt.Sprintf("seq %d follows seq %d: %d records were removed", rec.Seq, prevSeq, rec.Seq-prevSeq-1)
				add(p)
			}
			if line == 1 && rep.Records > 0 && rec.Seq != s.first {
				p.What = fmt.Sprintf("the segment's name says its first record is seq %d", s.first)
				add(p)
			}
			for ai < len(anchors) && anchors[ai].Seq < rec.Seq {
				if anchors[ai].Seq < rep.FirstSeq {
					rep.AnchorsBefore++
				} else {
					add(Problem{File: name, Line: line, Seq: rec.Seq, What: fmt.Sprintf("the ledger anchored seq %d (entry %d), which is not in the trail", anchors[ai].Seq, anchors[ai].LedgerIndex)})
				}
				ai++
			}
			for ai < len(anchors) && anchors[ai].Seq == rec.Seq {
				if anchors[ai].Hash != rec.Hash {
					p.What = fmt.Sprintf("the ledger anchored this seq with hash %s (entry %d), the trail has %s: the trail was rewritten", anchors[ai].Hash[:16], anchors[ai].LedgerIndex, rec.Hash[:16])
					add(p)
				}
				rep.AnchorsChecked++
				ai++
			}
			prevSeq, prevHash = rec.Seq, rec.Hash
			rep.Records++
		}
		if err := sc.Err(); err != nil {
			add(Problem{File: name, Line: line + 1, What: fmt.Sprintf("unreadable: %v (a line over %d bytes?)", err, MaxLine)})
		}
		f.Close()
	}
	rep.LastSeq, rep.Head = prevSeq, prevHash
	for ; ai < len(anchors); ai++ {
		a := anchors[ai]
		if rep.Records > 0 && a.Seq < rep.FirstSeq {
			rep.AnchorsBefore++
			continue
		}
		add(Problem{File: dir, What: fmt.Sprintf("the ledger anchored seq %d (entry %d) but the trail ends at seq %d: it was cut short or removed", a.Seq, a.LedgerIndex, rep.LastSeq)})
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

// linesWithNewline splits like bufio.ScanLines but keeps each line's
// newline, so that a last line without one can be told apart.
func linesWithNewline(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
