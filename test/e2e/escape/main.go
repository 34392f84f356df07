// Command escape is the workload of the escape-test Cal (issue 10, finding
// 7): run inside a real Cal's sandbox, it tries each known way out of the
// seccomp filter and the dropped capabilities and prints one report line,
// "calnet-escape {json}", mapping each attempt to "refused: ..." or
// "escaped: ...". It then stays up so the Cal's workload tier is ready.
// Each attempt runs in a fresh copy of the program, so that one that
// succeeds (a new user namespace, say) cannot colour the next.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// attempts are the escapes, by name. Each returns nil when it got through.
var attempts = map[string]func() error{
	"unshare-user":      unshareUser,
	"clone-newuser":     cloneNewUser,
	"exec-newuser":      execNewUser,
	"clone3":            clone3,
	"io-uring":          ioUring,
	"capabilities":      capabilities,
	"i386-unshare-user": i386UnshareUser,
	"packet-socket":     packetSocket,
	"inherited-fds":     inheritedFDs,
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "attempt" {
		if err := attempts[os.Args[2]](); err != nil {
			fmt.Print("refused: ", err)
			return
		}
		fmt.Print("escaped")
		return
	}
	names := make([]string, 0, len(attempts))
	for n := range attempts {
		names = append(names, n)
	}
	sort.Strings(names)
	report := map[string]string{}
	for _, n := range names {
		out, err := exec.Command("/proc/self/exe", "attempt", n).Output()
		report[n] = strings.TrimSpace(string(out))
		if err != nil {
			report[n] = fmt.Sprintf("refused: the attempt died: %v %s", err, out)
		}
	}
	b, _ := json.Marshal(report)
	fmt.Printf("calnet-escape %s\n", b)
	for {
		time.Sleep(time.Hour)
	}
}

// unshareUser asks for a user namespace; unshare refuses a
// multi-threaded caller, so it runs in a single-threaded fork.
func unshareUser() error { return inFork(unix.SYS_UNSHARE, unix.CLONE_NEWUSER, false) }

// inFork makes one system call in a single-threaded fork of this process
// and returns its error: the child exits with the errno.
func inFork(trap, a1 uintptr, i386 bool) error {
	pid, e := forkCall(trap, a1, i386)
	if e != 0 {
		return fmt.Errorf("fork: %w", e)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(int(pid), &ws, 0, nil); err != nil {
		return err
	}
	switch {
	case ws.Signaled() && ws.Signal() == unix.SIGSEGV && i386:
		return errors.New("no 32-bit system call entry on this kernel (int $0x80 faults)")
	case ws.Signaled():
		return fmt.Errorf("the child died of %v", ws.Signal())
	case ws.ExitStatus() != 0:
		return syscall.Errno(ws.ExitStatus())
	}
	return nil
}

// sigDefault is a struct sigaction with SIG_DFL.
var sigDefault [4]uint64

// forkCall forks (clone without flags, which the filter allows) and, in
// the child, makes the call and exits with its errno. The child runs
// nothing of the Go runtime.
//
//go:nosplit
//go:norace
func forkCall(trap, a1 uintptr, i386 bool) (uintptr, syscall.Errno) {
	pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 || pid != 0 {
		return pid, e
	}
	var code uintptr
	if i386 {
		// Without a 32-bit entry int $0x80 faults: let the fault kill the
		// child rather than the inherited Go handler.
		// In the forked child nothing can report a failure; if the
		// handler stays, the fault kills the child all the same.
		_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&sigDefault)), 0, 8, 0, 0)
		if r := int32(int80(trap, a1, 0, 0)); r < 0 {
			code = uintptr(-r)
		}
	} else {
		_, _, e := syscall.RawSyscall(trap, a1, 0, 0)
		code = uintptr(e)
	}
	_, _, _ = syscall.RawSyscall(syscall.SYS_EXIT_GROUP, code, 0, 0) // does not return
	return 0, 0
}

// cloneNewUser is clone(2) with namespace flags, as a fork: the child
// exits at once.
func cloneNewUser() error {
	pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_NEWNET|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		_, _, _ = unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0) // the child: does not return
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(int(pid), &ws, 0, nil) // reaps the child: the clone succeeding is the result
	return nil
}

// execNewUser is what a Go (or glibc) program does to start a process in
// new namespaces, with itself as root in them.
func execNewUser() error {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	return cmd.Run()
}

// cloneArgs is struct clone_args (CLONE_ARGS_SIZE_VER0).
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls uint64
}

// clone3 is clone3(2) with namespace flags: the filter cannot read its
// arguments, so it must not exist.
func clone3() error {
	args := cloneArgs{flags: unix.CLONE_NEWUSER | unix.CLONE_NEWNET, exitSignal: uint64(unix.SIGCHLD)}
	pid, _, e := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args), 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		_, _, _ = unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0) // the child: does not return
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(int(pid), &ws, 0, nil) // reaps the child: the clone succeeding is the result
	return nil
}

func ioUring() error {
	var params [120]byte // struct io_uring_params
	fd, _, e := unix.RawSyscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params)), 0)
	if e != 0 {
		return e
	}
	unix.Close(int(fd))
	return nil
}

// capabilities reads every capability set of the process: all must be
// empty, the bounding set included.
func capabilities() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	var held []string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		if strings.HasPrefix(k, "Cap") && strings.Trim(v, "0") != "" {
			held = append(held, k+"="+v)
		}
	}
	if len(held) > 0 {
		return nil
	}
	return fmt.Errorf("every capability set is empty")
}

// i386UnshareUser asks for a user namespace through the 32-bit system
// call table (int $0x80), which a filter written for x86-64 numbers does
// not see unless it checks the architecture.
func i386UnshareUser() error {
	const sysUnshare386 = 310
	return inFork(sysUnshare386, unix.CLONE_NEWUSER, true)
}

func packetSocket() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0x0300) // htons(ETH_P_ALL)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// inheritedFDs looks for descriptors the workload was started with beyond
// standard input, output and error: anything calnet up, the Cal's runtime
// or whoever started calnet up left open without close-on-exec (a pipe of
// the operator's shell, a log, a key file) would reach every workload. It
// runs before this copy of the program opens anything of its own.
func inheritedFDs() error {
	var found []string
	for fd := 3; fd < 1024; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			continue
		}
		target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		if strings.HasPrefix(target, "anon_inode:") { // the Go runtime's own (epoll, eventfd, pidfd)
			continue
		}
		found = append(found, fmt.Sprintf("%d -> %s", fd, target))
	}
	if len(found) > 0 {
		fmt.Print(strings.Join(found, ", "), ": ") // escaped: these reached the workload
		return nil
	}
	return errors.New("no descriptor beyond 0, 1 and 2")
}

// int80 makes a system call through the i386 entry (int80_amd64.s).
func int80(trap, a1, a2, a3 uintptr) uintptr
