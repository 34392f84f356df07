// Package caltlstest makes networks in memory for tests of server
// authentication: real keys, real blessings, chains that verify.
package caltlstest

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/trust"
)

// Network is a network made in memory: a genesis root, the Master Cal,
// and children it blesses. Nothing is written to disk.
type Network struct {
	Root     *identity.PrivateKey
	Verifier *trust.Verifier
	master   *identity.PrivateKey
	chain    *trust.Chain
	serial   int
}

// New makes a network whose blessings are valid from now-1h to
// now+24h.
func New(now time.Time) (*Network, error) {
	root, err := identity.Generate(rand.Reader)
	if err != nil {
		return nil, err
	}
	master, err := identity.Generate(rand.Reader)
	if err != nil {
		return nil, err
	}
	n := &Network{Root: root, Verifier: trust.NewVerifier(root.Public()), master: master}
	b, err := trust.Issue(root, trust.Grant{Network: root.Public().NetworkID(), ChildKey: master.Public(), Serial: 1,
		Permissions: trust.AllPermissions, IssuedAt: now,
		Constraints: trust.Constraints{MaxDepth: 8, MaxChildren: 100, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			Quota: trust.Quota{CPUMillis: 1000, MemoryBytes: 1 << 30, PIDs: 100, DiskBytes: 1 << 30}}})
	if err != nil {
		return nil, err
	}
	if n.chain, err = trust.Extend(nil, b, root); err != nil {
		return nil, err
	}
	return n, nil
}

// Bless makes a new identity blessed by the Master Cal with perms.
func (n *Network) Bless(perms trust.Permissions) (caltls.ServerIdentity, error) {
	key, err := identity.Generate(rand.Reader)
	if err != nil {
		return caltls.ServerIdentity{}, err
	}
	n.serial++
	parent := n.chain.Leaf()
	c := parent.Constraints()
	c.MaxDepth = parent.Depth() + 1
	c.Quota = trust.Quota{CPUMillis: 10, MemoryBytes: 1 << 20, PIDs: 1, DiskBytes: 1 << 20}
	b, err := trust.Issue(n.master, trust.Grant{Network: parent.Network(), Parent: parent, ChildKey: key.Public(),
		Serial: n.serial, Permissions: perms, Constraints: c, IssuedAt: c.NotBefore.Add(time.Minute)})
	if err != nil {
		return caltls.ServerIdentity{}, fmt.Errorf("bless: %w", err)
	}
	ch, err := trust.Extend(n.chain, b, n.master)
	if err != nil {
		return caltls.ServerIdentity{}, err
	}
	return caltls.ServerIdentity{Key: key, Chain: ch}, nil
}
