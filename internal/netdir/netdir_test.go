package netdir

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/trust"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func testOpts() Options { return Options{Now: func() time.Time { return testNow }} }

func newNetwork(t *testing.T) *Network {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "net")
	n, err := Init(context.Background(), dir, MasterGrant{Constraints: trust.Constraints{
		MaxDepth: 6, MaxChildren: 3, Quota: trust.Quota{CPUMillis: 4000, MemoryBytes: 8 << 30, PIDs: 1000},
		NotAfter: testNow.Add(24 * time.Hour),
	}}, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *Network) child(t *testing.T, parent, name string, perms trust.Permissions) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(n.Dir), name)
	if _, err := n.Keygen(dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.Bless(context.Background(), BlessRequest{ParentDir: parent, ChildDir: dir, Permissions: perms}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInitLoadReplay(t *testing.T) {
	n := newNetwork(t)
	master := filepath.Join(n.Dir, "master")
	a := n.child(t, master, "a", trust.PermissionsOf(trust.PermSpawn, trust.PermRevoke, trust.PermRead))
	b := n.child(t, a, "b", trust.PermissionsOf(trust.PermRead))

	loaded, err := Load(n.Dir, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	lg, err := loaded.OpenLedger(false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, lg.Close()) }()
	st, err := loaded.Replay(context.Background(), lg)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Blessings) != 3 || len(st.Children[loaded.Info.Master]) != 1 {
		t.Fatalf("replayed %d blessings", len(st.Blessings))
	}
	res, err := loaded.VerifyPath(context.Background(), b, testNow)
	if err != nil || res.Err != nil || res.Verified.Depth != 3 {
		t.Fatalf("verify b: %v %v", err, res.Err)
	}
	// Resolve by prefix and short form.
	id := res.Verified.Cal
	for _, ref := range []string{id.String(), id.String()[:6], id.Short()} {
		got, err := st.Resolve(ref)
		if err != nil || got != id {
			t.Errorf("Resolve(%q) = %v, %v", ref, got, err)
		}
	}
	if _, err := st.Resolve("ab"); err == nil {
		t.Error("a 2-character prefix resolved")
	}
}

func TestBlessLimits(t *testing.T) {
	n := newNetwork(t)
	master := filepath.Join(n.Dir, "master")
	for i := range 3 {
		n.child(t, master, "c"+string(rune('0'+i)), trust.PermissionsOf(trust.PermRead))
	}
	extra := filepath.Join(filepath.Dir(n.Dir), "extra")
	if _, err := n.Keygen(extra); err != nil {
		t.Fatal(err)
	}
	_, _, err := n.Bless(context.Background(), BlessRequest{ParentDir: master, ChildDir: extra, Permissions: trust.PermissionsOf(trust.PermRead)})
	if err == nil || !strings.Contains(err.Error(), "max_children is 3") {
		t.Fatalf("fourth child: %v", err)
	}
	if _, err := os.Stat(filepath.Join(extra, BlessingFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("refused bless wrote a blessing")
	}
}

func TestRevokeSubtree(t *testing.T) {
	n := newNetwork(t)
	master := filepath.Join(n.Dir, "master")
	a := n.child(t, master, "a", trust.PermissionsOf(trust.PermSpawn, trust.PermRead))
	b := n.child(t, a, "b", trust.PermissionsOf(trust.PermSpawn, trust.PermRead))
	c := n.child(t, b, "c", trust.PermissionsOf(trust.PermRead))
	pa, _ := ReadPublic(a)

	// a lacks revoke: it cannot revoke its own child.
	pb, _ := ReadPublic(b)
	if _, _, err := n.Revoke(context.Background(), RevokeRequest{Target: pb.ID().String(), AsDir: a}); err == nil || !strings.Contains(err.Error(), "does not hold revoke") {
		t.Fatalf("revoke without permission: %v", err)
	}
	_, sub, err := n.Revoke(context.Background(), RevokeRequest{Target: pa.ID().Short(), Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sub) != 3 {
		t.Fatalf("subtree %v", sub)
	}
	for _, dir := range []string{a, b, c} {
		res, err := n.VerifyPath(context.Background(), dir, testNow)
		var ce *trust.ChainError
		if err != nil || !errors.As(res.Err, &ce) || (ce.Reason != trust.ReasonRevoked && ce.Reason != trust.ReasonRevokedAncestor) {
			t.Fatalf("%s after revocation: %v %v", dir, err, res.Err)
		}
	}
	if _, _, err := n.Revoke(context.Background(), RevokeRequest{Target: pb.ID().String()}); !errors.Is(err, ErrAlreadyRevoked) {
		t.Fatalf("revoking inside a revoked subtree: %v", err)
	}
}

func TestInitRefusesAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644))
	if _, err := Init(context.Background(), dir, MasterGrant{}, testOpts()); err == nil {
		t.Fatal("init into a non-empty directory")
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Fatal("init touched an existing file")
	}
	// Invalid master constraints: nothing left behind.
	fresh := filepath.Join(t.TempDir(), "net")
	_, err := Init(context.Background(), fresh, MasterGrant{Constraints: trust.Constraints{MaxDepth: 99, NotAfter: testNow.Add(time.Hour)}}, testOpts())
	if err == nil || !strings.Contains(err.Error(), "max_depth") {
		t.Fatalf("init with max_depth 99: %v", err)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("failed init left files behind")
	}
}

// TestCorruptCheckpointNeverRollsBackRevocation is security finding 3: one
// damaged byte in the ledger's checkpoints file used to make the ledger open
// at an older checkpoint, so a revoked Cal verified VALID offline and the
// next write truncated the revocation away. Now verification refuses, and
// no write happens.
func TestCorruptCheckpointNeverRollsBackRevocation(t *testing.T) {
	n := newNetwork(t)
	master := filepath.Join(n.Dir, "master")
	a := n.child(t, master, "a", trust.PermissionsOf(trust.PermRead))
	pa, _ := ReadPublic(a)
	if _, _, err := n.Revoke(context.Background(), RevokeRequest{Target: pa.ID().String(), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	cps := filepath.Join(n.Dir, "ledger", "checkpoints")
	b, err := os.ReadFile(cps)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadFile(filepath.Join(n.Dir, "ledger", "entries"))
	// A byte in the middle of the file: inside an earlier checkpoint than
	// the latest one.
	b[len(b)/2] ^= 0x20
	must(t, os.WriteFile(cps, b, 0o600))

	res, err := n.VerifyPath(context.Background(), a, testNow)
	if err == nil && res.Err == nil {
		t.Fatal("a revoked Cal verifies VALID after one damaged byte in the checkpoints file")
	}
	if err == nil || !strings.Contains(err.Error(), "checkpoints") {
		t.Fatalf("verify error = %v (result %v), want one naming the checkpoints file", err, res.Err)
	}
	// A write is refused, and the revocation is still on disk.
	other := filepath.Join(filepath.Dir(n.Dir), "other")
	if _, err := n.Keygen(other); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.Bless(context.Background(), BlessRequest{ParentDir: master, ChildDir: other, Permissions: trust.PermissionsOf(trust.PermRead)}); err == nil {
		t.Fatal("a write to the damaged ledger succeeded")
	}
	after, _ := os.ReadFile(filepath.Join(n.Dir, "ledger", "entries"))
	if !bytes.Equal(after, entries) {
		t.Fatalf("the entries file changed: %d bytes, was %d", len(after), len(entries))
	}
}

// TestVerifyNeedsTheLedger: deleting the ledger must not make a revoked Cal
// verify VALID; only an explicit request verifies without revocations, and
// the result says so.
func TestVerifyNeedsTheLedger(t *testing.T) {
	n := newNetwork(t)
	master := filepath.Join(n.Dir, "master")
	a := n.child(t, master, "a", trust.PermissionsOf(trust.PermRead))
	pa, _ := ReadPublic(a)
	if _, _, err := n.Revoke(context.Background(), RevokeRequest{Target: pa.ID().String()}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(n.Dir, "ledger")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.VerifyPath(context.Background(), a, testNow); !errors.Is(err, ErrNoLedger) {
		t.Fatalf("verify without the ledger: %v", err)
	}
	res, err := n.VerifyPathWithoutLedger(context.Background(), a, testNow)
	if err != nil || res.Err != nil || res.RevocationsChecked {
		t.Fatalf("explicit verify without the ledger: %v %v %+v", err, res.Err, res)
	}
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
