package calrt

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
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

// TestSignRevocationOnlyWithRevoke: a Cal signs a retirement only if its
// blessing holds revoke, and signs it as itself (never as the authority).
func TestSignRevocationOnlyWithRevoke(t *testing.T) {
	target, _ := identity.Generate(nil)
	body := `{"target":"` + target.Public().ID().String() + `","reason":"idle"}`
	for _, tt := range []struct {
		perms []trust.Permission
		want  int
	}{
		{[]trust.Permission{trust.PermRead}, http.StatusForbidden},
		{[]trust.Permission{trust.PermRevoke}, http.StatusOK},
	} {
		key, _ := identity.Generate(nil)
		rt := &Runtime{key: key, chain: testChain(t, tt.perms...), log: slog.New(slog.DiscardHandler)}
		rec := httptest.NewRecorder()
		rt.signRevocation(rec, httptest.NewRequest("POST", calproto.PathSignRevocation, strings.NewReader(body)))
		if rec.Code != tt.want {
			t.Fatalf("perms %v: %d %s, want %d", tt.perms, rec.Code, rec.Body, tt.want)
		}
		if rec.Code != http.StatusOK {
			continue
		}
		var reply calproto.RevokeRequest
		must(t, json.Unmarshal(rec.Body.Bytes(), &reply))
		rev, err := trust.ParseRevocation(reply.Revocation)
		if err != nil {
			t.Fatal(err)
		}
		if iss, ok := rev.Issuer(); !ok || iss != key.Public().ID() || rev.Target() != target.Public().ID() {
			t.Fatalf("revocation issued by %v (%v) for %s", iss, ok, rev.Target())
		}
	}
}
