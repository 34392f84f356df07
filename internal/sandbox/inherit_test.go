package sandbox

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInheritNothing opens descriptors as a parent process leaves them
// (not close-on-exec), then checks that after InheritNothing a started
// program sees none of them, and still gets what it is handed by name.
func TestInheritNothing(t *testing.T) {
	path := t.TempDir() + "/f"
	if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	var leaked []int
	for range 3 {
		fd, err := unix.Open(path, unix.O_RDONLY, 0) // no O_CLOEXEC
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		leaked = append(leaked, fd)
	}
	handed, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer handed.Close()

	if err := InheritNothing(); err != nil {
		t.Fatal(err)
	}
	for _, fd := range leaked {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("descriptor %d: flags %#x, %v; want close-on-exec", fd, flags, err)
		}
	}
	// The child lists what its descriptors name: the file only as 3, the
	// one it was handed.
	cmd := exec.Command("/bin/sh", "-c", `for f in /proc/self/fd/*; do echo "${f##*/} $(readlink $f)"; done`)
	cmd.ExtraFiles = []*os.File{handed}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("list the child's descriptors: %v", err)
	}
	var holding []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if fd, target, _ := strings.Cut(line, " "); target == path {
			holding = append(holding, fd)
		}
	}
	if strings.Join(holding, ",") != "3" {
		t.Errorf("the child holds the file as descriptors %v, want only 3 (the handed one); it has:\n%s", holding, out)
	}
}
