package calrt

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// trimMemory gives back memory an idle Cal does not need: the heap used
// during start-up, and this process's mappings of the executable's
// read-only pages (code and constants), which start-up touched and the
// kernel's fault-around enlarged. The pages stay in the page cache, shared
// by every Cal; an unmapped page that is needed again is mapped back with
// a minor fault. Writable mappings are left alone.
func trimMemory() {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// A raw syscall: the range is this process's own mapping, not Go
		// memory, so it never becomes a Go pointer. Trimming is a saving,
		// not a duty: a range the kernel refuses just stays mapped.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED)
	}
}
