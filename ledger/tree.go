package ledger

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

var hasher = rfc6962.DefaultHasher

// tree holds every complete subtree hash of the log in memory: level 0 is
// the leaf hashes, level k holds the roots of the perfect subtrees of 2^k
// leaves. It takes about 64 bytes per entry. It is not safe for concurrent
// use; Log guards it.
type tree struct {
	levels [][]byte // levels[k] holds 32-byte hashes back to back
}

func (t *tree) size() uint64 {
	if len(t.levels) == 0 {
		return 0
	}
	return uint64(len(t.levels[0]) / 32)
}

func (t *tree) node(level uint, index uint64) []byte {
	return t.levels[level][index*32 : index*32+32]
}

// push appends a leaf hash and every subtree it completes.
func (t *tree) push(leaf []byte) {
	if len(t.levels) == 0 {
		t.levels = append(t.levels, nil)
	}
	t.levels[0] = append(t.levels[0], leaf...)
	for l := 0; ; l++ {
		n := len(t.levels[l]) / 32
		if n%2 != 0 {
			return
		}
		if l+1 == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		left := t.levels[l][(n-2)*32 : (n-1)*32]
		right := t.levels[l][(n-1)*32 : n*32]
		t.levels[l+1] = append(t.levels[l+1], hasher.HashChildren(left, right)...)
	}
}

// root returns the RFC 6962 root of the first size entries.
func (t *tree) root(size uint64) ([]byte, error) {
	if size > t.size() {
		return nil, fmt.Errorf("tree size %d is beyond the log's %d", size, t.size())
	}
	if size == 0 {
		return hasher.EmptyRoot(), nil
	}
	// The perfect subtrees covering [0, size), largest first; fold them
	// from the right.
	var hash []byte
	begin := uint64(0)
	var nodes [][]byte
	for rem := size; rem > 0; {
		level := uint(bits.Len64(rem) - 1)
		nodes = append(nodes, t.node(level, begin>>level))
		begin += 1 << level
		rem -= 1 << level
	}
	hash = nodes[len(nodes)-1]
	for i := len(nodes) - 2; i >= 0; i-- {
		hash = hasher.HashChildren(nodes[i], hash)
	}
	return hash, nil
}

func (t *tree) fetch(n proof.Nodes) ([][]byte, error) {
	hashes := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		if id.Level >= uint(len(t.levels)) || id.Index >= uint64(len(t.levels[id.Level])/32) {
			return nil, errors.New("proof needs a node the tree does not have")
		}
		hashes[i] = t.node(id.Level, id.Index)
	}
	return n.Rehash(hashes, hasher.HashChildren)
}

// inclusion returns the audit path of leaf index in the tree of size.
func (t *tree) inclusion(index, size uint64) ([][]byte, error) {
	if size > t.size() {
		return nil, fmt.Errorf("tree size %d is beyond the log's %d", size, t.size())
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return t.fetch(n)
}

// consistency returns the proof that the tree of size1 is a prefix of size2.
func (t *tree) consistency(size1, size2 uint64) ([][]byte, error) {
	if size2 > t.size() {
		return nil, fmt.Errorf("tree size %d is beyond the log's %d", size2, t.size())
	}
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return t.fetch(n)
}
