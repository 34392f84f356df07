package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/soulfra/calnet/client"
)

// calTree is a Cal with the listed part of its subtree, for `ls --tree`.
type calTree struct {
	client.Cal
	Subtree []calTree `json:"subtree"`
}

// calTrees arranges a list of Cals by lineage. A root is a listed Cal
// whose parent is not listed: the Master Cal for the admin credential, a
// developer token's Cal for that token. Siblings keep the list's order.
func calTrees(cals []client.Cal) []calTree {
	listed := make(map[string]bool, len(cals))
	for _, c := range cals {
		listed[c.ID] = true
	}
	byParent := map[string][]client.Cal{}
	var roots []client.Cal
	for _, c := range cals {
		if listed[c.Parent] && c.Parent != c.ID {
			byParent[c.Parent] = append(byParent[c.Parent], c)
		} else {
			roots = append(roots, c)
		}
	}
	var build func(cs []client.Cal, seen map[string]bool) []calTree
	build = func(cs []client.Cal, seen map[string]bool) []calTree {
		out := make([]calTree, 0, len(cs))
		for _, c := range cs {
			if seen[c.ID] { // a cycle cannot come from a valid registry; never loop on one
				continue
			}
			seen[c.ID] = true
			out = append(out, calTree{Cal: c, Subtree: build(byParent[c.ID], seen)})
		}
		return out
	}
	return build(roots, map[string]bool{})
}

// printTrees writes trees as indented text, one Cal a line.
func printTrees(w io.Writer, trees []calTree, indent string) {
	for _, t := range trees {
		name := t.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(w, "%s%s %s [%s] %s\n", indent, short(t.ID), name, t.State, strings.Join(t.Permissions, ","))
		printTrees(w, t.Subtree, indent+"  ")
	}
}
