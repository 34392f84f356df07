package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
)

// editChain decodes a chain's JSON, applies edit, and re-encodes it.
func editChain(t *testing.T, c *Chain, edit func(m map[string]any)) []byte {
	t.Helper()
	b, _ := c.MarshalJSON()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func link(m map[string]any, i int) map[string]any {
	return m["blessings"].([]any)[i].(map[string]any)
}

func TestVerify(t *testing.T) {
	f := newFixture(t, "verify")
	valid := f.growTo(t, 3)
	later := t0.Add(time.Hour)

	other := newFixture(t, "other-network")
	otherChain := other.growTo(t, 3)

	// A Cal without spawn that nevertheless signs a child.
	noSpawn := newFixture(t, "nospawn")
	noSpawn.grow(t, PermissionsOf(PermRead), nil, true)
	noSpawnChild := noSpawn.grow(t, PermissionsOf(PermRead), nil, false)

	esc := newFixture(t, "escalation")
	esc.grow(t, PermissionsOf(PermSpawn, PermRead), nil, true)
	escChain := esc.grow(t, PermissionsOf(PermSpawn, PermRead, PermAdmin), nil, false)

	deep := newFixture(t, "depth")
	shallow := rootConstraints()
	shallow.MaxDepth = 2
	deep.grow(t, PermissionsOf(PermSpawn), &shallow, true)
	deepChain := deep.grow(t, PermissionsOf(PermSpawn), &shallow, false)

	kids := newFixture(t, "children")
	noKids := rootConstraints()
	noKids.MaxChildren = 0
	kids.grow(t, PermissionsOf(PermSpawn), &noKids, true)
	kidsChain := kids.grow(t, PermissionsOf(PermSpawn), &noKids, false)

	quota := newFixture(t, "quota")
	big := rootConstraints()
	big.Quota.MemoryBytes *= 2
	quotaChain := quota.grow(t, PermissionsOf(PermSpawn), &big, false)

	revoked := NewRevocationSet(NewVerifier(f.root.Public()))
	revokeLink1, err := Revoke(f.root, RevokeRequest{Network: f.network, Target: f.chains[1].Leaf().Child(), Authority: true, IssuedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if err := revoked.Add(revokeLink1, f.lineage()); err != nil {
		t.Fatal(err)
	}
	leafRevoked := NewRevocationSet(NewVerifier(f.root.Public()))
	revokeLeaf, _ := Revoke(f.keys[0], RevokeRequest{Network: f.network, Target: valid.Leaf().Child(), IssuedAt: t0})
	if err := leafRevoked.Add(revokeLeaf, f.lineage()); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		root       *identity.PrivateKey
		chain      any // *Chain or []byte
		at         time.Time
		rv         RevocationView
		wantLink   int
		wantReason Reason
		wantDetail string
	}{
		{name: "valid depth 1", root: f.root, chain: f.chains[0], at: later},
		{name: "valid depth 3", root: f.root, chain: valid, at: later},
		{name: "tampered field", root: f.root, chain: editChain(t, valid, func(m map[string]any) { link(m, 1)["issued_at"] = "2026-01-01T00:00:01Z" }),
			at: later, wantLink: 1, wantReason: ReasonBadSignature, wantDetail: "parent"},
		{name: "tampered genesis link", root: f.root, chain: editChain(t, valid, func(m map[string]any) { link(m, 0)["serial"] = 2 }),
			at: later, wantLink: 0, wantReason: ReasonBadSignature, wantDetail: "genesis root"},
		{name: "swapped attestation", root: f.root, chain: editChain(t, valid, func(m map[string]any) {
			var o map[string]any
			b, _ := f.chains[1].MarshalJSON()
			must(t, json.Unmarshal(b, &o))
			m["attestation"].(map[string]any)["signature"] = o["attestation"].(map[string]any)["signature"]
		}), at: later, wantLink: 2, wantReason: ReasonBadSignature, wantDetail: "attestation"},
		{name: "escalation", root: esc.root, chain: escChain, at: later, wantLink: 2, wantReason: ReasonEscalation, wantDetail: "grants admin"},
		{name: "parent without spawn", root: noSpawn.root, chain: noSpawnChild, at: later, wantLink: 2, wantReason: ReasonEscalation, wantDetail: "does not hold spawn"},
		{name: "quota escalation", root: quota.root, chain: quotaChain, at: later, wantLink: 1, wantReason: ReasonEscalation, wantDetail: "quota.memory_bytes"},
		{name: "depth exceeded", root: deep.root, chain: deepChain, at: later, wantLink: 2, wantReason: ReasonDepthExceeded},
		{name: "children exceeded", root: kids.root, chain: kidsChain, at: later, wantLink: 2, wantReason: ReasonChildrenExceeded},
		{name: "expired", root: f.root, chain: valid, at: t0.Add(400 * 24 * time.Hour), wantLink: 0, wantReason: ReasonExpired},
		{name: "not yet valid", root: f.root, chain: valid, at: t0.Add(-time.Hour), wantLink: 0, wantReason: ReasonNotYetValid},
		{name: "wrong network", root: f.root, chain: otherChain, at: later, wantLink: 0, wantReason: ReasonWrongNetwork},
		{name: "revoked ancestor", root: f.root, chain: valid, at: later, rv: revoked, wantLink: 1, wantReason: ReasonRevokedAncestor},
		{name: "revoked leaf", root: f.root, chain: valid, at: later, rv: leafRevoked, wantLink: 2, wantReason: ReasonRevoked},
		{name: "revocation does not touch siblings above", root: f.root, chain: f.chains[0], at: later, rv: revoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := tt.chain.(*Chain)
			if !ok {
				var err error
				c, err = ParseChain(tt.chain.([]byte))
				if err != nil {
					t.Fatalf("ParseChain: %v", err)
				}
			} else {
				c = roundTrip(t, c)
			}
			v := NewVerifier(tt.root.Public())
			// Verify twice: cold, then from the cache; both must agree.
			for pass := range 2 {
				got, err := v.Verify(c, tt.at, tt.rv)
				if tt.wantReason == "" {
					if err != nil {
						t.Fatalf("pass %d: Verify: %v", pass, err)
					}
					if got.Cal != c.Leaf().Child() || got.Depth != len(c.Blessings) {
						t.Fatalf("pass %d: verified %s at depth %d", pass, got.Cal, got.Depth)
					}
					continue
				}
				var ce *ChainError
				if !errors.As(err, &ce) {
					t.Fatalf("pass %d: error = %v, want a ChainError", pass, err)
				}
				if ce.Link != tt.wantLink || ce.Reason != tt.wantReason || !strings.Contains(ce.Detail, tt.wantDetail) {
					t.Fatalf("pass %d: got %v, want link %d %s containing %q", pass, ce, tt.wantLink, tt.wantReason, tt.wantDetail)
				}
			}
		})
	}
}

func TestRevocationInvalidatesCachedChain(t *testing.T) {
	f := newFixture(t, "cache")
	c := roundTrip(t, f.growTo(t, 4))
	v := NewVerifier(f.root.Public())
	rs := NewRevocationSet(v)
	if _, err := v.Verify(c, t0.Add(time.Hour), rs); err != nil {
		t.Fatal(err)
	}
	r, err := Revoke(f.keys[1], RevokeRequest{Network: f.network, Target: f.chains[2].Leaf().Child(), Reason: "compromised", IssuedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Add(r, f.lineage()); err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(c, t0.Add(time.Hour), rs)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Reason != ReasonRevokedAncestor || ce.Link != 2 {
		t.Fatalf("after revocation: %v", err)
	}
	// The parent's chain is unaffected.
	if _, err := v.Verify(f.chains[1], t0.Add(time.Hour), rs); err != nil {
		t.Fatal(err)
	}
}

func TestRevocationChecks(t *testing.T) {
	f := newFixture(t, "revocation")
	f.growTo(t, 3)
	target := f.chains[2].Leaf().Child()
	noRevoke := newFixture(t, "revocation")
	_ = noRevoke
	tests := []struct {
		name    string
		signer  *identity.PrivateKey
		auth    bool
		target  identity.ID
		wantErr string
	}{
		{"authority", f.root, true, target, ""},
		{"ancestor with revoke", f.keys[0], false, target, ""},
		{"direct parent", f.keys[1], false, target, ""},
		{"self", f.keys[2], false, target, "not an ancestor"},
		{"descendant revokes ancestor", f.keys[2], false, f.chains[1].Leaf().Child(), "not an ancestor"},
		{"stranger claims authority", f.keys[1], true, target, "network authority"},
		{"unknown target", f.keys[0], false, keyFor(t, "stranger").Public().ID(), "not a known cal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := NewRevocationSet(NewVerifier(f.root.Public()))
			r, err := Revoke(tt.signer, RevokeRequest{Network: f.network, Target: tt.target, Authority: tt.auth, IssuedAt: t0})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := r.MarshalJSON()
			r, err = ParseRevocation(b)
			if err != nil {
				t.Fatal(err)
			}
			err = rs.Add(r, f.lineage())
			if tt.wantErr == "" {
				if err != nil || !rs.IsRevoked(tt.target) {
					t.Fatalf("Add: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || rs.IsRevoked(tt.target) {
				t.Fatalf("Add error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRevokerWithoutRevokePermission(t *testing.T) {
	f := newFixture(t, "norevoke")
	f.grow(t, PermissionsOf(PermSpawn, PermRead), nil, true)
	f.grow(t, PermissionsOf(PermRead), nil, true)
	rs := NewRevocationSet(NewVerifier(f.root.Public()))
	r, _ := Revoke(f.keys[1], RevokeRequest{Network: f.network, Target: f.chains[2].Leaf().Child(), IssuedAt: t0})
	if err := rs.Add(r, f.lineage()); err == nil || !strings.Contains(err.Error(), "does not hold revoke") {
		t.Fatalf("error = %v", err)
	}
}

func TestIssueRefusesEscalation(t *testing.T) {
	f := newFixture(t, "issue")
	f.grow(t, PermissionsOf(PermSpawn, PermRead), nil, true)
	parent := f.chains[1].Leaf()
	child := keyFor(t, "issue-child")
	tests := []struct {
		name  string
		perms Permissions
		edit  func(*Constraints)
		want  string
	}{
		{"permission", PermissionsOf(PermAdmin), nil, "grants admin"},
		{"max depth", PermissionsOf(PermRead), func(c *Constraints) { c.MaxDepth = 13 }, "max_depth 13 exceeds"},
		{"window", PermissionsOf(PermRead), func(c *Constraints) { c.NotAfter = c.NotAfter.Add(time.Hour) }, "not_after"},
		{"cpu", PermissionsOf(PermRead), func(c *Constraints) { c.Quota.CPUMillis++ }, "quota.cpu_millis"},
		{"bad window", PermissionsOf(PermRead), func(c *Constraints) { c.NotAfter = c.NotBefore }, "constraints.not_after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parent.Constraints()
			if tt.edit != nil {
				tt.edit(&c)
			}
			_, err := Issue(f.keys[1], Grant{Network: f.network, Parent: parent, ChildKey: child.Public(), Serial: 1, Permissions: tt.perms, Constraints: c, IssuedAt: t0})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Issue error = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := Issue(f.keys[0], Grant{Network: f.network, Parent: parent, ChildKey: child.Public(), Serial: 1, Permissions: PermissionsOf(PermRead), Constraints: parent.Constraints(), IssuedAt: t0}); err == nil {
		t.Fatal("a key other than the parent's issued a blessing")
	}
}

// TestVersion1BlessingHasNoDiskDimension: a blessing signed before disk
// quotas keeps verifying, reads as the largest disk quota, re-encodes to
// the bytes it was signed over, and bounds a version 2 child's disk quota
// by nothing.
func TestVersion1BlessingHasNoDiskDimension(t *testing.T) {
	f := newFixtureVersion(t, "v1", BlessingVersion1)
	c := roundTrip(t, f.growTo(t, 2))
	for _, b := range c.Blessings {
		if b.Version() != BlessingVersion1 || b.Constraints().Quota.DiskBytes != MaxDiskBytes {
			t.Fatalf("version %d blessing reads disk quota %d", b.Version(), b.Constraints().Quota.DiskBytes)
		}
		if !bytes.HasPrefix(b.Canonical(), []byte("calnet/blessing/v1\n")) {
			t.Fatalf("version 1 canonical encoding starts %q", b.Canonical()[:20])
		}
		j, _ := b.MarshalJSON()
		if bytes.Contains(j, []byte("disk_bytes")) {
			t.Fatalf("version 1 blessing.json has disk_bytes: %s", j)
		}
	}
	if _, err := NewVerifier(f.root.Public()).Verify(c, t0.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	f.version = BlessingVersion2
	cons := c.Leaf().Constraints()
	cons.Quota.DiskBytes = 4 << 30
	child := roundTrip(t, f.grow(t, PermissionsOf(PermRead), &cons, true))
	v, err := NewVerifier(f.root.Public()).Verify(child, t0.Add(time.Hour), nil)
	if err != nil || v.Constraints.Quota.DiskBytes != 4<<30 {
		t.Fatalf("version 2 child under version 1: %v, %+v", err, v)
	}
}

func TestIssueRefusesDiskEscalation(t *testing.T) {
	f := newFixture(t, "disk-escalation")
	parent := f.growTo(t, 2)
	cons := parent.Leaf().Constraints()
	cons.Quota.DiskBytes++
	child := keyFor(t, "disk-escalation/child")
	_, err := Issue(f.keys[1], Grant{Network: f.network, Parent: parent.Leaf(), ChildKey: child.Public(), Serial: 1,
		Permissions: PermissionsOf(PermRead), Constraints: cons, IssuedAt: t0})
	if err == nil || !strings.Contains(err.Error(), "quota.disk_bytes") {
		t.Fatalf("issue with a larger disk quota than the parent's: %v", err)
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
