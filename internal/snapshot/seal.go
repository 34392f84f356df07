package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"

	"github.com/soulfra/calnet/internal/limitedfile"
)

// Snapshots are encrypted to hybrid post-quantum age recipients only
// (ML-KEM-768 + X25519, "age1pq1..."): a backup is kept for years and
// leaves the machine, so it must resist an attacker who records it now
// and has a quantum computer later. The server that writes snapshots
// holds only the recipients (public); the identities that open them are
// the operator's, kept off the machine (SECURITY.md).

// ErrKey wraps a snapshot that none of the given identities opens.
var ErrKey = errors.New("no identity given opens this snapshot")

// ParseRecipients parses hybrid post-quantum recipients, refusing any
// other kind with a message that says why.
func ParseRecipients(rs []string) ([]age.Recipient, error) {
	if len(rs) == 0 {
		return nil, errors.New("no recipient: a snapshot is encrypted to at least one age1pq1... recipient (make one with `calnet snapshot keygen`)")
	}
	if len(rs) > 16 {
		return nil, fmt.Errorf("%d recipients, at most 16", len(rs))
	}
	out := make([]age.Recipient, 0, len(rs))
	for _, s := range rs {
		s = strings.TrimSpace(s)
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			if strings.HasPrefix(s, "age1") && !strings.HasPrefix(s, "age1pq1") {
				return nil, fmt.Errorf("recipient %.20s...: a classical X25519 recipient; snapshots are encrypted to hybrid post-quantum recipients only (age1pq1..., `calnet snapshot keygen`)", s)
			}
			return nil, fmt.Errorf("recipient %.20s...: %w", s, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// maxRecipientsFile and maxIdentityFile bound the files of keys read.
const (
	maxRecipientsFile = 64 << 10
	maxIdentityFile   = 64 << 10
)

// ReadRecipientsFile reads recipients, one a line (# comments and blank
// lines skipped), as age -R does.
func ReadRecipientsFile(path string) ([]string, error) {
	b, err := limitedfile.Read(path, maxRecipientsFile)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

// ReadIdentities reads hybrid identities (AGE-SECRET-KEY-PQ-1...) from a
// file, one a line, as age -i does. The file must not be readable by
// others.
func ReadIdentities(path string) ([]age.Identity, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v lets others read the key; want 0600", path, st.Mode().Perm())
	}
	b, err := limitedfile.Read(path, maxIdentityFile)
	if err != nil {
		return nil, err
	}
	var out []age.Identity
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		id, err := age.ParseHybridIdentity(l)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, id)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no AGE-SECRET-KEY-PQ-1... identity in it", path)
	}
	return out, nil
}

// Keygen makes a new identity and returns its file text (with the
// recipient as a comment, as age-keygen writes) and its recipient.
func Keygen() (fileText, recipient string, err error) {
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		return "", "", err
	}
	r := id.Recipient().String()
	return "# calnet snapshot key: keep it off the machine the snapshots are of\n# recipient: " + r + "\n" + id.String() + "\n", r, nil
}

// Seal returns a writer that encrypts to recipients into w; Close it to
// finish the stream (the last chunk is what makes a cut file detectable).
func Seal(w io.Writer, recipients []age.Recipient) (io.WriteCloser, error) {
	return age.Encrypt(w, recipients...)
}

// Open returns the decrypted payload of a sealed snapshot. Integrity
// failures surface on Read: a changed chunk or a missing end fails there.
func Open(r io.Reader, identities []age.Identity) (io.Reader, error) {
	d, err := age.Decrypt(bufio.NewReaderSize(r, 64<<10), identities...)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) {
			return nil, fmt.Errorf("%w: it was encrypted to another key, or its header was changed", ErrKey)
		}
		return nil, fmt.Errorf("%w: not an age-encrypted snapshot or its header was changed: %v", ErrCorrupt, err)
	}
	return &integrity{r: d}, nil
}

// integrity names age's decryption failures (a changed or cut file).
type integrity struct{ r io.Reader }

func (i *integrity) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: the file was changed or cut short (authentication failed: %v)", ErrCorrupt, err)
	}
	return n, err
}
