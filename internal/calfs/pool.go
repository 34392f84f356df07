// Package calfs keeps the Cals' private directories on a filesystem of
// their own, with a disk quota per Cal that the kernel enforces: a write
// past a Cal's quota fails with EDQUOT, and no Cal can fill the filesystem
// that holds the control plane's ledger and state.
//
// The filesystem is btrfs in an image file under the data directory
// (sparse, created once, loop-mounted on <data>/cals at every start); each
// Cal directory is a subvolume whose quota group limit is the Cal's quota.
// This host's kernel has no ext4 or XFS quota formats, and a tmpfs would
// neither persist nor stay out of memory. A Cal's seccomp filter refuses
// the ioctls that make subvolumes (sandbox.SubvolumeIoctls): a new subvolume would
// have a quota group of its own, outside the Cal's limit.
package calfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Sizes of a pool's image.
const (
	// MinSize is the smallest image: btrfs needs room for its metadata.
	MinSize = 1 << 30
	// MaxDefaultSize caps the size DefaultSize picks.
	MaxDefaultSize = 64 << 30
)

// ErrUnsupported reports a host that cannot hold a pool.
var ErrUnsupported = errors.New("disk quotas need root, btrfs in the kernel and mkfs.btrfs (Debian: apt-get install btrfs-progs)")

// Supported reports nil when this host can make and mount a pool, else
// an error wrapping ErrUnsupported that says what is missing.
func Supported() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root", ErrUnsupported)
	}
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(b), "\tbtrfs\n") {
		return fmt.Errorf("%w: the kernel has no btrfs", ErrUnsupported)
	}
	if mkfsPath() == "" {
		return fmt.Errorf("%w: mkfs.btrfs not found", ErrUnsupported)
	}
	return nil
}

// mkfsPath finds mkfs.btrfs on PATH or in the sbin directories, which a
// root shell has on PATH and a service or CI environment may not.
func mkfsPath() string {
	if p, err := exec.LookPath("mkfs.btrfs"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs", "/usr/local/sbin/mkfs.btrfs"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// DefaultSize is the image size for a new pool on the filesystem holding
// dir: a quarter of its free space, between MinSize and MaxDefaultSize.
// The image is sparse: it takes space as Cals write.
func DefaultSize(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	free := int64(st.Bavail) * st.Bsize
	return min(max(free/4, MinSize), MaxDefaultSize), nil
}

// Pool is the mounted Cal filesystem.
type Pool struct {
	dir, image string
	size       int64
	log        *slog.Logger
}

// Dir is where the pool is mounted.
func (p *Pool) Dir() string { return p.dir }

// Size is the image's size: what all Cals together may store.
func (p *Pool) Size() int64 { return p.size }

// Open mounts the pool in image on dir, first making the image (size
// bytes, sparse) when there is none. Directories already in dir (a
// network made before disk quotas) are moved into subvolumes of the new
// pool. A pool already mounted there (the previous control plane died)
// is used as it is.
func Open(ctx context.Context, image, dir string, size int64, log *slog.Logger) (*Pool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := Supported(); err != nil {
		return nil, err
	}
	p := &Pool{dir: dir, image: image, log: log}
	if src, mounted, err := mountedAt(dir); err != nil {
		return nil, err
	} else if mounted {
		if back := backingFile(src); back != image {
			return nil, fmt.Errorf("cal filesystem: %s is a mount of %s (backed by %q), not of %s", dir, src, back, image)
		}
		return p, p.finish()
	}
	old := dir + ".pre-quota"
	switch _, err := os.Stat(image); {
	case errors.Is(err, fs.ErrNotExist):
		if size < MinSize {
			return nil, fmt.Errorf("cal filesystem: %d bytes is below the minimum of %d", size, int64(MinSize))
		}
		if err := makeImage(ctx, image, size); err != nil {
			return nil, err
		}
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			if err := os.Rename(dir, old); err != nil {
				return nil, fmt.Errorf("cal filesystem: moving the existing cal directories aside: %w", err)
			}
		}
	case err != nil:
		return nil, fmt.Errorf("cal filesystem: %w", err)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	// A previous mount may live on after its unmount, in the mount
	// namespaces of Cals still exiting. Mounting the image again then
	// would make a second filesystem over the same blocks (the kernel
	// gives a clone a temporary fsid): wait until the old one is gone.
	if err := waitDetached(ctx, image, 15*time.Second); err != nil {
		return nil, err
	}
	if err := mount(image, dir); err != nil {
		return nil, err
	}
	if err := quotaEnable(dir); err != nil {
		_ = p.Close() // unmounting what we mounted; the error that matters is the one returned
		return nil, fmt.Errorf("cal filesystem: enable quotas: %w", err)
	}
	if err := p.migrate(old); err != nil {
		_ = p.Close() // unmounting what we mounted; the error that matters is the one returned
		return nil, err
	}
	return p, p.finish()
}

func (p *Pool) finish() error {
	st, err := os.Stat(p.image)
	if err != nil {
		return err
	}
	p.size = st.Size()
	return os.Chmod(p.dir, 0o711)
}

func makeImage(ctx context.Context, image string, size int64) error {
	tmp := image + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cal filesystem: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cal filesystem: %w", err)
	}
	out, err := exec.CommandContext(ctx, mkfsPath(), "-q", "-L", "calnet-cals", tmp).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cal filesystem: mkfs.btrfs: %w: %s", err, strings.TrimSpace(string(out)))
	}
	// Only a complete filesystem gets the image's name.
	if err := os.Rename(tmp, image); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cal filesystem: %w", err)
	}
	return nil
}

// mount attaches image to a free loop device (freed again when the
// filesystem is unmounted) and mounts it on dir.
func mount(image, dir string) error {
	f, err := os.OpenFile(image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cal filesystem: %w", err)
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cal filesystem: %w", err)
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("cal filesystem: no free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("cal filesystem: %w", err)
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], image)
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) && attempt < 20 {
			lf.Close() // another process took it first
			continue
		}
		if err != nil {
			lf.Close()
			return fmt.Errorf("cal filesystem: attach %s to %s: %w", image, dev, err)
		}
		err = unix.Mount(dev, dir, "btrfs", unix.MS_NOSUID|unix.MS_NODEV, "")
		lf.Close() // the mount holds the device; autoclear frees it at unmount
		if err != nil {
			return fmt.Errorf("cal filesystem: mount %s on %s: %w", dev, dir, err)
		}
		return nil
	}
}

// mountedAt returns the source of the mount on dir, if dir is a mount
// point.
func mountedAt(dir string) (source string, ok bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescape(fields[4]) != dir {
			continue
		}
		for i, v := range fields {
			if v == "-" && i+2 < len(fields) {
				source, ok = fields[i+2], true
			}
		}
	}
	return source, ok, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// backingFile returns the file behind a loop device, or "".
func backingFile(dev string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Create makes the directory of a Cal, a subvolume named name, and
// returns its path; an existing one is kept.
func (p *Pool) Create(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("cal filesystem: bad directory name %q", name)
	}
	path := filepath.Join(p.dir, name)
	if ok, err := isSubvolume(path); err == nil {
		if !ok {
			return "", fmt.Errorf("cal filesystem: %s exists and is not a subvolume", path)
		}
		return path, nil
	}
	if err := subvolCreate(p.dir, name); err != nil {
		return "", fmt.Errorf("cal filesystem: create %s: %w", path, err)
	}
	return path, nil
}

// Remove deletes a Cal's directory and everything in it.
func (p *Pool) Remove(name string) error {
	if err := subvolDestroy(p.dir, name); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("cal filesystem: remove %s: %w", name, err)
	}
	return nil
}

// migrate moves the directories a network kept in old (before it had a
// pool) into subvolumes of the pool, then removes old.
func (p *Pool) migrate(old string) error {
	ents, err := os.ReadDir(old)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cal filesystem: migrate: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dst, err := p.Create(e.Name())
		if err != nil {
			return err
		}
		if err := copyTree(filepath.Join(old, e.Name()), dst); err != nil {
			return fmt.Errorf("cal filesystem: migrate %s: %w", e.Name(), err)
		}
		p.log.Info("cal directory moved onto the cal filesystem", "dir", dst)
	}
	return os.RemoveAll(old)
}

// copyTree copies src into dst (which exists), keeping modes and owners.
// Sockets and other special files are skipped: their owners recreate them.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		mode := os.FileMode(st.Mode & 0o7777)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if rel != "." {
				if err := os.Mkdir(to, mode); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
			}
		case unix.S_IFREG:
			if err := copyFile(path, to, mode); err != nil {
				return err
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			os.Remove(to)
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		default:
			return nil
		}
		if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return os.Chmod(to, mode)
		}
		return nil
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Close unmounts the pool and waits (a few seconds at most) until the
// filesystem is gone and its loop device freed. While files on it are
// still open (a Cal's workload that outlived it, holding its log), the
// mount is detached from the tree and the filesystem ends with the last
// of them; Close then says so, and the next Open waits for it.
func (p *Pool) Close() error {
	var err error
	for range 100 {
		if err = unix.Unmount(p.dir, 0); err == nil || errors.Is(err, unix.EINVAL) {
			break
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("cal filesystem: unmount %s: %w", p.dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if errors.Is(err, unix.EBUSY) {
		if err := unix.Unmount(p.dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("cal filesystem: unmount %s: %w", p.dir, err)
		}
	}
	return waitDetached(context.Background(), p.image, 5*time.Second)
}

// attachedTo lists the loop devices backed by image.
func attachedTo(image string) []string {
	var out []string
	devs, _ := filepath.Glob("/sys/block/loop*")
	for _, d := range devs {
		if back := backingFile(d); back == image || back == image+" (deleted)" {
			out = append(out, "/dev/"+filepath.Base(d))
		}
	}
	return out
}

// waitDetached waits until no loop device is backed by image: the last
// mount of its filesystem, in any mount namespace, is gone.
func waitDetached(ctx context.Context, image string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		devs := attachedTo(image)
		if len(devs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cal filesystem: %s is still in use through %s (processes of an earlier run still hold it; they end with their Cals)", image, strings.Join(devs, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
