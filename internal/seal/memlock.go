package seal

import (
	"crypto/rand"

	"golang.org/x/sys/unix"
)

// lockedBytes is secret memory kept out of swap (mlock, best effort: an
// unprivileged process may be over its RLIMIT_MEMLOCK) and wiped when done.
type lockedBytes struct {
	b      []byte
	locked bool
}

func newLocked(n int) *lockedBytes {
	l := &lockedBytes{b: make([]byte, n)}
	l.locked = unix.Mlock(l.b) == nil
	return l
}

func randomLocked(n int) (*lockedBytes, error) {
	l := newLocked(n)
	if _, err := rand.Read(l.b); err != nil {
		l.wipe()
		return nil, err
	}
	return l, nil
}

func (l *lockedBytes) wipe() {
	clear(l.b)
	if l.locked {
		_ = unix.Munlock(l.b) // the pages are wiped; unlocking can only fail if they were never locked
		l.locked = false
	}
}
