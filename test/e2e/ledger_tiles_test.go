package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/ledger"
)

// startWitness runs `calnet witness run` and stops it when the test ends.
func startWitness(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(calnetBin, append([]string{"witness", "run"}, args...)...)
	logf, err := os.CreateTemp(t.TempDir(), "witness-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait() // its log says how it ended
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("witness %v log:\n%s", args, b)
		}
	})
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestLedgerTilesWitnessesChainProof: the ledger is public as tlog-tiles
// (no credential), two witnesses cosign its checkpoints through the
// control plane's pushes, a third follows the tiles itself; a Cal's chain
// is exported and verified offline with N cosignatures required, and after
// its parent's revocation a new export proves it revoked.
func TestLedgerTilesWitnessesChainProof(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	var vkeys []string
	for _, name := range []string{"w1.test/witness", "w2.test/witness", "w3.test/witness"} {
		file := filepath.Join(tmp, strings.SplitN(name, ".", 2)[0]+".key")
		vkeys = append(vkeys, strings.TrimSpace(ok(t, tmp, "witness", "init", "--key", file, "--name", name)))
	}
	w1, w2, ledgerAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	n := up(t, data, "--ledger-addr", ledgerAddr, "--witness", "http://"+w1+"="+vkeys[0], "--witness", "http://"+w2+"="+vkeys[1])
	netDir := filepath.Join(data, "network")
	logURL := "http://" + ledgerAddr + "/ledger"
	startWitness(t, "--dir", netDir, "--key", filepath.Join(tmp, "w1.key"), "--state", filepath.Join(tmp, "w1.state"), "--listen", w1)
	startWitness(t, "--dir", netDir, "--key", filepath.Join(tmp, "w2.key"), "--state", filepath.Join(tmp, "w2.state"), "--listen", w2)
	w3 := freeAddr(t)
	startWitness(t, "--dir", netDir, "--key", filepath.Join(tmp, "w3.key"), "--state", filepath.Join(tmp, "w3.state"), "--listen", w3, "--log", logURL, "--interval", "200ms")

	ctx := context.Background()
	a, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "alpha", Permissions: []string{"spawn", "read", "revoke"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: "alpha", Name: "beta", Permissions: []string{"read"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	info, err := netdir.Load(netDir, netdir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	policy := func(keys ...string) ledger.WitnessPolicy {
		var p ledger.WitnessPolicy
		for _, k := range keys {
			w, err := ledger.ParseWitnessKey(k)
			if err != nil {
				t.Fatal(err)
			}
			p.Witnesses = append(p.Witnesses, w)
		}
		p.Required = len(keys)
		return p
	}
	// cosignedAt waits until url serves a checkpoint cosigned by keys at
	// least as large as the ledger on disk was when it was called.
	cosignedAt := func(url string, keys ...string) *ledger.Cosigned {
		var own struct {
			Size uint64 `json:"size"`
		}
		okJSON(t, tmp, &own, "ledger", "checkpoint", "--dir", netDir)
		var got *ledger.Cosigned
		waitFor(t, "a checkpoint cosigned by "+strings.Join(keys, ", "), 20*time.Second, func() bool {
			code, _, body := get(t, url)
			if code != 200 {
				return false
			}
			c, err := ledger.VerifyCosigned(body, info.Info.Origin, info.Info.LogKey, policy(keys...))
			if err != nil || c.Size < own.Size {
				return false
			}
			got = c
			return true
		})
		return got
	}
	// The operator API and --ledger-addr serve it, without a credential.
	cp := cosignedAt(logURL+"/checkpoint", vkeys[0], vkeys[1])
	code, hdr, _ := get(t, "http://"+n.addr+"/ledger/tile/0/000.p/1")
	if code != 200 || hdr.Get("Cache-Control") != "public, max-age=60" {
		t.Fatalf("API /ledger tile: %d %v", code, hdr)
	}
	// The pull witness cosigned the same history.
	cosignedAt("http://"+w3+"/checkpoint", vkeys[2])

	// An independent client (torchwood's fetcher, x/mod's tlog) proves
	// the last entry is in the served tree.
	tf, _ := torchwood.NewTileFetcher(logURL)
	tree := tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Root)}
	hr := torchwood.TileHashReaderWithContext(ctx, tree, tf)
	if _, err := tlog.ProveRecord(tree.N, tree.N-1, hr); err != nil {
		t.Fatalf("tlog over the served tiles: %v", err)
	}

	bundle := filepath.Join(tmp, "beta.proof")
	export := func() {
		out := ok(t, tmp, "chain", "export", b.Cal, "--dir", netDir, "--log", logURL, "--witness", vkeys[0], "--witness", vkeys[1], "--require", "2")
		if err := os.WriteFile(bundle, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	export()
	out := ok(t, tmp, "chain", "verify", "--offline", bundle, "--dir", netDir, "--witness", vkeys[0], "--witness", vkeys[1], "--require", "2")
	if !strings.Contains(out, "OK  "+b.Cal+" (depth 3)") || !strings.Contains(out, "no revocation of any link") {
		t.Fatalf("verify: %s", out)
	}
	// Refusals, each named.
	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"an unknown witness's cosignatures do not count", []string{"--witness", vkeys[2], "--require", "1"}, "too few witness cosignatures"},
		{"more required than trusted", []string{"--witness", vkeys[0], "--require", "2"}, "2 cosignatures required of 1 witnesses"},
		{"malformed witness key", []string{"--witness", "w+1+x", "--require", "1"}, "invalid witness key"},
	}
	for _, r := range refusals {
		res := calnet(t, tmp, append([]string{"chain", "verify", "--offline", bundle, "--dir", netDir}, r.args...)...)
		if res.code == 0 || !strings.Contains(res.stderr+res.stdout, r.want) {
			t.Errorf("%s: exit %d, %s%s", r.name, res.code, res.stdout, res.stderr)
		}
	}
	tampered := filepath.Join(tmp, "tampered.proof")
	raw, _ := os.ReadFile(bundle)
	i := strings.LastIndex(string(raw), `"proof":["`) + len(`"proof":["`)
	mod := []byte(string(raw))
	if mod[i] == 'A' {
		mod[i] = 'B'
	} else {
		mod[i] = 'A'
	}
	if err := os.WriteFile(tampered, mod, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := calnet(t, tmp, "chain", "verify", "--offline", tampered, "--dir", netDir); res.code == 0 || !strings.Contains(res.stderr, "not included") {
		t.Errorf("tampered proof: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}

	// Revoke alpha: once the witnesses cosigned a checkpoint with the
	// revocation, a new bundle shows beta revoked, offline.
	if _, err := n.c.Revoke(ctx, "alpha", "test"); err != nil {
		t.Fatal(err)
	}
	cosignedAt(logURL+"/checkpoint", vkeys[0], vkeys[1])
	export()
	res := calnet(t, tmp, "chain", "verify", "--offline", bundle, "--dir", netDir, "--witness", vkeys[0], "--witness", vkeys[1], "--require", "2")
	if res.code != 1 || !strings.Contains(res.stdout, "REVOKED") || !strings.Contains(res.stdout, a.Cal) {
		t.Fatalf("revoked: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}
}
