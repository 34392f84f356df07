// Package vault is a Cal's encrypted storage and its reflection log: an
// append-only, hash-chained journal of observations, decisions and spawn
// outcomes. Every record is encrypted with age to the Cal's own hybrid
// post-quantum recipient (the key-encryption identity only the Cal holds,
// in memory), so the stored bytes reveal nothing and any change to them is
// detected on read: age authenticates each record, and each entry carries
// the hash of the one before it. A head file, signed with the Cal's
// identity key, pins the length and last hash, so dropping entries from
// the end is detected too. Chosen entries can be shared with another Cal by
// re-encrypting them to its recipient, signed by the sharer.
package vault

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"filippo.io/age"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/strictjson"
)

// Limits on entries.
const (
	MaxText     = 16 << 10
	MaxData     = 64 << 10
	maxRecord   = 128 << 10
	maxKindLen  = 32
	logFile     = "reflections.log"
	headFile    = "reflections.head"
	recordFrame = 8 // u32 length + u32 CRC-32C of the ciphertext
)

// Kinds of reflection.
const (
	KindObservation  = "observation"
	KindDecision     = "decision"
	KindSpawnOutcome = "spawn-outcome"
	KindNote         = "note"
)

// Entry is one reflection.
type Entry struct {
	Seq  uint64          `json:"seq"`
	Time time.Time       `json:"time"`
	Kind string          `json:"kind"`
	Text string          `json:"text"`
	Data json.RawMessage `json:"data,omitempty"`
	// Prev is the hash of the previous entry (hex; empty for the first).
	Prev string `json:"prev"`
}

// Hash is the entry's chain hash: SHA-256 of its canonical JSON.
func (e *Entry) Hash() string {
	b, _ := json.Marshal(e)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func validate(kind, text string, data json.RawMessage) error {
	switch {
	case kind == "" || len(kind) > maxKindLen:
		return fmt.Errorf("kind: want 1..%d characters", maxKindLen)
	case len(text) > MaxText:
		return fmt.Errorf("text: %d bytes, over the limit of %d", len(text), MaxText)
	case !utf8.ValidString(text):
		return errors.New("text: not valid UTF-8")
	case len(data) > MaxData:
		return fmt.Errorf("data: %d bytes, over the limit of %d", len(data), MaxData)
	case len(data) > 0 && !json.Valid(data):
		return errors.New("data: not valid JSON")
	}
	return nil
}

// ErrTampered reports stored bytes that do not match what was written.
var ErrTampered = errors.New("vault: tampering detected")

// TamperError says where.
type TamperError struct {
	Seq    uint64
	Reason string

	crashTail bool    // exactly one well-chained entry beyond the head
	entries   []Entry // all entries, for crashTail
}

func (e *TamperError) Error() string { return fmt.Sprintf("vault: entry %d: %s", e.Seq, e.Reason) }

// Unwrap makes errors.Is(err, ErrTampered) true.
func (e *TamperError) Unwrap() error { return ErrTampered }

// Log is an open reflection log. It is safe for concurrent use.
type Log struct {
	mu     sync.Mutex
	dir    string
	id     age.Identity
	rcpt   age.Recipient
	signer identity.Signer
	now    func() time.Time
	n      uint64
	last   string
	f      *os.File
}

// Open opens (creating) the log in dir, encrypted to kek, with its head
// signed by signer. It verifies the whole log first and fails with a
// *TamperError if anything was changed.
func Open(dir string, kek *age.HybridIdentity, signer identity.Signer, now func() time.Time) (*Log, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	l := &Log{dir: dir, id: kek, rcpt: kek.Recipient(), signer: signer, now: now}
	entries, err := l.readAll()
	var te *TamperError
	resign := false
	if errors.As(err, &te) && te.crashTail {
		// A crash between writing an entry and re-signing the head: the
		// entry chains correctly (only the Cal can know the hash it links
		// to), so keep it and sign the head again.
		err, entries, resign = nil, te.entries, true
	}
	if err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		l.n, l.last = uint64(len(entries)), entries[len(entries)-1].Hash()
	}
	l.f, err = os.OpenFile(filepath.Join(dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if resign {
		if err := l.writeHead(); err != nil {
			l.f.Close()
			return nil, fmt.Errorf("vault: sign the head again after a crash: %w", err)
		}
	}
	return l, nil
}

// Close closes the log.
func (l *Log) Close() error { return l.f.Close() }

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Append adds a reflection and returns it.
func (l *Log) Append(kind, text string, data json.RawMessage) (*Entry, error) {
	if string(bytes.TrimSpace(data)) == "null" {
		data = nil
	}
	if err := validate(kind, text, data); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := &Entry{Seq: l.n, Time: l.now().UTC(), Kind: kind, Text: text, Data: data, Prev: l.last}
	plain, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	ct, err := seal(plain, l.rcpt)
	if err != nil {
		return nil, err
	}
	rec := make([]byte, recordFrame, recordFrame+len(ct))
	binary.BigEndian.PutUint32(rec[:4], uint32(len(ct)))
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(ct, crcTable))
	rec = append(rec, ct...)
	if _, err := l.f.Write(rec); err != nil {
		return nil, err
	}
	if err := l.f.Sync(); err != nil {
		return nil, err
	}
	l.n, l.last = l.n+1, e.Hash()
	if err := l.writeHead(); err != nil {
		return nil, err
	}
	return e, nil
}

func seal(plain []byte, to ...age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, to...)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plain); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func open(ct []byte, id age.Identity) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(ct), id)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, maxRecord))
}

// head pins the log's length and last hash, signed by the Cal.
type head struct {
	Count     uint64              `json:"count"`
	Last      string              `json:"last"`
	Signature *identity.Signature `json:"signature"`
}

func headMessage(count uint64, last string) []byte {
	return fmt.Appendf(nil, "calnet-reflections-head\n%d\n%s\n", count, last)
}

func (l *Log) writeHead() error {
	sig, err := l.signer.Sign(identity.PurposeEntry, headMessage(l.n, l.last))
	if err != nil {
		return err
	}
	b, _ := json.Marshal(head{Count: l.n, Last: l.last, Signature: sig})
	return atomicfile.Write(filepath.Join(l.dir, headFile), b, 0o600)
}

// Read returns the entries from seq on, verifying every record and the
// chain; anything changed is a *TamperError naming the entry.
func (l *Log) Read(from uint64) ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	all, err := l.readAll()
	if err != nil {
		return nil, err
	}
	if from >= uint64(len(all)) {
		return []Entry{}, nil
	}
	return all[from:], nil
}

// Len returns the number of entries.
func (l *Log) Len() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *Log) readAll() ([]Entry, error) {
	f, err := os.Open(filepath.Join(l.dir, logFile))
	if errors.Is(err, os.ErrNotExist) {
		return l.checkHead(nil)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out []Entry
	prev := ""
	var hdr [recordFrame]byte
	for seq := uint64(0); ; seq++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, &TamperError{Seq: seq, Reason: "truncated record header"}
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > maxRecord {
			return nil, &TamperError{Seq: seq, Reason: "record length out of range"}
		}
		ct := make([]byte, n)
		if _, err := io.ReadFull(r, ct); err != nil {
			return nil, &TamperError{Seq: seq, Reason: "truncated record"}
		}
		if crc32.Checksum(ct, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			return nil, &TamperError{Seq: seq, Reason: "checksum mismatch: the stored bytes changed"}
		}
		plain, err := open(ct, l.id)
		if err != nil {
			return nil, &TamperError{Seq: seq, Reason: "does not decrypt and authenticate: " + err.Error()}
		}
		var e Entry
		if err := strictjson.Unmarshal(plain, maxRecord, &e); err != nil {
			return nil, &TamperError{Seq: seq, Reason: "malformed entry"}
		}
		if e.Seq != seq || e.Prev != prev {
			return nil, &TamperError{Seq: seq, Reason: "hash chain broken (entry removed, reordered or replaced)"}
		}
		prev = e.Hash()
		out = append(out, e)
	}
	return l.checkHead(out)
}

// checkHead compares the entries with the signed head.
func (l *Log) checkHead(entries []Entry) ([]Entry, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, headFile))
	if errors.Is(err, os.ErrNotExist) {
		if len(entries) > 0 {
			return nil, &TamperError{Seq: 0, Reason: "the signed head is missing"}
		}
		return entries, nil
	}
	if err != nil {
		return nil, err
	}
	var h head
	if err := strictjson.Unmarshal(b, 16<<10, &h); err != nil {
		return nil, &TamperError{Reason: "the signed head is malformed"}
	}
	if err := l.signer.Public().Verify(identity.PurposeEntry, headMessage(h.Count, h.Last), h.Signature); err != nil {
		return nil, &TamperError{Reason: "the head's signature does not verify"}
	}
	last := ""
	if len(entries) > 0 {
		last = entries[len(entries)-1].Hash()
	}
	if h.Count+1 == uint64(len(entries)) && h.Last == entries[len(entries)-1].Prev {
		return nil, &TamperError{Seq: h.Count, Reason: "the head was not re-signed after the last entry", crashTail: true, entries: entries}
	}
	if h.Count != uint64(len(entries)) || h.Last != last {
		return nil, &TamperError{Seq: uint64(len(entries)), Reason: fmt.Sprintf("the signed head pins %d entries, the log holds %d", h.Count, len(entries))}
	}
	return entries, nil
}

// Bundle is a set of reflections shared by one Cal with another.
type Bundle struct {
	From    identity.ID `json:"from"`
	To      identity.ID `json:"to"`
	Time    time.Time   `json:"time"`
	Entries []Entry     `json:"entries"`
}

type signedBundle struct {
	Bundle    json.RawMessage     `json:"bundle"`
	Signature *identity.Signature `json:"signature"`
}

const shareTag = "calnet-reflection-share-v1\n"

// MaxShare bounds the entries of one share.
const MaxShare = 1000

// Share re-encrypts chosen entries to another Cal's recipient, signed by
// this Cal, so the receiver sees who shared them.
func (l *Log) Share(seqs []uint64, to identity.ID, toRecipient age.Recipient) ([]byte, error) {
	if len(seqs) == 0 || len(seqs) > MaxShare {
		return nil, fmt.Errorf("share: want 1..%d entries", MaxShare)
	}
	all, err := l.Read(0)
	if err != nil {
		return nil, err
	}
	b := Bundle{From: l.signer.Public().ID(), To: to, Time: l.now().UTC()}
	for _, s := range seqs {
		if s >= uint64(len(all)) {
			return nil, fmt.Errorf("share: entry %d does not exist (the log has %d)", s, len(all))
		}
		b.Entries = append(b.Entries, all[s])
	}
	bj, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	sig, err := l.signer.Sign(identity.PurposeEntry, append([]byte(shareTag), bj...))
	if err != nil {
		return nil, err
	}
	sb, _ := json.Marshal(signedBundle{Bundle: bj, Signature: sig})
	return seal(sb, toRecipient)
}

// OpenShared decrypts a shared bundle with the receiver's identity and
// verifies the sharer's signature with the key keyOf returns for it.
func OpenShared(ct []byte, id age.Identity, me identity.ID, keyOf func(identity.ID) (*identity.PublicKey, error)) (*Bundle, error) {
	if len(ct) > MaxShare*maxRecord {
		return nil, errors.New("shared bundle: too large")
	}
	plain, err := openLimited(ct, id, MaxShare*maxRecord)
	if err != nil {
		return nil, fmt.Errorf("shared bundle: %w", err)
	}
	var sb signedBundle
	if err := strictjson.Unmarshal(plain, MaxShare*maxRecord, &sb); err != nil {
		return nil, fmt.Errorf("shared bundle: %w", err)
	}
	var b Bundle
	if err := strictjson.Unmarshal(sb.Bundle, MaxShare*maxRecord, &b); err != nil {
		return nil, fmt.Errorf("shared bundle: %w", err)
	}
	if b.To != me {
		return nil, fmt.Errorf("shared bundle: addressed to %s, not %s", b.To, me)
	}
	key, err := keyOf(b.From)
	if err != nil {
		return nil, fmt.Errorf("shared bundle: sharer %s: %w", b.From, err)
	}
	if err := key.Verify(identity.PurposeEntry, append([]byte(shareTag), sb.Bundle...), sb.Signature); err != nil {
		return nil, fmt.Errorf("shared bundle: not signed by %s: %w", b.From, err)
	}
	return &b, nil
}

func openLimited(ct []byte, id age.Identity, limit int64) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(ct), id)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, limit))
}

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, crcTable) }
