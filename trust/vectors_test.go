package trust

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// vectorsPath is shared with the SDKs in other languages.
var vectorsPath = filepath.Join("..", "testdata", "vectors", "soul-chains.json")

type vectorExpect struct {
	Valid       bool     `json:"valid"`
	Cal         string   `json:"cal,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
	Link        *int     `json:"link,omitempty"`
	Reason      Reason   `json:"reason,omitempty"`
}

type vectorCase struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Chain       string            `json:"chain"`
	VerifyAt    string            `json:"verify_at"`
	Revocations []json.RawMessage `json:"revocations"`
	Expect      vectorExpect      `json:"expect"`
}

type vectorFile struct {
	Description string            `json:"description"`
	Network     string            `json:"network"`
	RootKeys    json.RawMessage   `json:"root_keys"`
	Seeds       map[string]string `json:"seeds"`
	Cases       []vectorCase      `json:"cases"`
	// OtherNetworks are more cases, each set under its own root keys.
	OtherNetworks []vectorNetwork `json:"other_networks"`
}

// vectorNetwork is a set of cases under another network's root keys.
type vectorNetwork struct {
	Description string          `json:"description"`
	Network     string          `json:"network"`
	RootKeys    json.RawMessage `json:"root_keys"`
	Cases       []vectorCase    `json:"cases"`
}

func seedHex(label string) string {
	seed := make([]byte, 64)
	_, _ = newSeedReader("key:" + label).Read(seed) // never fails: a hash stream
	return hex.EncodeToString(seed)
}

func buildVectors(t *testing.T) *vectorFile {
	f := newFixture(t, "golden")
	c1 := f.grow(t, PermissionsOf(PermSpawn, PermRevoke, PermRead, PermTalk), nil, true)
	c2 := f.grow(t, PermissionsOf(PermSpawn, PermRead), nil, true)
	at := formatTime(t0.Add(24 * time.Hour))
	enc := func(c *Chain) string { b, _ := c.MarshalJSON(); return string(b) }

	cons := c1.Leaf().Constraints()
	escalated := f.blessChild(t, 1, "golden/escalated", PermissionsOf(PermSpawn, PermAdmin), cons, 2, false)
	shallow := cons
	shallow.MaxDepth = 2
	tooDeep := f.blessChild(t, 1, "golden/too-deep", PermissionsOf(PermRead), shallow, 3, false)

	bigDisk := cons
	bigDisk.Quota.DiskBytes = cons.Quota.DiskBytes + 1
	diskEscalated := f.blessChild(t, 1, "golden/disk-escalated", PermissionsOf(PermRead), bigDisk, 3, false)

	// A network made before disk quotas: version 1 blessings (no
	// disk_bytes), and a version 2 child blessed under them.
	old := newFixtureVersion(t, "golden-v1", BlessingVersion1)
	oldChain := old.growTo(t, 2)
	old.version = BlessingVersion2
	oldCons := oldChain.Leaf().Constraints()
	oldCons.Quota.DiskBytes = 1 << 30
	mixed := old.grow(t, PermissionsOf(PermRead), &oldCons, true)

	other := newFixture(t, "golden-other-network")
	foreign := other.growTo(t, 3)

	tampered := editChain(t, c2, func(m map[string]any) {
		link(m, 1)["permissions"] = []string{"spawn", "revoke", "read", "talk", "share"}
	})

	revLink1, err := Revoke(f.root, RevokeRequest{Network: f.network, Target: c1.Leaf().Child(), Authority: true, Reason: "compromised host", IssuedAt: t0.Add(time.Hour), Rand: f.rand})
	if err != nil {
		t.Fatal(err)
	}
	revLeaf, err := Revoke(f.keys[1], RevokeRequest{Network: f.network, Target: c2.Leaf().Child(), Reason: "retired", IssuedAt: t0.Add(time.Hour), Rand: f.rand})
	if err != nil {
		t.Fatal(err)
	}
	revJSON := func(r *Revocation) []json.RawMessage { b, _ := r.MarshalJSON(); return []json.RawMessage{b} }
	ip := func(i int) *int { return &i }
	fail := func(link int, r Reason) vectorExpect { return vectorExpect{Link: ip(link), Reason: r} }

	root, _ := f.root.Public().MarshalJSON()
	oldRoot, _ := old.root.Public().MarshalJSON()
	vf := &vectorFile{
		Description: "calnet soul-chain verification vectors: a depth-3 chain from fixed seeds and failing variants. " +
			"Verify each case's chain with the root keys at verify_at after applying its revocations; " +
			"expect gives the result (link is the 0-based index of the failing blessing). See docs/formats.md.",
		Network:  f.network.String(),
		RootKeys: root,
		Seeds: map[string]string{
			"genesis": seedHex("golden/genesis"), "cal0": seedHex("golden/cal0"),
		},
		Cases: []vectorCase{
			{Name: "valid-depth-3", Description: "master (all permissions) -> cal1 (spawn,revoke,read,talk) -> cal2 (spawn,read)",
				Chain: enc(c2), VerifyAt: at, Expect: vectorExpect{Valid: true, Cal: c2.Leaf().Child().String(), Permissions: c2.Leaf().Permissions().Names()}},
			{Name: "valid-depth-1", Description: "the Master Cal's own chain", Chain: enc(f.chains[0]), VerifyAt: at,
				Expect: vectorExpect{Valid: true, Cal: f.chains[0].Leaf().Child().String(), Permissions: AllPermissions.Names()}},
			{Name: "tampered-permissions", Description: "link 1's permissions were edited after signing", Chain: string(tampered), VerifyAt: at, Expect: fail(1, ReasonBadSignature)},
			{Name: "escalation", Description: "cal1 grants admin, which it does not hold", Chain: enc(escalated), VerifyAt: at, Expect: fail(2, ReasonEscalation)},
			{Name: "escalation-disk", Description: "cal1 gives its child a larger disk quota than its own", Chain: enc(diskEscalated), VerifyAt: at, Expect: fail(2, ReasonEscalation)},
			{Name: "depth-exceeded", Description: "a depth-3 Cal under a max_depth of 2", Chain: enc(tooDeep), VerifyAt: at, Expect: fail(2, ReasonDepthExceeded)},
			{Name: "expired", Description: "verified after the master's validity window", Chain: enc(c2), VerifyAt: formatTime(t0.Add(366 * 24 * time.Hour)), Expect: fail(0, ReasonExpired)},
			{Name: "not-yet-valid", Description: "verified before the validity window", Chain: enc(c2), VerifyAt: formatTime(t0.Add(-time.Hour)), Expect: fail(0, ReasonNotYetValid)},
			{Name: "wrong-network", Description: "a valid chain of another network", Chain: enc(foreign), VerifyAt: at, Expect: fail(0, ReasonWrongNetwork)},
			{Name: "revoked-ancestor", Description: "the authority revoked cal1", Chain: enc(c2), VerifyAt: at, Revocations: revJSON(revLink1), Expect: fail(1, ReasonRevokedAncestor)},
			{Name: "revoked", Description: "cal1 revoked its child cal2", Chain: enc(c2), VerifyAt: at, Revocations: revJSON(revLeaf), Expect: fail(2, ReasonRevoked)},
			{Name: "malformed-truncated", Description: "the chain file cut in half", Chain: enc(c2)[:len(enc(c2))/2], VerifyAt: at, Expect: fail(0, ReasonMalformed)},
			// Strict JSON: a verifier that matches keys case-insensitively,
			// keeps the last of duplicated keys, ignores unknown keys or
			// reads only the first document accepts these; every verifier
			// must refuse them.
			{Name: "malformed-case-variant-key", Description: `link 1's "permissions" spelled "Permissions"`,
				Chain: editLink(t, c2, 1, `"permissions":`, `"Permissions":`), VerifyAt: at, Expect: fail(1, ReasonMalformed)},
			{Name: "malformed-case-variant-duplicate", Description: `link 1 carries "PERMISSIONS" (admin) beside its signed "permissions"`,
				Chain: editLink(t, c2, 1, `"permissions":`, `"PERMISSIONS":["spawn","revoke","read","talk","share","admin"],"permissions":`), VerifyAt: at, Expect: fail(1, ReasonMalformed)},
			{Name: "malformed-upper-case-key", Description: `link 2's "serial" spelled "SERIAL"`,
				Chain: editLink(t, c2, 2, `"serial":`, `"SERIAL":`), VerifyAt: at, Expect: fail(2, ReasonMalformed)},
			{Name: "malformed-escaped-case-variant-key", Description: `link 1's "permissions" spelled "\u0050ermissions" ("Permissions" once unescaped)`,
				Chain: editLink(t, c2, 1, `"permissions":`, `"\u0050ermissions":`), VerifyAt: at, Expect: fail(1, ReasonMalformed)},
			{Name: "malformed-duplicate-key", Description: `link 1 repeats "depth" (a decoder keeping the last value would read 1)`,
				Chain: editLink(t, c2, 1, `"depth":2,`, `"depth":2,"depth":1,`), VerifyAt: at, Expect: fail(0, ReasonMalformed)},
			{Name: "malformed-duplicate-top-level-key", Description: `the chain repeats "version"`,
				Chain: strings.Replace(enc(c2), `"version":1,`, `"version":1,"version":1,`, 1), VerifyAt: at, Expect: fail(0, ReasonMalformed)},
			{Name: "malformed-unknown-key", Description: `link 2's constraints carry an unknown "max_grandchildren"`,
				Chain: editLink(t, c2, 2, `"max_depth":`, `"max_grandchildren":1,"max_depth":`), VerifyAt: at, Expect: fail(2, ReasonMalformed)},
			{Name: "malformed-unknown-top-level-key", Description: `the chain carries an unknown "comment"`,
				Chain: strings.Replace(enc(c2), `"version":1,`, `"version":1,"comment":"x",`, 1), VerifyAt: at, Expect: fail(0, ReasonMalformed)},
			{Name: "malformed-trailing-data", Description: "a second document after the chain",
				Chain: enc(c2) + ` {"version":1}`, VerifyAt: at, Expect: fail(0, ReasonMalformed)},
		},
		OtherNetworks: []vectorNetwork{{
			Description: "a network made before disk quotas: its blessings are version 1 (canonical tag calnet/blessing/v1, no disk_bytes; they read as the largest disk quota)",
			Network:     old.network.String(), RootKeys: oldRoot,
			Cases: []vectorCase{
				{Name: "valid-version-1", Description: "master -> cal1, both version 1 blessings", Chain: enc(oldChain), VerifyAt: at,
					Expect: vectorExpect{Valid: true, Cal: oldChain.Leaf().Child().String(), Permissions: oldChain.Leaf().Permissions().Names()}},
				{Name: "valid-version-2-under-version-1", Description: "a version 2 blessing with a 1 GiB disk quota under version 1 links", Chain: enc(mixed), VerifyAt: at,
					Expect: vectorExpect{Valid: true, Cal: mixed.Leaf().Child().String(), Permissions: mixed.Leaf().Permissions().Names()}},
			},
		}},
	}
	for i := range vf.Cases {
		if vf.Cases[i].Revocations == nil {
			vf.Cases[i].Revocations = []json.RawMessage{}
		}
	}
	for _, n := range vf.OtherNetworks {
		for i := range n.Cases {
			if n.Cases[i].Revocations == nil {
				n.Cases[i].Revocations = []json.RawMessage{}
			}
		}
	}
	return vf
}

// editLink replaces the first old with new in link i's blessing inside
// the encoded chain c, leaving every other byte (and so every signature)
// as it was.
func editLink(t *testing.T, c *Chain, i int, old, new string) string {
	t.Helper()
	chain, _ := c.MarshalJSON()
	bl, _ := c.Blessings[i].MarshalJSON()
	if !bytes.Contains(chain, bl) || !bytes.Contains(bl, []byte(old)) {
		t.Fatalf("link %d: %q not found", i, old)
	}
	edited := strings.Replace(string(bl), old, new, 1)
	return strings.Replace(string(chain), string(bl), edited, 1)
}

// checkVector runs one vector through the parser and the verifier.
// The lineage for revocations comes from the case's own chain.
func checkVector(t *testing.T, root *Verifier, c vectorCase) {
	lin := lineage{}
	if ch, err := ParseChain([]byte(c.Chain)); err == nil {
		for _, b := range ch.Blessings {
			lin[b.Child()] = b
		}
	}
	at, err := parseTime("verify_at", c.VerifyAt)
	if err != nil {
		t.Fatal(err)
	}
	rs := NewRevocationSet(root)
	for _, raw := range c.Revocations {
		r, err := ParseRevocation(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Add(r, lin); err != nil {
			t.Fatal(err)
		}
	}
	chain, err := ParseChain([]byte(c.Chain))
	var got *Verified
	if err == nil {
		got, err = root.Verify(chain, at, rs)
	}
	if c.Expect.Valid {
		if err != nil {
			t.Fatalf("want valid, got %v", err)
		}
		if got.Cal.String() != c.Expect.Cal {
			t.Fatalf("cal = %s, want %s", got.Cal, c.Expect.Cal)
		}
		return
	}
	var ce *ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a ChainError", err)
	}
	if ce.Link != *c.Expect.Link || ce.Reason != c.Expect.Reason {
		t.Fatalf("got link %d %s (%s), want link %d %s", ce.Link, ce.Reason, ce.Detail, *c.Expect.Link, c.Expect.Reason)
	}
}

func TestGoldenVectors(t *testing.T) {
	vf := buildVectors(t)
	out, err := json.MarshalIndent(vf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, '\n')
	if *update {
		must(t, os.MkdirAll(filepath.Dir(vectorsPath), 0o755))
		if err := os.WriteFile(vectorsPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("%v (run go test ./trust -run TestGoldenVectors -update)", err)
	}
	if !bytes.Equal(golden, out) {
		t.Fatalf("%s is stale: the encoding or signing changed (rerun with -update if intended)", vectorsPath)
	}
	// Check the vectors from the golden file, as another SDK would.
	var read vectorFile
	if err := json.Unmarshal(golden, &read); err != nil {
		t.Fatal(err)
	}
	var rootKey identity.PublicKey
	if err := rootKey.UnmarshalJSON(read.RootKeys); err != nil {
		t.Fatal(err)
	}
	if rootKey.NetworkID().String() != read.Network {
		t.Fatalf("network %s does not match the root keys", read.Network)
	}
	for _, c := range read.Cases {
		t.Run(c.Name, func(t *testing.T) {
			checkVector(t, NewVerifier(&rootKey), c)
		})
	}
	for _, n := range read.OtherNetworks {
		var k identity.PublicKey
		if err := k.UnmarshalJSON(n.RootKeys); err != nil || k.NetworkID().String() != n.Network {
			t.Fatalf("other network %s: root keys %v", n.Network, err)
		}
		for _, c := range n.Cases {
			t.Run(c.Name, func(t *testing.T) {
				checkVector(t, NewVerifier(&k), c)
			})
		}
	}
}
