package trust

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseChainBadInput(t *testing.T) {
	f := newFixture(t, "parse")
	c := f.growTo(t, 3)
	good, _ := c.MarshalJSON()

	deepJSON := editChain(t, c, func(m map[string]any) {
		bl := m["blessings"].([]any)
		var many []any
		for range MaxChainDepth/len(bl) + 1 {
			many = append(many, bl...)
		}
		m["blessings"] = many // 33 links
	})

	edit := func(fn func(m map[string]any)) []byte { return editChain(t, c, fn) }
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"truncated", good[:len(good)/2], "invalid JSON"},
		{"oversized", append(good, make([]byte, MaxChainJSON)...), "over the limit"},
		{"empty", []byte(`{}`), "version"},
		{"duplicate field", []byte(strings.Replace(string(good), `"version":1`, `"version":1,"version":1`, 1)), "duplicated field \"version\""},
		{"duplicate nested field", []byte(strings.Replace(string(good), `"depth":2`, `"depth":2,"depth":2`, 1)), "duplicated field \"depth\""},
		{"unknown field", edit(func(m map[string]any) { link(m, 1)["extra"] = 1 }), "unknown field"},
		{"short ed25519 key", edit(func(m map[string]any) { link(m, 1)["child_keys"].(map[string]any)["ed25519"] = "AAAA" }), "child_keys.ed25519"},
		{"long mldsa key", edit(func(m map[string]any) {
			k := link(m, 1)["child_keys"].(map[string]any)
			k["mldsa65"] = k["mldsa65"].(string) + "AAAA"
		}), "child_keys.mldsa65"},
		{"short signature", edit(func(m map[string]any) { link(m, 2)["signature"].(map[string]any)["mldsa65"] = "AAAA" }), "signature.mldsa65"},
		{"unknown permission", edit(func(m map[string]any) { link(m, 1)["permissions"] = []string{"spawn", "fly"} }), `unknown permission "fly"`},
		{"repeated permission", edit(func(m map[string]any) { link(m, 1)["permissions"] = []string{"read", "read"} }), "listed twice"},
		{"can_propagate without spawn", edit(func(m map[string]any) { link(m, 2)["permissions"] = []string{"read"} }), "can_propagate"},
		{"child not matching keys", edit(func(m map[string]any) { link(m, 1)["child"] = link(m, 2)["child"] }), "not the ID of child_keys"},
		{"fractional time", edit(func(m map[string]any) { link(m, 1)["issued_at"] = "2026-01-01T00:00:00.5Z" }), "issued_at"},
		{"depth gap", edit(func(m map[string]any) {
			bl := m["blessings"].([]any)
			m["blessings"] = []any{bl[0], bl[2]}
		}), "depth is 3, want 2"},
		{"missing attestation", edit(func(m map[string]any) { delete(m, "attestation") }), "attestation: missing"},
		{"attestation by the wrong signer", edit(func(m map[string]any) {
			m["attestation"].(map[string]any)["signer"] = "genesis"
		}), "attestation.signer"},
		{"negative quota", edit(func(m map[string]any) {
			link(m, 1)["constraints"].(map[string]any)["quota"].(map[string]any)["pids"] = -1
		}), "constraints.quota.pids: -1 is outside"},
		{"disk quota missing", edit(func(m map[string]any) {
			delete(link(m, 1)["constraints"].(map[string]any)["quota"].(map[string]any), "disk_bytes")
		}), "constraints.quota.disk_bytes: missing"},
		{"disk quota in a version 1 blessing", edit(func(m map[string]any) { link(m, 1)["version"] = 1 }), "constraints.quota.disk_bytes: not part of a version 1 blessing"},
		{"negative disk quota", edit(func(m map[string]any) {
			link(m, 1)["constraints"].(map[string]any)["quota"].(map[string]any)["disk_bytes"] = -1
		}), "constraints.quota.disk_bytes: -1 is outside"},
		{"version 3", edit(func(m map[string]any) { link(m, 1)["version"] = 3 }), "version: 3 is not supported"},
		{"max_depth over limit", edit(func(m map[string]any) {
			link(m, 1)["constraints"].(map[string]any)["max_depth"] = 99
		}), "constraints.max_depth: 99 is outside 1..32"},
		{"too deep", deepJSON, "33 links, over the limit of 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseChain(tt.in)
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("error = %v, want a ChainError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseRevocationBadInput(t *testing.T) {
	f := newFixture(t, "parse-rev")
	r, _ := Revoke(f.root, RevokeRequest{Network: f.network, Target: f.chains[0].Leaf().Child(), Authority: true, IssuedAt: t0})
	good, _ := r.MarshalJSON()
	tests := []struct{ name, in, want string }{
		{"truncated", string(good[:40]), "invalid JSON"},
		{"bad issuer", strings.Replace(string(good), `"authority"`, `"nobody"`, 1), "issuer"},
		{"long reason", strings.Replace(string(good), `"reason":""`, `"reason":"`+strings.Repeat("x", MaxReasonLen+1)+`"`, 1), "reason: 513 bytes, over the limit of 512"},
		{"duplicate", strings.Replace(string(good), `"version":1`, `"version":1,"version":1`, 1), "duplicated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseRevocation([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParseBlessing(f *testing.F) {
	fx := newFixture(f, "fuzz-blessing")
	b, _ := fx.growTo(f, 2).Leaf().MarshalJSON()
	f.Add(b)
	old, _ := newFixtureVersion(f, "fuzz-blessing-v1", BlessingVersion1).growTo(f, 2).Leaf().MarshalJSON()
	f.Add(old)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		bl, err := ParseBlessing(data)
		if err != nil {
			return
		}
		out, err := bl.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseBlessing(out)
		if err != nil || again.Digest() != bl.Digest() {
			t.Fatalf("re-encoding changed the blessing: %v", err)
		}
	})
}

func FuzzParseChain(f *testing.F) {
	fx := newFixture(f, "fuzz-chain")
	c, _ := fx.growTo(f, 3).MarshalJSON()
	f.Add(c)
	v := NewVerifier(fx.root.Public())
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, err := ParseChain(data)
		if err != nil {
			return
		}
		_, _ = v.Verify(ch, t0.Add(time.Hour), nil)
	})
}

func FuzzParseRevocation(f *testing.F) {
	fx := newFixture(f, "fuzz-rev")
	r, _ := Revoke(fx.root, RevokeRequest{Network: fx.network, Target: fx.chains[0].Leaf().Child(), Authority: true, IssuedAt: t0})
	b, _ := json.Marshal(r)
	f.Add(b)
	rs := NewRevocationSet(NewVerifier(fx.root.Public()))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRevocation(data)
		if err != nil {
			return
		}
		_ = rs.Check(r, fx.lineage())
	})
}
