package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/auditlog"
	"github.com/soulfra/calnet/internal/controlplane"
)

// fillTemplate is a Cal whose workload tries to escape its disk quota:
// it asks btrfs for a subvolume of its own in /data, then writes 64 MiB
// there, then reports what happened and what it stored (once, even if
// the workload is restarted; after a sync, which returns the space of the
// removed file to the quota).
const fillTemplate = `
name: filler
permissions: [read]
tiers:
  "-10": [{name: identity, builtin: identity}]
  "-9": [{name: vault, builtin: vault}]
  "-6": [{name: discovery, builtin: discovery}]
  "-3":
    - name: fill
      command: [/bin/sh, -c, "if mkdir /data/once 2>/dev/null; then btrfs subvolume create /data/escape >/tmp/sv 2>&1; sv=$?; dd if=/dev/zero of=/data/fill bs=1M count=64 conv=fsync 2>/tmp/dd; dd=$?; size=$(stat -c %s /data/fill); { echo subvolume=$sv; cat /tmp/sv; echo dd=$dd size=$size; cat /tmp/dd; } >/tmp/report; rm -f /data/fill; sync; cp /tmp/report /data/result; fi; while true; do sleep 1; done"]
      health: {exec: [/bin/true], interval: 200ms}
  "0": [{name: gateway, builtin: gateway}]
`

// TestCalDiskQuota: a Cal's workload wrote 2 GiB in 1.1 s onto the
// filesystem of the ledger and state.db. Now /data is a subvolume of the
// Cal filesystem whose limit is the disk quota of the Cal's blessing: the
// kernel stops the write at the quota (EDQUOT), the workload cannot make
// a subvolume to escape it, a child cannot be given more than its parent
// holds, and all of it survives a restart of the control plane.
func TestCalDiskQuota(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	const quota = 16 << 20
	sp := spawnRetry(t, n, client.SpawnRequest{Name: "filler", TemplateYAML: fillTemplate, DiskBytes: quota, MemoryBytes: 64 << 20})
	result := filepath.Join(n.data, "cals", sp.Cal, "result")
	var report string
	waitFor(t, "the workload's report", 60*time.Second, func() bool {
		b, err := os.ReadFile(result)
		report = string(b)
		return err == nil && strings.Contains(report, "size=")
	})
	var size int64 = -1
	for _, f := range strings.Fields(report) {
		if v, ok := strings.CutPrefix(f, "size="); ok {
			size = atoi(v)
		}
	}
	if size < 0 || size > quota {
		t.Fatalf("the workload stored %d bytes under a %d-byte disk quota:\n%s", size, quota, report)
	}
	if !strings.Contains(report, "Disk quota exceeded") {
		t.Fatalf("the write past the quota did not fail with EDQUOT:\n%s", report)
	}
	if !strings.Contains(report, "subvolume=1") || !strings.Contains(report, "Operation not permitted") {
		t.Fatalf("the workload made a subvolume (outside its quota):\n%s", report)
	}
	c, err := n.c.Get(ctx, "filler")
	if err != nil || c.Quota.DiskBytes != quota || !c.Isolation["disk-quota"] {
		t.Fatalf("filler: quota %+v isolation %v (%v)", c.Quota, c.Isolation, err)
	}
	// Attenuation: a child's disk quota comes out of its parent's.
	var ae *client.Error
	_, err = n.c.Spawn(ctx, client.SpawnRequest{Parent: "filler", Permissions: []string{"read"}}, true)
	if !asAPIError(err, &ae) || ae.Status != 403 {
		t.Fatalf("spawn under a parent without spawn: %v", err)
	}
	big := spawnRetry(t, n, client.SpawnRequest{Name: "holder", Permissions: []string{"spawn", "read"}, DiskBytes: 32 << 20, MemoryBytes: 128 << 20})
	_, err = n.c.Spawn(ctx, client.SpawnRequest{Parent: big.Cal, Permissions: []string{"read"}, DiskBytes: 33 << 20}, true)
	if !asAPIError(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "quota disk_bytes") {
		t.Fatalf("a child asking more disk than its parent holds: %v", err)
	}

	// A restart remounts the Cal filesystem: the files and the quota stay.
	n.stop(syscall.SIGTERM)
	if _, err := os.Stat(result); err == nil {
		t.Fatal("the Cal filesystem is still mounted after the control plane stopped")
	}
	n.start()
	waitFor(t, "filler to run again", 30*time.Second, func() bool {
		c, err := n.c.Get(ctx, "filler")
		return err == nil && c.State == "running" && c.Isolation["disk-quota"]
	})
	if b, err := os.ReadFile(result); err != nil || string(b) != report {
		t.Fatalf("after a restart the Cal's files are %q (%v)", b, err)
	}
	// The kernel still holds the line: from the host, as the Cal's uid
	// (which may traverse the test's directories, as a data dir's).
	c, _ = n.c.Get(ctx, "filler")
	for d := filepath.Dir(n.data); d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		must(t, os.Chmod(d, 0o711))
	}
	f, err := os.OpenFile(filepath.Join(n.data, "cals", c.ID, "again"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	must(t, f.Chown(c.UID, c.UID))
	f.Close()
	out, _ := runAs(c.UID, "dd", "if=/dev/zero", "of="+filepath.Join(n.data, "cals", c.ID, "again"), "bs=1M", "count=32", "conv=fsync")
	if st, err := os.Stat(filepath.Join(n.data, "cals", c.ID, "again")); err != nil || st.Size() > quota || !strings.Contains(out, "Disk quota exceeded") {
		t.Fatalf("after a restart the Cal wrote %v bytes (%v): %s", st.Size(), err, out)
	}
}

// TestControlPlaneRefusesWritesBelowDiskReserve runs a network on a small
// filesystem and fills it: below the reserve the control plane refuses
// spawns and writes with an error naming the free space and the reserve
// (revocations may use half of it), nothing stored is lost, and it works
// again once there is room.
func TestControlPlaneRefusesWritesBelowDiskReserve(t *testing.T) {
	needRoot(t)
	fs, err := os.MkdirTemp("", "cdr") // short: a Cal's socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", fs, "tmpfs", 0, "size=128m,mode=0711"); err != nil {
		t.Skipf("tmpfs: %v", err)
	}
	t.Cleanup(func() {
		must(t, unix.Unmount(fs, unix.MNT_DETACH))
		os.Remove(fs)
	})
	const reserve = 48 << 20
	n := up(t, filepath.Join(fs, "data"), "--min-free-disk", "48Mi")
	ctx := context.Background()
	a := spawnRetry(t, n, client.SpawnRequest{Name: "a", Permissions: []string{"read"}, DiskBytes: 16 << 20})
	b := spawnRetry(t, n, client.SpawnRequest{Name: "b", Permissions: []string{"read"}, DiskBytes: 16 << 20})
	before, err := n.c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(fs, "filler")
	fill := func(free int64) {
		t.Helper()
		var st unix.Statfs_t
		must(t, unix.Statfs(fs, &st))
		have := int64(st.Bavail) * st.Bsize
		f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(make([]byte, have-free)); err != nil {
			t.Fatal(err)
		}
	}

	fill(reserve - 8<<20) // between half the reserve and the reserve
	var ae *client.Error
	_, err = n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}, DiskBytes: 16 << 20}, true)
	if !asAPIError(err, &ae) || ae.Status != 507 || !strings.Contains(ae.Message, "below the reserve of 50331648") || !strings.Contains(ae.Message, "bytes free") {
		t.Fatalf("spawn below the disk reserve: %v", err)
	}
	if _, err := n.c.Revoke(ctx, a.Cal, "disk test"); err != nil {
		t.Fatalf("a revocation above half the reserve was refused: %v", err)
	}
	fill(reserve/2 - 8<<20)
	if _, err := n.c.Revoke(ctx, b.Cal, "disk test"); !asAPIError(err, &ae) || ae.Status != 507 || !strings.Contains(ae.Message, "refusing even revocations") {
		t.Fatalf("a revocation below half the reserve: %v", err)
	}
	// Nothing stored is lost: the registry and the ledger are whole.
	after, err := n.c.List(ctx)
	if err != nil || len(after) != len(before) {
		t.Fatalf("registry below the reserve: %d cals (%v), had %d", len(after), err, len(before))
	}
	if r := calnet(t, "", "ledger", "verify", "--dir", filepath.Join(n.data, "network")); r.code != 0 || !strings.Contains(r.stdout, "1 revocations verified") {
		t.Fatalf("ledger verify below the reserve: %+v", r)
	}

	// Room again: everything works, and the audit trail says what it missed.
	os.Remove(filler)
	spawnRetry(t, n, client.SpawnRequest{Permissions: []string{"read"}, DiskBytes: 16 << 20})
	if _, err := n.c.Revoke(ctx, b.Cal, "disk test"); err != nil {
		t.Fatal(err)
	}
	n.stop(syscall.SIGTERM)
	var audit []byte
	files, _ := filepath.Glob(filepath.Join(controlplane.AuditDir(n.data), "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		audit = append(audit, b...)
	}
	if !strings.Contains(string(audit), `"type":"`+auditlog.TypeDropped+`"`) {
		t.Error("the audit trail does not record the events it could not write")
	}
	if r := calnet(t, "", "ledger", "verify", "--dir", filepath.Join(n.data, "network")); r.code != 0 || !strings.Contains(r.stdout, "2 revocations verified") {
		t.Fatalf("ledger verify after: %+v", r)
	}
	n.start("--min-free-disk", "48Mi")
	if cals, err := n.c.List(ctx); err != nil || len(cals) != len(before)+1 {
		t.Fatalf("after a restart: %d cals (%v), want %d", len(cals), err, len(before)+1)
	}
}

func atoi(s string) int64 {
	var v int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

// runAs runs a command as uid (and gid uid) and returns its output.
func runAs(uid int, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
