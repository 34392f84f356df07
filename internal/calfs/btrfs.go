package calfs

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The btrfs ioctls calfs uses (linux/btrfs.h). The _IOW/_IOR/_IOWR
// numbers encode the argument sizes below.
const (
	iocSnapCreate     = 0x50009401 // _IOW(0x94, 1, btrfs_ioctl_vol_args)
	iocSubvolCreate   = 0x5000940e // _IOW(0x94, 14, btrfs_ioctl_vol_args)
	iocSnapDestroy    = 0x5000940f // _IOW(0x94, 15, btrfs_ioctl_vol_args)
	iocInoLookup      = 0xd0009412 // _IOWR(0x94, 18, btrfs_ioctl_ino_lookup_args)
	iocSnapCreateV2   = 0x50009417 // _IOW(0x94, 23, btrfs_ioctl_vol_args_v2)
	iocSubvolCreateV2 = 0x50009418 // _IOW(0x94, 24, btrfs_ioctl_vol_args_v2)
	iocQuotaCtl       = 0xc0109428 // _IOWR(0x94, 40, btrfs_ioctl_quota_ctl_args)
	iocQgroupLimit    = 0x8030942b // _IOR(0x94, 43, btrfs_ioctl_qgroup_limit_args)
	iocFsInfo         = 0x8400941f // _IOR(0x94, 31, btrfs_ioctl_fs_info_args)

	quotaCtlEnable   = 1
	limitMaxRfer     = 1 << 0 // BTRFS_QGROUP_LIMIT_MAX_RFER
	firstSubvolInode = 256    // BTRFS_FIRST_FREE_OBJECTID: a subvolume's root directory
)

type volArgs struct {
	fd   int64
	name [4088]byte
}

type inoLookupArgs struct {
	treeID   uint64
	objectID uint64
	name     [4080]byte
}

type quotaCtlArgs struct {
	cmd    uint64
	status uint64
}

type qgroupLimitArgs struct {
	qgroupID uint64
	flags    uint64
	maxRfer  uint64
	maxExcl  uint64
	rsvRfer  uint64
	rsvExcl  uint64
}

type fsInfoArgs struct {
	maxID      uint64
	numDevices uint64
	fsid       [16]byte
	rest       [1024 - 32]byte
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// openDir opens a directory without following a final symlink.
func openDir(p string) (int, error) {
	return unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

func subvolCreate(parent, name string) error {
	fd, err := openDir(parent)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var a volArgs
	copy(a.name[:len(a.name)-1], name)
	return ioctl(fd, iocSubvolCreate, unsafe.Pointer(&a))
}

func subvolDestroy(parent, name string) error {
	fd, err := openDir(parent)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var a volArgs
	copy(a.name[:len(a.name)-1], name)
	return ioctl(fd, iocSnapDestroy, unsafe.Pointer(&a))
}

func quotaEnable(dir string) error {
	fd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	a := quotaCtlArgs{cmd: quotaCtlEnable}
	return ioctl(fd, iocQuotaCtl, unsafe.Pointer(&a))
}

// isSubvolume reports whether dir is the root of a btrfs subvolume.
func isSubvolume(dir string) (bool, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false, err
	}
	return uint32(fs.Type) == unix.BTRFS_SUPER_MAGIC && st.Ino == firstSubvolInode && st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// SetLimit sets the disk quota of dir, which must be a btrfs subvolume
// on a filesystem with quotas enabled (a Cal directory of a Pool): the
// kernel refuses writes that would take what it references past bytes.
func SetLimit(dir string, bytes int64) error {
	if ok, err := isSubvolume(dir); err != nil || !ok {
		return fmt.Errorf("disk quota of %s: not a subvolume of a Cal filesystem (%v)", dir, err)
	}
	if bytes <= 0 {
		return fmt.Errorf("disk quota of %s: %d bytes; a Cal needs a positive quota", dir, bytes)
	}
	fd, err := openDir(dir)
	if err != nil {
		return fmt.Errorf("disk quota of %s: %w", dir, err)
	}
	defer unix.Close(fd)
	a := qgroupLimitArgs{flags: limitMaxRfer, maxRfer: uint64(bytes)} // qgroup 0: the subvolume of fd
	if err := ioctl(fd, iocQgroupLimit, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("disk quota of %s: %w", dir, err)
	}
	return nil
}

// Usage returns what dir (a Cal directory of a Pool) stores and its
// limit, from the kernel's quota group (sysfs).
func Usage(dir string) (used, limit int64, err error) {
	fd, err := openDir(dir)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	var info fsInfoArgs
	if err := ioctl(fd, iocFsInfo, unsafe.Pointer(&info)); err != nil {
		return 0, 0, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	look := inoLookupArgs{objectID: firstSubvolInode}
	if err := ioctl(fd, iocInoLookup, unsafe.Pointer(&look)); err != nil {
		return 0, 0, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	u := hex.EncodeToString(info.fsid[:])
	uuid := u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
	q := filepath.Join("/sys/fs/btrfs", uuid, "qgroups", "0_"+strconv.FormatUint(look.treeID, 10))
	read := func(name string) (int64, error) {
		b, err := os.ReadFile(filepath.Join(q, name))
		if err != nil {
			return 0, fmt.Errorf("disk usage of %s: %w", dir, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "none" {
			return 0, nil
		}
		return strconv.ParseInt(v, 10, 64)
	}
	if used, err = read("referenced"); err != nil {
		return 0, 0, err
	}
	if limit, err = read("max_referenced"); err != nil {
		return 0, 0, err
	}
	return used, limit, nil
}
