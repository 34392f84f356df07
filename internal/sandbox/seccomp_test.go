package sandbox

import (
	"encoding/binary"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestFilterVerdicts runs the filter exactly as loaded (Program) in a BPF
// interpreter over the struct seccomp_data the kernel would pass, for the
// calls issue 10 (finding 7) named and their harmless neighbours.
func TestFilterVerdicts(t *testing.T) {
	native, err := arch.GetInfo("")
	if err != nil {
		t.Skip(err)
	}
	if native.ID != arch.X86_64.ID {
		t.Skipf("system call numbers below are x86-64's, not %s's", native.Name)
	}
	insts, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	const (
		allow  = uint32(seccomp.ActionAllow)
		eperm  = uint32(seccomp.ActionErrno) | uint32(unix.EPERM)
		enosys = uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)
		kill   = uint32(seccomp.ActionKillProcess)
	)
	i386, x8664 := uint32(arch.I386.ID), uint32(arch.X86_64.ID)
	thread := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD |
		unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID)
	for _, c := range []struct {
		name string
		nr   int
		arch uint32
		arg0 uint64
		want uint32
	}{
		{"read", unix.SYS_READ, x8664, 0, allow},
		{"clone of a thread (Go, glibc)", unix.SYS_CLONE, x8664, thread, allow},
		{"clone of a process (fork)", unix.SYS_CLONE, x8664, uint64(unix.SIGCHLD), allow},
		{"vfork-style clone of os/exec", unix.SYS_CLONE, x8664, unix.CLONE_VFORK | unix.CLONE_VM | uint64(unix.SIGCHLD), allow},
		{"clone into a user namespace", unix.SYS_CLONE, x8664, unix.CLONE_NEWUSER | uint64(unix.SIGCHLD), eperm},
		{"clone into a network namespace", unix.SYS_CLONE, x8664, unix.CLONE_NEWNET | uint64(unix.SIGCHLD), eperm},
		{"clone into user and network namespaces", unix.SYS_CLONE, x8664, unix.CLONE_NEWUSER | unix.CLONE_NEWNET | uint64(unix.SIGCHLD), eperm},
		{"clone into a mount namespace", unix.SYS_CLONE, x8664, unix.CLONE_NEWNS, eperm},
		{"clone into a pid namespace", unix.SYS_CLONE, x8664, unix.CLONE_NEWPID, eperm},
		{"clone into a cgroup namespace", unix.SYS_CLONE, x8664, unix.CLONE_NEWCGROUP, eperm},
		{"clone with high bits and a namespace", unix.SYS_CLONE, x8664, 1<<40 | unix.CLONE_NEWUSER, eperm},
		{"clone3", unix.SYS_CLONE3, x8664, 0, enosys},
		{"unshare", unix.SYS_UNSHARE, x8664, unix.CLONE_NEWUSER, eperm},
		{"setns", unix.SYS_SETNS, x8664, 0, eperm},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, x8664, 0, eperm},
		{"io_uring_enter", unix.SYS_IO_URING_ENTER, x8664, 0, eperm},
		{"io_uring_register", unix.SYS_IO_URING_REGISTER, x8664, 0, eperm},
		{"mount", unix.SYS_MOUNT, x8664, 0, eperm},
		{"mount_setattr", unix.SYS_MOUNT_SETATTR, x8664, 0, eperm},
		{"pidfd_getfd (ptrace's reach)", unix.SYS_PIDFD_GETFD, x8664, 0, eperm},
		{"x32 read", unix.SYS_READ | 0x40000000, x8664, 0, enosys},
		{"i386 unshare (int $0x80)", 310, i386, unix.CLONE_NEWUSER, kill},
		{"i386 read", 3, i386, 0, kill},
	} {
		t.Run(c.name, func(t *testing.T) {
			// struct seccomp_data as an x86-64 kernel lays it out. The
			// kernel loads each 32-bit word in native order, the
			// interpreter in network order: each word is written so.
			data := make([]byte, 64)
			word := func(off int, v uint32) { binary.BigEndian.PutUint32(data[off:], v) }
			word(0, uint32(c.nr))
			word(4, c.arch)
			word(16, uint32(c.arg0))     // args[0], low half first
			word(20, uint32(c.arg0>>32)) // high half
			got, err := vm.Run(data)
			if err != nil {
				t.Fatal(err)
			}
			if uint32(got) != c.want {
				t.Errorf("verdict %#x, want %#x", uint32(got), c.want)
			}
		})
	}
}
