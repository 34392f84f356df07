package store

import (
	"reflect"
	"testing"
)

// FuzzDecodeBatch: the decoder of Raft log commands never panics, never
// returns a write the store would refuse, and what it returns encodes and
// decodes to itself.
func FuzzDecodeBatch(f *testing.F) {
	for _, b := range []batch{
		{},
		{ops: []op{{kind: opPut, bucket: "cals", key: "a", value: []byte("1")}}},
		{ops: []op{{kind: opDelete, bucket: "cals", key: "a"}, {kind: opPut, bucket: reservedPrefix + "raft", key: "k", value: []byte{}}}},
		{ops: []op{{kind: opPut, bucket: "b", key: "k", value: []byte("v")}}, leafStart: 7, leaves: [][]byte{[]byte("leaf one"), []byte("2")}},
	} {
		enc, err := b.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add([]byte("CNSB\x01\xff\xff\xff\xff\x0f"))
	f.Add([]byte("CNSB\x02\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBatch(data)
		if err != nil {
			return
		}
		for _, o := range b.ops {
			if err := checkWrite(o.bucket, o.key, o.value, true); err != nil {
				t.Fatalf("decoded a write the store refuses: %v", err)
			}
		}
		enc, err := b.encode()
		if err != nil {
			t.Fatalf("re-encoding a decoded batch: %v", err)
		}
		b2, err := decodeBatch(enc)
		if err != nil {
			t.Fatalf("decoding a re-encoded batch: %v", err)
		}
		if !reflect.DeepEqual(b, b2) {
			t.Fatalf("round trip: %+v != %+v", b, b2)
		}
	})
}
