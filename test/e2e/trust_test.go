package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

type verifyOut struct {
	Valid bool `json:"valid"`
	Cal   string
	Depth int
	Links []struct {
		Link   int
		Status string
	}
	Error *struct {
		Link   int
		Reason string
		Detail string
	}
}

func verify(t *testing.T, dir, path string) (verifyOut, int) {
	t.Helper()
	r := calnet(t, dir, "-o", "json", "verify", "--dir", "net", path)
	var v verifyOut
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("verify %s: %v\n%s\n%s", path, err, r.stdout, r.stderr)
	}
	return v, r.code
}

func ledgerSize(t *testing.T, dir string) int {
	var cp struct{ Size int }
	okJSON(t, dir, &cp, "ledger", "checkpoint", "--dir", "net")
	return cp.Size
}

func TestOfflineTrustWorkflow(t *testing.T) {
	dir := t.TempDir()
	var initOut struct{ Network, Master string }
	okJSON(t, dir, &initOut, "init", "--dir", "net", "--max-depth", "6")
	for _, f := range []string{"kek.sealed", "seal.json", "seal.key", "genesis/identity.key", "master/identity.key", "ledger/log.key", "ledger/entries"} {
		st, err := os.Stat(filepath.Join(dir, "net", f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	// Master -> a -> b -> c, five levels would be limited by max-depth 6.
	parent := "net/master"
	for _, name := range []string{"a", "b", "c"} {
		ok(t, dir, "keygen", "--dir", "net", "--out", name)
		ok(t, dir, "bless", "--dir", "net", "--parent", parent, "--child", name, "--perm", "spawn,revoke,read")
		parent = name
	}
	v, code := verify(t, dir, "c")
	if code != 0 || !v.Valid || v.Depth != 4 || len(v.Links) != 4 {
		t.Fatalf("verify c: exit %d %+v", code, v)
	}
	if got := ledgerSize(t, dir); got != 5 {
		t.Fatalf("ledger size %d, want 5 (genesis + 4 blessings)", got)
	}

	// The checkpoint is a signed note that x/mod/sumdb/note verifies with
	// the printed key.
	key := strings.TrimSpace(ok(t, dir, "ledger", "key", "--dir", "net"))
	cp := ok(t, dir, "ledger", "checkpoint", "--dir", "net")
	nv, err := note.NewVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open([]byte(cp), note.VerifierList(nv)); err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	// Proofs check offline against checkpoints.
	must(t, os.WriteFile(filepath.Join(dir, "cp-old.txt"), []byte(cp), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "proof.json"), []byte(ok(t, dir, "ledger", "proof", "--dir", "net", "3")), 0o644))
	ok(t, dir, "ledger", "verify", "--dir", "net", "--proof", "proof.json", "--checkpoint", "cp-old.txt")

	// A revocation by an ancestor with revoke takes the subtree out.
	ok(t, dir, "revoke", "--dir", "net", "--as", "a", "--reason", "compromised", filepath.Base(mustID(t, dir, "b")))
	v, code = verify(t, dir, "c")
	if code != 1 || v.Valid || v.Error.Reason != "revoked-ancestor" || v.Error.Link != 2 {
		t.Fatalf("verify c after revoking b: exit %d %+v", code, v.Error)
	}
	if v.Links[2].Status != "failed" || v.Links[3].Status != "unchecked" {
		t.Fatalf("link statuses %+v", v.Links)
	}
	if v, code := verify(t, dir, "a"); code != 0 || !v.Valid {
		t.Fatal("revoking b must not touch its parent a")
	}
	// Consistency between the old checkpoint and now.
	must(t, os.WriteFile(filepath.Join(dir, "cp-new.txt"), []byte(ok(t, dir, "ledger", "checkpoint", "--dir", "net")), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "cons.json"), []byte(ok(t, dir, "ledger", "consistency", "--dir", "net", "5")), 0o644))
	ok(t, dir, "ledger", "verify", "--dir", "net", "--proof", "cons.json", "--old-checkpoint", "cp-old.txt", "--checkpoint", "cp-new.txt")
	out := ok(t, dir, "ledger", "verify", "--dir", "net")
	if !strings.Contains(out, "4 blessings and 1 revocations verified") {
		t.Fatalf("ledger verify: %s", out)
	}
	// Revoked cals cannot bless.
	ok(t, dir, "keygen", "--dir", "net", "--out", "d")
	r := calnet(t, dir, "bless", "--dir", "net", "--parent", "c", "--child", "d", "--perm", "read")
	if r.code == 0 || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("bless by a revoked cal: %+v", r)
	}
}

func mustID(t *testing.T, dir, identityDir string) string {
	t.Helper()
	var pub struct{ ID string }
	b, err := os.ReadFile(filepath.Join(dir, identityDir, "identity.pub"))
	if err != nil {
		t.Fatal(err)
	}
	must(t, json.Unmarshal(b, &pub))
	return pub.ID
}

func TestBadInputChangesNothing(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "init", "--dir", "net")
	ok(t, dir, "keygen", "--dir", "net", "--out", "a")
	ok(t, dir, "bless", "--dir", "net", "--parent", "net/master", "--child", "a", "--perm", "read,talk")
	ok(t, dir, "keygen", "--dir", "net", "--out", "x")
	size := ledgerSize(t, dir)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown permission", []string{"bless", "--dir", "net", "--parent", "net/master", "--child", "x", "--perm", "read,fly"}, `unknown permission "fly"`},
		{"parent lacks spawn", []string{"bless", "--dir", "net", "--parent", "a", "--child", "x", "--perm", "read"}, "does not hold spawn"},
		{"escalated quota", []string{"bless", "--dir", "net", "--parent", "net/master", "--child", "x", "--perm", "read", "--pids", "99999999"}, "constraints.quota.pids"},
		{"depth over limit", []string{"bless", "--dir", "net", "--parent", "net/master", "--child", "x", "--perm", "read", "--max-depth", "40"}, "constraints.max_depth: 40 is outside 1..32"},
		{"bad memory", []string{"bless", "--dir", "net", "--parent", "net/master", "--child", "x", "--perm", "read", "--memory", "lots"}, "--memory"},
		{"already blessed", []string{"bless", "--dir", "net", "--parent", "net/master", "--child", "a", "--perm", "read"}, "already blessed"},
		{"init over a network", []string{"init", "--dir", "net"}, "not empty"},
		{"keygen over a key", []string{"keygen", "--dir", "net", "--out", "a"}, "refusing to overwrite"},
		{"revoke unknown", []string{"revoke", "--dir", "net", "zzzzzz"}, "no such cal"},
		{"revoke without revoke permission", []string{"revoke", "--dir", "net", "--as", "a", mustID(t, dir, "net/master")}, "does not hold revoke"},
		{"no network", []string{"verify", "--dir", "nowhere", "a"}, "not a calnet network directory"},
		{"bad output", []string{"-o", "yaml", "version"}, `-o "yaml"`},
		{"proof out of range", []string{"ledger", "proof", "--dir", "net", "99"}, "not below tree_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := calnet(t, dir, tt.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q, want it to contain %q", r.code, r.stderr, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "x", "blessing.json")); err == nil {
				t.Fatal("a failed bless wrote blessing.json")
			}
			if got := ledgerSize(t, dir); got != size {
				t.Fatalf("ledger grew from %d to %d", size, got)
			}
		})
	}
	// JSON errors are machine-readable.
	r := calnet(t, dir, "-o", "json", "revoke", "--dir", "net", "zzzzzz")
	var e struct{ Error string }
	if json.Unmarshal([]byte(r.stderr), &e) != nil || !strings.Contains(e.Error, "no such cal") {
		t.Fatalf("json error: %q", r.stderr)
	}
}

func TestVerifyTamperedAndMalformedChains(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "init", "--dir", "net")
	ok(t, dir, "keygen", "--dir", "net", "--out", "a")
	ok(t, dir, "bless", "--dir", "net", "--parent", "net/master", "--child", "a", "--perm", "spawn,read")
	good, err := os.ReadFile(filepath.Join(dir, "a", "soul-chain.sig"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	must(t, json.Unmarshal(good, &m))
	link1 := m["blessings"].([]any)[1].(map[string]any)
	link1["permissions"] = []string{"spawn", "read", "admin"}
	tampered, _ := json.Marshal(m)

	tests := []struct {
		name, content, reason string
		link                  int
	}{
		{"tampered permissions", string(tampered), "bad-signature", 1},
		{"truncated", string(good[:len(good)/3]), "malformed", 0},
		{"duplicated field", strings.Replace(string(good), `"version": 1`, `"version": 1, "version": 1`, 1), "malformed", 0},
		{"oversized", string(good) + strings.Repeat(" ", 1<<20), "malformed", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".sig")
			must(t, os.WriteFile(p, []byte(tt.content), 0o644))
			v, code := verify(t, dir, filepath.Base(p))
			if code != 1 || v.Valid || v.Error == nil || v.Error.Reason != tt.reason || v.Error.Link != tt.link {
				t.Fatalf("exit %d, %+v", code, v.Error)
			}
		})
	}
	// An identity directory whose identity.pub does not match the chain.
	ok(t, dir, "keygen", "--dir", "net", "--out", "b")
	must(t, os.WriteFile(filepath.Join(dir, "b", "soul-chain.sig"), good, 0o644))
	r := calnet(t, dir, "verify", "--dir", "net", "b")
	if r.code != 1 || !strings.Contains(r.stdout, "identity.pub is cal") {
		t.Fatalf("mismatched identity dir: %+v", r)
	}
}

func TestPassphraseProtectedNetwork(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "pass"), []byte("correct horse battery staple\n"), 0o600))
	ok(t, dir, "init", "--dir", "net", "--passphrase-file", "pass")
	for _, f := range []string{"kek.age", "seal.key"} {
		if _, err := os.Stat(filepath.Join(dir, "net", f)); err == nil {
			t.Fatalf("passphrase network wrote %s", f)
		}
	}
	ok(t, dir, "keygen", "--dir", "net", "--out", "a", "--passphrase-file", "pass")
	r := calnet(t, dir, "bless", "--dir", "net", "--parent", "net/master", "--child", "a", "--perm", "read")
	if r.code == 0 || !strings.Contains(r.stderr, "passphrase") {
		t.Fatalf("bless without the passphrase: %+v", r)
	}
	must(t, os.WriteFile(filepath.Join(dir, "wrong"), []byte("wrong\n"), 0o600))
	if r := calnet(t, dir, "bless", "--dir", "net", "--parent", "net/master", "--child", "a", "--perm", "read", "--passphrase-file", "wrong"); r.code == 0 {
		t.Fatal("bless with the wrong passphrase succeeded")
	}
	ok(t, dir, "bless", "--dir", "net", "--parent", "net/master", "--child", "a", "--perm", "read", "--passphrase-file", "pass")
}
