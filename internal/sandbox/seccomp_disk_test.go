package sandbox

import (
	"encoding/binary"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestFilterRefusesSubvolumeIoctls: a Cal cannot make a btrfs subvolume
// or snapshot (it would escape its disk quota), whatever it puts in the
// high half of the request; other ioctls pass.
func TestFilterRefusesSubvolumeIoctls(t *testing.T) {
	native, err := arch.GetInfo("")
	if err != nil || native.ID != arch.X86_64.ID {
		t.Skip("system call numbers below are x86-64's")
	}
	insts, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	eperm := uint32(seccomp.ActionErrno) | uint32(unix.EPERM)
	allow := uint32(seccomp.ActionAllow)
	for _, c := range []struct {
		name string
		nr   int
		arg1 uint64
		want uint32
	}{
		{"BTRFS_IOC_SUBVOL_CREATE", unix.SYS_IOCTL, 0x5000940e, eperm},
		{"BTRFS_IOC_SUBVOL_CREATE_V2", unix.SYS_IOCTL, 0x50009418, eperm},
		{"BTRFS_IOC_SNAP_CREATE", unix.SYS_IOCTL, 0x50009401, eperm},
		{"BTRFS_IOC_SNAP_CREATE_V2", unix.SYS_IOCTL, 0x50009417, eperm},
		{"SUBVOL_CREATE with high bits set", unix.SYS_IOCTL, 0xffffffff_5000940e, eperm},
		{"TCGETS", unix.SYS_IOCTL, unix.TCGETS, allow},
		{"TIOCGWINSZ", unix.SYS_IOCTL, unix.TIOCGWINSZ, allow},
		{"write with a subvolume number as its count", unix.SYS_WRITE, 0x5000940e, allow},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := make([]byte, 64)
			word := func(off int, v uint32) { binary.BigEndian.PutUint32(data[off:], v) }
			word(0, uint32(c.nr))
			word(4, uint32(arch.X86_64.ID))
			word(24, uint32(c.arg1))     // args[1], low half first
			word(28, uint32(c.arg1>>32)) // high half
			got, err := vm.Run(data)
			if err != nil {
				t.Fatal(err)
			}
			if uint32(got) != c.want {
				t.Fatalf("verdict %#x, want %#x", got, c.want)
			}
		})
	}
}
