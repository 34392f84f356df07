package auditlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/strictjson"
)

const (
	hashDomain    = "calnet-audit-v1\n"
	genesisDomain = "calnet-audit-v1 genesis\n"
	hashSuffixLen = len(`,"hash":"`) + 64 + len(`"}`)
)

// Genesis is the prev of a network's first record.
func Genesis(network string) string {
	h := sha256.Sum256([]byte(genesisDomain + network))
	return hex.EncodeToString(h[:])
}

func hashOf(unhashed []byte) string {
	h := sha256.New()
	h.Write([]byte(hashDomain))
	h.Write(unhashed)
	return hex.EncodeToString(h.Sum(nil))
}

// encode returns the line of rec (without its newline) with rec.Hash set.
// A Reason that would make the line longer than MaxLine is cut short.
func encode(rec *api.AuditRecord) ([]byte, error) {
	rec.Hash = ""
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if over := len(b) + 64 - MaxLine; over > 0 {
		if over+len(" [cut]") > len(rec.Reason) {
			return nil, fmt.Errorf("audit record of %d bytes is over the limit of %d", len(b), MaxLine)
		}
		rec.Reason = rec.Reason[:len(rec.Reason)-over-len(" [cut]")-8] + " [cut]"
		return encode(rec)
	}
	if !bytes.HasSuffix(b, []byte(`,"hash":""}`)) {
		return nil, errors.New("audit record: hash is not the last field")
	}
	rec.Hash = hashOf(b)
	return append(b[:len(b)-2], []byte(rec.Hash+`"}`)...), nil
}

// decode parses one line and checks its own hash. It returns the record
// even when only the hash fails (hashOK false), so a verifier can go on.
func decode(line []byte) (rec api.AuditRecord, hashOK bool, err error) {
	if len(line) > MaxLine {
		return rec, false, fmt.Errorf("not an audit record: %d bytes, over the limit of %d", len(line), MaxLine)
	}
	if err := strictjson.Unmarshal(line, MaxLine, &rec); err != nil {
		return rec, false, fmt.Errorf("not an audit record: %w", err)
	}
	if len(rec.Hash) != 64 || len(rec.Prev) != 64 || !isHex(rec.Hash) || !isHex(rec.Prev) {
		return rec, false, errors.New("not an audit record: prev and hash must be 64 hex digits")
	}
	if len(line) < hashSuffixLen || !bytes.Equal(line[len(line)-hashSuffixLen:], []byte(`,"hash":"`+rec.Hash+`"}`)) {
		return rec, false, errors.New(`not an audit record: "hash" is not the last field`)
	}
	unhashed := append(append([]byte(nil), line[:len(line)-hashSuffixLen]...), `,"hash":""}`...)
	return rec, hashOf(unhashed) == rec.Hash, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
