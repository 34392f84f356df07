package limitedfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("x", size)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		name    string
		path    string
		want    int
		wantErr error
		msg     string
	}{
		{"regular", write("ok", 10), 10, nil, ""},
		{"empty", write("empty", 0), 0, nil, ""},
		{"at the limit", write("limit", 64), 64, nil, ""},
		{"over the limit", write("big", 65), 0, ErrTooLarge, "65 bytes, over the size limit of 64 bytes"},
		{"symlink to a regular file", link("link", filepath.Join(dir, "ok")), 10, nil, ""},
		{"symlink to /dev/zero", link("zero", "/dev/zero"), 0, ErrNotRegular, "a character device"},
		{"/dev/null", "/dev/null", 0, ErrNotRegular, "a character device"},
		{"fifo without a writer", fifo, 0, ErrNotRegular, "a FIFO"},
		{"socket (cannot be opened)", sock, 0, syscall.ENXIO, ""},
		{"directory", dir, 0, ErrNotRegular, "a directory"},
		{"missing", filepath.Join(dir, "none"), 0, os.ErrNotExist, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Read(tt.path, 64)
			if tt.wantErr == nil {
				if err != nil || len(b) != tt.want {
					t.Fatalf("Read = %d bytes, %v; want %d bytes", len(b), err, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Read error = %v, want %v containing %q", err, tt.wantErr, tt.msg)
			}
		})
	}
}

func TestReadAllStopsAtTheLimit(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ReadAll(f, "/dev/zero", 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadAll(/dev/zero) = %v, want ErrTooLarge", err)
	}
}
