// Package limitedfile reads files whose content is not trusted: a network
// directory handed to `calnet verify`, a Cal's identity directory, a
// template or rule file named on the command line. It reads regular files
// only, and never more than a named limit, so that a symlink to /dev/zero,
// a FIFO or a device cannot make the reader block or fill memory.
package limitedfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrNotRegular is returned for anything but a regular file (a device, a
// FIFO, a socket, a directory), after following symlinks.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is returned for a file over the caller's limit.
var ErrTooLarge = errors.New("over the size limit")

// Read returns the content of the regular file at path, at most limit
// bytes. It refuses (naming the path and the limit) anything that is not a
// regular file once symlinks are followed, and any file larger than limit,
// including one that grows past it while it is read. Opening does not
// block on a FIFO and does not make a terminal the controlling one.
func Read(path string, limit int64) ([]byte, error) {
	f, err := Open(path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, limit)
}

// Open opens the regular file at path for reading, refusing what Read
// refuses, for a caller that streams it (it must still stop at limit:
// ReadAll does).
func Open(path string, limit int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	st, err := Regular(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() > limit {
		f.Close()
		return nil, fmt.Errorf("%s: %d bytes, %w of %d bytes", path, st.Size(), ErrTooLarge, limit)
	}
	return f, nil
}

// Regular checks that the open file f (named path in the error) is a
// regular file, for a caller that opens it itself (to write, or to scan
// records of its own format).
func Regular(f *os.File, path string) (os.FileInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s); refusing to read it", path, ErrNotRegular, kind(st.Mode()))
	}
	return st, nil
}

// ReadAll reads r to its end, failing once it yields more than limit
// bytes; name is for the error.
func ReadAll(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes, %w", name, limit, ErrTooLarge)
	}
	return b, nil
}

func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.String()
}
