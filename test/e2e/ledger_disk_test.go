package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/soulfra/calnet/client"
)

// TestUpRefusesDamagedOrOlderLedger: `calnet up` on a ledger with one
// damaged byte, or on an older copy of the whole ledger directory, refuses
// to start and says which file and what to do; nothing is changed. The
// damaged ledger is repaired by `calnet ledger repair`; the older copy is
// accepted only with --accept-ledger-rollback.
func TestUpRefusesDamagedOrOlderLedger(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	ledgerDir := filepath.Join(data, "network", "ledger")
	n := up(t, data)
	ctx := context.Background()
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "doomed", Permissions: []string{"read"}}, true); err != nil {
		t.Fatal(err)
	}
	n.stop(syscall.SIGTERM)
	old := filepath.Join(t.TempDir(), "ledger-before-revoke")
	copyDirFiles(t, ledgerDir, old)
	n.start()
	if _, err := n.c.Revoke(ctx, "doomed", "compromised"); err != nil {
		t.Fatal(err)
	}
	n.stop(syscall.SIGTERM)

	upOnce := func(extra ...string) (int, string) {
		addr, router := freeAddr(t), freeAddr(t)
		cmd := exec.Command(calnetBin, append([]string{"up", "--data", data, "--addr", addr, "--router", router, "--dns", ""}, extra...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, string(out)
	}

	// One damaged byte in the latest checkpoint record.
	cps := filepath.Join(ledgerDir, "checkpoints")
	good, _ := os.ReadFile(cps)
	bad := append([]byte(nil), good...)
	bad[len(bad)-40] ^= 0x08
	must(t, os.WriteFile(cps, bad, 0o600))
	entries, _ := os.ReadFile(filepath.Join(ledgerDir, "entries"))
	code, out := upOnce()
	if code == 0 || !strings.Contains(out, "checkpoints") || !strings.Contains(out, "acknowledged") || !strings.Contains(out, "calnet ledger repair") {
		t.Fatalf("calnet up on a damaged ledger: exit %d\n%s", code, out)
	}
	if after, _ := os.ReadFile(filepath.Join(ledgerDir, "entries")); string(after) != string(entries) {
		t.Fatal("a refused start changed the entries")
	}
	r := calnet(t, "", "ledger", "repair", "--dir", filepath.Join(data, "network"))
	if r.code != 0 || !strings.Contains(r.stdout, "repaired") {
		t.Fatalf("ledger repair: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := calnet(t, "", "ledger", "verify", "--dir", filepath.Join(data, "network")); r.code != 0 {
		t.Fatalf("ledger verify after repair: %s %s", r.stdout, r.stderr)
	}

	// The whole ledger directory from before the revocation.
	os.RemoveAll(ledgerDir)
	copyDirFiles(t, old, ledgerDir)
	code, out = upOnce()
	if code == 0 || !strings.Contains(out, "older than the control plane's state store") || !strings.Contains(out, "Restore the newest copy of "+ledgerDir) ||
		!strings.Contains(out, "--accept-ledger-rollback") {
		t.Fatalf("calnet up on an older ledger: exit %d\n%s", code, out)
	}
	// The operator accepts the loss explicitly: it starts.
	n.start("--accept-ledger-rollback")
	st, err := n.c.Status(ctx)
	if err != nil || st.LedgerSize == 0 {
		t.Fatalf("status after accepting: %+v %v", st, err)
	}
	n.stop(syscall.SIGTERM)
}

func copyDirFiles(t *testing.T, from, to string) {
	t.Helper()
	must(t, os.MkdirAll(to, 0o700))
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
