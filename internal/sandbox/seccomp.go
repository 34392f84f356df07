package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// namespaceFlags are the clone flags that make new namespaces. A Cal
// creates none: in a new user namespace its workload would be root, with
// every capability, over new network (raw and packet sockets, nf_tables)
// and mount namespaces. CLONE_NEWTIME shares its bit with the exit signal
// in clone(2) and exists only in unshare and clone3, both refused whole.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// Policy is the seccomp filter: everything a Go server and ordinary
// workloads need stays allowed; calls that change the system, escape the
// namespaces or attack the kernel fail with EPERM. clone3 fails with
// ENOSYS: its flags sit in memory the filter cannot read, and glibc and Go
// fall back to clone(2), whose flags it reads.
func Policy() seccomp.Policy {
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{{
			Action: seccomp.ActionErrno,
			Names: []string{
				"mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
				"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
				"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
				"reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "adjtimex",
				"sethostname", "setdomainname", "iopl", "ioperm",
				"bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
				"open_by_handle_at", "name_to_handle_at", "quotactl", "lookup_dcookie",
				"fsopen", "fsmount", "fsconfig", "move_mount", "open_tree", "fspick", "mount_setattr", "open_tree_attr",
				"io_uring_setup", "io_uring_enter", "io_uring_register",
			},
			NamesWithCondtions: []seccomp.NameWithConditions{{
				Name:       "clone",
				Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}},
			}},
		}, {
			Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS),
			Names:  []string{"clone3"},
		}},
	}
}

// SubvolumeIoctls are the btrfs ioctl requests that make a subvolume or a
// snapshot (BTRFS_IOC_SNAP_CREATE, SUBVOL_CREATE and their _V2 forms). A
// new subvolume in /data would get a quota group of its own, outside the
// Cal's disk quota, so the filter refuses them with EPERM. The kernel
// reads the request as 32 bits: so does the filter.
var SubvolumeIoctls = []uint32{0x50009401, 0x5000940e, 0x50009417, 0x50009418}

// ioctlGuard refuses SubvolumeIoctls, comparing the low 32 bits of the
// request (ioctl's second argument) whatever its high bits hold.
func ioctlGuard() []bpf.Instruction {
	const nrOffset, argsOffset = 0, 16 // struct seccomp_data: int nr; __u32 arch; __u64 ip; __u64 args[6]
	low := uint32(argsOffset + 8)      // args[1], low half on a little-endian machine
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 {
		low += 4
	}
	n := len(SubvolumeIoctls)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: nrOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.SYS_IOCTL, SkipTrue: uint8(n + 3)},
		bpf.LoadAbsolute{Off: low, Size: 4},
	}
	for i, req := range SubvolumeIoctls {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: req, SkipTrue: uint8(n - i)})
	}
	return append(prog,
		bpf.Jump{Skip: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionErrno) | uint32(unix.EPERM)},
	)
}

// Program is the filter as loaded: Policy, behind a check that the system
// call comes through this machine's native table. The library's own check
// lets a call of another architecture (int $0x80 from an x86-64 process
// reaches the i386 table, with other numbers) through to the default
// action, which is allow: here such a call kills the process.
func Program() ([]bpf.Instruction, error) {
	native, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	p := Policy()
	body, err := p.Assemble()
	if err != nil {
		return nil, err
	}
	const archOffset = 4 // struct seccomp_data: int nr; __u32 arch; ...
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: archOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(native.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)},
	}
	prog = append(prog, ioctlGuard()...)
	return append(prog, body...), nil
}

// loadFilter installs Program on every thread of the process
// (SECCOMP_FILTER_FLAG_TSYNC, which also sets no_new_privs on each).
func loadFilter() error {
	insts, err := Program()
	if err != nil {
		return err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := seccomp.SetNoNewPrivs(); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if e != 0 {
		return e
	}
	if r != 0 {
		return fmt.Errorf("thread %d could not take the filter", r)
	}
	return nil
}

// dropCapabilities empties every capability set of every thread: the
// bounding set (while the process still holds CAP_SETPCAP, so before the
// uid changes) and the ambient set here; the inheritable set, which a
// change of uid keeps, in clearInheritable after it. Capabilities are
// per thread and the Go runtime already runs several, so each call goes to
// all of them (AllThreadsSyscall, which a cgo binary cannot do: calnet is
// built static).
func dropCapabilities() error {
	for c := 0; ; c++ {
		_, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if e == unix.EINVAL { // past the last capability this kernel knows
			break
		}
		if e == syscall.ENOTSUP {
			return errCgo
		}
		if e != 0 {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
		}
	}
	if _, _, e := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("clear the ambient capabilities: %w", e)
	}
	return nil
}

// errCgo is the refusal of a cgo binary, whose threads Go cannot reach one
// by one.
var errCgo = errors.New("capabilities: a cgo binary cannot change the capabilities of every thread; build calnet with CGO_ENABLED=0")

// clearInheritable empties the permitted, effective and inheritable sets
// of every thread (a change of uid from root empties the first two).
func clearInheritable() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}
