package trust

import (
	"fmt"
	"math/bits"
	"strings"
)

// Permission is one capability a blessing grants.
type Permission uint8

// The permission vocabulary. The numbering is part of the signed encoding:
// append new names, never reorder.
const (
	PermSpawn  Permission = iota // bless and deploy children
	PermRevoke                   // revoke descendants
	PermRead                     // read network state
	PermTalk                     // open channels to other Cals
	PermShare                    // share reflections
	PermAdmin                    // administer the network
	numPermissions
)

var permNames = [numPermissions]string{"spawn", "revoke", "read", "talk", "share", "admin"}

// String returns the permission's name.
func (p Permission) String() string {
	if p < numPermissions {
		return permNames[p]
	}
	return fmt.Sprintf("permission(%d)", uint8(p))
}

// ParsePermission looks a permission up by name.
func ParsePermission(s string) (Permission, error) {
	for i, n := range permNames {
		if n == s {
			return Permission(i), nil
		}
	}
	return 0, fmt.Errorf("unknown permission %q (known: %s)", s, strings.Join(permNames[:], ", "))
}

// Permissions is a set of permissions.
type Permissions uint32

// AllPermissions is what the Master Cal holds.
const AllPermissions = Permissions(1<<numPermissions - 1)

// PermissionsOf builds a set.
func PermissionsOf(ps ...Permission) Permissions {
	var s Permissions
	for _, p := range ps {
		s |= 1 << p
	}
	return s
}

// ParsePermissions parses names (a list, or comma-separated entries within
// it), rejecting unknown and repeated names.
func ParsePermissions(names []string) (Permissions, error) {
	var s Permissions
	for _, entry := range names {
		for _, n := range strings.Split(entry, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			p, err := ParsePermission(n)
			if err != nil {
				return 0, err
			}
			if s.Has(p) {
				return 0, fmt.Errorf("permission %q listed twice", n)
			}
			s |= 1 << p
		}
	}
	return s, nil
}

// Has reports whether s contains p.
func (s Permissions) Has(p Permission) bool { return s&(1<<p) != 0 }

// SubsetOf reports whether every permission of s is in o.
func (s Permissions) SubsetOf(o Permissions) bool { return s&^o == 0 }

// Minus returns the permissions of s missing from o.
func (s Permissions) Minus(o Permissions) Permissions { return s &^ o }

// Len returns the number of permissions in s.
func (s Permissions) Len() int { return bits.OnesCount32(uint32(s)) }

// Names lists s in vocabulary order.
func (s Permissions) Names() []string {
	out := []string{}
	for p := Permission(0); p < numPermissions; p++ {
		if s.Has(p) {
			out = append(out, p.String())
		}
	}
	return out
}

// String lists s comma-separated.
func (s Permissions) String() string { return strings.Join(s.Names(), ",") }

func (s Permissions) valid() bool { return s&^AllPermissions == 0 }
