package calrt

import (
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/trust"
)

// TestRuntimeRoutesMatchTheTable: the local API and the Cal's own API
// register exactly the table's routes (authz.Mux panics otherwise).
func TestRuntimeRoutesMatchTheTable(t *testing.T) {
	rt := &Runtime{}
	rt.localHandler()
	rt.apiHandler()
}

// testChain is the soul chain of a Master Cal blessed by a fresh genesis
// key with perms.
func testChain(t *testing.T, perms ...trust.Permission) *trust.Chain {
	t.Helper()
	root, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b, err := trust.Issue(root, trust.Grant{Network: root.Public().NetworkID(), ChildKey: key.Public(), Serial: 1, Permissions: trust.PermissionsOf(perms...),
		Constraints: trust.Constraints{MaxDepth: 4, MaxChildren: 4, Quota: trust.Quota{CPUMillis: 1000, MemoryBytes: 1 << 30, PIDs: 100},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}, IssuedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := trust.Extend(nil, b, root)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
