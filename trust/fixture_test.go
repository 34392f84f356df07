package trust

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
)

// t0 is the fixed issue time of every fixture blessing.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// seedReader yields a deterministic stream, for reproducible nonces.
type seedReader struct {
	state [32]byte
	buf   []byte
}

func newSeedReader(label string) *seedReader { return &seedReader{state: sha256.Sum256([]byte(label))} }

func (r *seedReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			r.state = sha256.Sum256(r.state[:])
			r.buf = append([]byte(nil), r.state[:]...)
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	return n, nil
}

// keyFor derives a deterministic key from a label.
func keyFor(t testing.TB, label string) *identity.PrivateKey {
	t.Helper()
	seed := make([]byte, 64)
	_, _ = newSeedReader("key:" + label).Read(seed) // never fails: a hash stream
	k, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k.Deterministic()
}

// fixture is a network with a genesis root and a line of Cals.
type fixture struct {
	root    *identity.PrivateKey
	network identity.NetworkID
	keys    []*identity.PrivateKey // keys[i] is the Cal blessed at link i
	chains  []*Chain               // chains[i] is the soul chain of keys[i]
	rand    *seedReader
	version int // blessing format the fixture signs (0: the current one)
}

func rootConstraints() Constraints {
	return Constraints{
		MaxDepth: 12, MaxChildren: 100,
		Quota:     Quota{CPUMillis: 8000, MemoryBytes: 16 << 30, PIDs: 4096, DiskBytes: 64 << 30},
		NotBefore: t0, NotAfter: t0.Add(365 * 24 * time.Hour),
	}
}

func newFixture(t testing.TB, label string) *fixture { return newFixtureVersion(t, label, 0) }

// newFixtureVersion is newFixture whose Master Cal's blessing has the
// given format version.
func newFixtureVersion(t testing.TB, label string, version int) *fixture {
	t.Helper()
	f := &fixture{root: keyFor(t, label+"/genesis"), rand: newSeedReader("nonce:" + label), version: version}
	f.network = f.root.Public().NetworkID()
	master := keyFor(t, label+"/cal0")
	b, err := issue(f.root, Grant{
		Network: f.network, ChildKey: master.Public(), Serial: 1,
		Permissions: AllPermissions, Constraints: rootConstraints(), IssuedAt: t0, Rand: f.rand, version: version,
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Extend(nil, b, f.root)
	if err != nil {
		t.Fatal(err)
	}
	f.keys, f.chains = append(f.keys, master), append(f.chains, c)
	return f
}

// grow blesses a child of the last Cal with g's permissions and
// constraints (zero constraints mean "same as the parent").
func (f *fixture) grow(t testing.TB, perms Permissions, cons *Constraints, check bool) *Chain {
	t.Helper()
	parent := f.chains[len(f.chains)-1]
	pk := f.keys[len(f.keys)-1]
	child := keyFor(t, string(rune('a'+len(f.keys)))+f.network.String())
	c := parent.Leaf().Constraints()
	if cons != nil {
		c = *cons
	}
	b, err := issue(pk, Grant{
		Network: f.network, Parent: parent.Leaf(), ChildKey: child.Public(), Serial: 1,
		Permissions: perms, Constraints: c, IssuedAt: t0, Rand: f.rand, version: f.version,
	}, check)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := Extend(parent, b, pk)
	if err != nil {
		t.Fatal(err)
	}
	f.keys, f.chains = append(f.keys, child), append(f.chains, ch)
	return ch
}

// growTo extends the line to depth n with spawn-capable links.
func (f *fixture) growTo(t testing.TB, n int) *Chain {
	for len(f.chains) < n {
		f.grow(t, PermissionsOf(PermSpawn, PermRevoke, PermRead, PermTalk), nil, true)
	}
	return f.chains[n-1]
}

// roundTrip encodes and parses a chain, as a verifier receiving it would.
func roundTrip(t testing.TB, c *Chain) *Chain {
	t.Helper()
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseChain(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := got.MarshalJSON()
	if !bytes.Equal(b, b2) {
		t.Fatal("chain does not survive an encode/decode round trip")
	}
	return got
}

// lineage is an in-memory Lineage over fixture chains.
type lineage map[identity.ID]*Blessing

func (l lineage) Blessing(id identity.ID) (*Blessing, bool) { b, ok := l[id]; return b, ok }

func (f *fixture) lineage() lineage {
	l := lineage{}
	for _, c := range f.chains {
		for _, b := range c.Blessings {
			l[b.Child()] = b
		}
	}
	return l
}

// blessChild blesses a new Cal (key from label) under the Cal of chain
// parentIdx, without adding it to the line.
func (f *fixture) blessChild(t testing.TB, parentIdx int, label string, perms Permissions, cons Constraints, serial int, check bool) *Chain {
	t.Helper()
	parent := f.chains[parentIdx]
	child := keyFor(t, label)
	b, err := issue(f.keys[parentIdx], Grant{
		Network: f.network, Parent: parent.Leaf(), ChildKey: child.Public(), Serial: serial,
		Permissions: perms, Constraints: cons, IssuedAt: t0, Rand: f.rand, version: f.version,
	}, check)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := Extend(parent, b, f.keys[parentIdx])
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
