package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/trust"
)

// testNet is a data directory with a real network (genesis, ledger, keys),
// a bbolt state store and a Cal's sandbox files.
type testNet struct {
	data string
	net  *netdir.Network
	lg   *ledger.Log
	st   *store.Bolt
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	now := time.Now()
	n, err := netdir.Init(ctx, filepath.Join(data, "network"), netdir.MasterGrant{Constraints: trust.Constraints{MaxDepth: 4, MaxChildren: 10, NotBefore: now, NotAfter: now.Add(time.Hour)}}, netdir.Options{})
	must(t, err)
	lg, err := n.OpenLedger(true)
	must(t, err)
	st, err := store.OpenBolt(filepath.Join(data, "state.db"))
	must(t, err)
	tn := &testNet{data: data, net: n, lg: lg, st: st}
	t.Cleanup(func() { tn.close(t) })
	must(t, os.WriteFile(filepath.Join(data, "admin.token"), []byte("tok-0123456789abcdef0123456789abcdef\n"), 0o600))
	must(t, os.MkdirAll(filepath.Join(data, "programs"), 0o755))
	must(t, os.WriteFile(filepath.Join(data, "programs", "agent"), []byte("#!/bin/true\n"), 0o755))
	must(t, os.MkdirAll(filepath.Join(data, "audit"), 0o700))
	must(t, os.WriteFile(filepath.Join(data, "audit", "audit-00000000000000000001.jsonl"), []byte("{\"a\":1}\n{\"half"), 0o600))
	tn.append(t, 3)
	must(t, st.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put("cals", "aaaa", []byte(`{"id":"aaaa"}`)); err != nil {
			return err
		}
		return tx.Put("cals", "bbbb", []byte(`{"id":"bbbb"}`))
	}))
	return tn
}

func (tn *testNet) close(t *testing.T) {
	if tn.lg != nil {
		must(t, tn.lg.Close())
		tn.lg = nil
	}
	if tn.st != nil {
		must(t, tn.st.Close())
		tn.st = nil
	}
}

func (tn *testNet) append(t *testing.T, n int) {
	t.Helper()
	for range n {
		_, err := tn.lg.Append(context.Background(), ledger.Entry{Type: ledger.TypePolicy, Time: time.Now(), Subject: "s", Actor: "test", Data: []byte(`{"x":1}`)})
		must(t, err)
	}
}

func (tn *testNet) source() Source {
	return Source{
		Network: tn.net.Info.Network.String(), Origin: tn.net.Info.Origin, DataDir: tn.data,
		Store: tn.st, Ledger: tn.lg,
		Cals: func(view store.Snapshot) (ids []string, err error) {
			err = view.View(func(tx store.Tx) error {
				return tx.ForEach("cals", "", func(k string, _ []byte) error { ids = append(ids, k); return nil })
			})
			return ids, err
		},
		CalFile: func(_ store.Snapshot, id, name string) ([]byte, error) {
			if id == "bbbb" {
				return nil, errors.New("no such file")
			}
			return []byte(id + "/" + name), nil
		},
	}
}

// save captures and seals tn to a recipient and returns the file's bytes
// and the identity that opens it.
func (tn *testNet) save(t *testing.T) ([]byte, *age.HybridIdentity, *Manifest) {
	t.Helper()
	id, err := age.GenerateHybridIdentity()
	must(t, err)
	var buf bytes.Buffer
	sw, err := Seal(&buf, []age.Recipient{id.Recipient()})
	must(t, err)
	m, err := Capture(context.Background(), sw, tn.source())
	must(t, err)
	must(t, sw.Close())
	return buf.Bytes(), id, m
}

func restore(file []byte, id age.Identity, dst string, force bool) (*Restored, error) {
	p, err := Open(bytes.NewReader(file), []age.Identity{id})
	if err != nil {
		return nil, err
	}
	return Restore(context.Background(), p, dst, RestoreOptions{Force: force})
}

func TestSaveRestore(t *testing.T) {
	tn := newTestNet(t)
	file, id, m := tn.save(t)
	cp := tn.lg.Checkpoint()
	if m.Ledger.Size != cp.Size || m.Network != tn.net.Info.Network.String() || m.Cals.Total != 2 || m.Cals.WithKey != 1 || len(m.Cals.Missing) != 1 || m.Cals.Missing[0].ID != "bbbb" {
		t.Fatalf("manifest %+v", m)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	res, err := restore(file, id, dst, false)
	must(t, err)
	if res.CalKeys != 1 {
		t.Fatalf("restored %+v", res)
	}
	// The ledger is rebuilt with the same entries, size and root, and
	// verifies with the network's log key.
	n, err := netdir.Load(filepath.Join(dst, "network"), netdir.Options{})
	must(t, err)
	lg, err := n.OpenLedger(true)
	must(t, err)
	got := lg.Checkpoint()
	if got.Size != cp.Size || !bytes.Equal(got.Root, cp.Root) {
		t.Fatalf("restored ledger %d %x, saved %d %x", got.Size, got.Root, cp.Size, cp.Root)
	}
	for i := range cp.Size {
		a, err := lg.Entry(i)
		must(t, err)
		b, err := tn.lg.Entry(i)
		must(t, err)
		if !bytes.Equal(a, b) {
			t.Fatalf("entry %d differs", i)
		}
	}
	must(t, lg.Close())
	// The network's keys open (genesis sealed with kek.age).
	if _, err := n.LoadKey(filepath.Join(dst, "network", "genesis")); err != nil {
		t.Fatalf("genesis key after restore: %v", err)
	}
	st, err := store.OpenBolt(filepath.Join(dst, "state.db"))
	must(t, err)
	must(t, st.View(context.Background(), func(tx store.Tx) error {
		_, err := tx.Get("cals", "aaaa")
		return err
	}))
	must(t, st.Close())
	for _, f := range []string{"admin.token", "programs/agent", "restore/sandboxes/aaaa/identity.key"} {
		if _, err := os.Stat(filepath.Join(dst, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "programs", "agent")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("program mode: %v %v", fi, err)
	}
	// The audit segment was cut after its last complete line.
	if b, err := os.ReadFile(filepath.Join(dst, "audit", "audit-00000000000000000001.jsonl")); err != nil || string(b) != "{\"a\":1}\n" {
		t.Errorf("audit: %q %v", b, err)
	}
	for _, f := range []string{"network/ledger/lock"} {
		if _, err := os.Stat(filepath.Join(dst, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestRestoreRefusals: each bad input is refused with its reason, and the
// target directory is left as it was.
func TestRestoreRefusals(t *testing.T) {
	tn := newTestNet(t)
	file, id, _ := tn.save(t)
	other := newTestNet(t)
	otherFile, otherID, _ := other.save(t)

	// A non-empty directory without --force.
	busy := filepath.Join(t.TempDir(), "busy")
	must(t, os.MkdirAll(busy, 0o700))
	must(t, os.WriteFile(filepath.Join(busy, "x"), []byte("keep"), 0o600))
	if _, err := restore(file, id, busy, false); !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("non-empty: %v", err)
	}
	// --force over a directory with no network in it.
	if _, err := restore(file, id, busy, true); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("force over a non-network: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(busy, "x")); err != nil || string(b) != "keep" {
		t.Fatalf("the directory was changed: %q %v", b, err)
	}

	// A snapshot of another network into an existing one.
	tn.close(t)
	if _, err := restore(otherFile, otherID, tn.data, true); !errors.Is(err, ErrOtherNetwork) {
		t.Fatalf("other network: %v", err)
	}
	// A stale snapshot: the ledger grew since.
	lg, err := tn.net.OpenLedger(true)
	must(t, err)
	tn.lg = lg
	tn.append(t, 2)
	must(t, lg.Close())
	tn.lg = nil
	if _, err := restore(file, id, tn.data, true); !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "lose 2 entries") {
		t.Fatalf("stale: %v", err)
	}
	// A directory in use by a running control plane.
	st, err := store.OpenBolt(filepath.Join(tn.data, "state.db"))
	must(t, err)
	if _, err := restore(file, id, tn.data, true); !errors.Is(err, ErrInUse) {
		t.Fatalf("in use: %v", err)
	}
	must(t, st.Close())

	// A changed header cannot be told from another key's.
	if _, err := restore(flip(file, 40), id, filepath.Join(t.TempDir(), "h"), false); !errors.Is(err, ErrKey) && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("changed header: %v", err)
	}
	// The wrong key; a changed byte; a cut file.
	if _, err := restore(file, otherID, filepath.Join(t.TempDir(), "a"), false); !errors.Is(err, ErrKey) {
		t.Fatalf("wrong key: %v", err)
	}
	for name, bad := range map[string][]byte{
		"flipped":   flip(file, len(file)/2),
		"truncated": file[:len(file)-100],
		"empty":     nil,
	} {
		dst := filepath.Join(t.TempDir(), name)
		if _, err := restore(bad, id, dst, false); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a refused restore left %s", name, dst)
		}
		left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".calnet-restore-*"))
		if len(left) > 0 {
			t.Errorf("%s: a refused restore left %v", name, left)
		}
	}
}

// TestForceReplacesSameNetwork: --force over the same network with an
// older ledger replaces it and keeps the old directory aside.
func TestForceReplacesSameNetwork(t *testing.T) {
	tn := newTestNet(t)
	old := tn.lg.Checkpoint().Size
	tn.append(t, 1)
	file, id, m := tn.save(t)
	if m.Ledger.Size != old+1 {
		t.Fatalf("manifest size %d", m.Ledger.Size)
	}
	tn.close(t)
	res, err := restore(file, id, tn.data, true)
	must(t, err)
	if res.Replaced == "" {
		t.Fatal("the old directory was not kept")
	}
	if _, err := os.Stat(filepath.Join(res.Replaced, "state.db")); err != nil {
		t.Fatalf("old directory: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

func TestRecipients(t *testing.T) {
	text, rcpt, err := Keygen()
	must(t, err)
	if !strings.HasPrefix(rcpt, "age1pq1") {
		t.Fatalf("recipient %s", rcpt)
	}
	p := filepath.Join(t.TempDir(), "key")
	must(t, os.WriteFile(p, []byte(text), 0o600))
	ids, err := ReadIdentities(p)
	if err != nil || len(ids) != 1 {
		t.Fatal(ids, err)
	}
	must(t, os.Chmod(p, 0o644))
	if _, err := ReadIdentities(p); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a key others can read: %v", err)
	}
	classic, _ := age.GenerateX25519Identity()
	for _, bad := range [][]string{nil, {classic.Recipient().String()}, {"age1pq1xyz"}} {
		if _, err := ParseRecipients(bad); err == nil {
			t.Errorf("recipients %v accepted", bad)
		}
	}
	if _, err := ParseRecipients([]string{rcpt}); err != nil {
		t.Fatal(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
