package chainproof

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/ledger/tiles"
	"github.com/soulfra/calnet/trust"
)

// network is a real network directory: genesis, Master, a, b (a's child)
// and c (the Master's), with its ledger served as tlog-tiles.
type network struct {
	n       *netdir.Network
	a, b, c identity.ID
	aDir    string
	srv     *httptest.Server
	log     *ledger.Log
}

func newNetwork(t *testing.T) *network {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	opts := netdir.Options{Now: func() time.Time { return now }}
	dir := filepath.Join(t.TempDir(), "net")
	n, err := netdir.Init(ctx, dir, netdir.MasterGrant{Constraints: trust.Constraints{MaxDepth: 6, MaxChildren: 5, Quota: trust.Quota{CPUMillis: 4000, MemoryBytes: 8 << 30, PIDs: 1000}, NotAfter: now.Add(24 * time.Hour)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	child := func(parent, name string, perms trust.Permissions) (string, identity.ID) {
		d := filepath.Join(filepath.Dir(dir), name)
		pub, err := n.Keygen(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := n.Bless(ctx, netdir.BlessRequest{ParentDir: parent, ChildDir: d, Permissions: perms}); err != nil {
			t.Fatal(err)
		}
		return d, pub.ID()
	}
	nw := &network{n: n}
	master := filepath.Join(dir, "master")
	nw.aDir, nw.a = child(master, "a", trust.PermissionsOf(trust.PermSpawn, trust.PermRevoke, trust.PermRead))
	_, nw.b = child(nw.aDir, "b", trust.PermissionsOf(trust.PermRead))
	_, nw.c = child(master, "c", trust.PermissionsOf(trust.PermRead))
	return nw
}

// serve opens the ledger read-only and serves it.
func (nw *network) serve(t *testing.T) *tiles.Client {
	t.Helper()
	if nw.srv != nil {
		nw.srv.Close()
		if err := nw.log.Close(); err != nil {
			t.Error(err)
		}
	}
	lg, err := nw.n.OpenLedger(false)
	if err != nil {
		t.Fatal(err)
	}
	nw.log = lg
	nw.srv = httptest.NewServer(tiles.NewHandler(tiles.Config{Source: lg, Rate: -1}))
	t.Cleanup(func() {
		nw.srv.Close()
		if err := lg.Close(); err != nil {
			t.Error(err)
		}
	})
	c, err := tiles.NewClient(tiles.ClientConfig{URL: nw.srv.URL, Origin: nw.n.Info.Origin, LogKey: nw.n.Info.LogKey})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (nw *network) config(p ledger.WitnessPolicy) Config {
	return Config{RootKeys: nw.n.Info.RootKeys, Origin: nw.n.Info.Origin, LogKey: nw.n.Info.LogKey, Witnesses: p}
}

func roundTrip(t *testing.T, b *Bundle) *Bundle {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExportVerify(t *testing.T) {
	ctx := context.Background()
	nw := newNetwork(t)
	c := nw.serve(t)
	b, err := Export(ctx, c, nw.b)
	if err != nil {
		t.Fatal(err)
	}
	b = roundTrip(t, b)
	res, err := Verify(b, nw.config(ledger.WitnessPolicy{}))
	if err != nil || res.Depth != 3 || res.Cal != nw.b || !res.Scanned || res.Revoked {
		t.Fatalf("verify: %+v %v", res, err)
	}
	if len(b.Links) != 3 {
		t.Fatalf("%d links", len(b.Links))
	}

	// Revoke a (b's parent): a new bundle shows b revoked, by inclusion.
	if _, _, err := nw.n.Revoke(ctx, netdir.RevokeRequest{Target: nw.a.String(), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	c = nw.serve(t)
	rb, err := Export(ctx, c, nw.b)
	if err != nil {
		t.Fatal(err)
	}
	rb = roundTrip(t, rb)
	res, err = Verify(rb, nw.config(ledger.WitnessPolicy{}))
	if !errors.Is(err, ErrRevoked) || res == nil || res.RevokedCal != nw.a {
		t.Fatalf("revoked: %+v %v", res, err)
	}
	// c, the Master's other child, still verifies against the newer
	// checkpoint.
	cb, err := Export(ctx, c, nw.c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(roundTrip(t, cb), nw.config(ledger.WitnessPolicy{})); err != nil {
		t.Fatal(err)
	}

	// Bad input: each refused by name.
	hidden := roundTrip(t, rb)
	hidden.Revocations = nil // the revocation dropped from the list
	dropped := roundTrip(t, rb)
	dropped.Revocations, dropped.Entries = nil, nil // and the scan with it: it verifies, but unscanned
	shortScan := roundTrip(t, rb)
	shortScan.Entries = shortScan.Entries[:len(shortScan.Entries)-1]
	alteredEntry := roundTrip(t, b)
	alteredEntry.Entries[0] = bytes.Replace(alteredEntry.Entries[0], []byte("genesis"), []byte("Genesis"), 1)
	badProof := roundTrip(t, b)
	badProof.Links[1].Proof[0][0] ^= 1
	swapped := roundTrip(t, b)
	swapped.Links[1], swapped.Links[2] = swapped.Links[2], swapped.Links[1]
	otherCal := roundTrip(t, b)
	otherCal.Cal = nw.c.String()
	wrongCheckpoint := roundTrip(t, b)
	wrongCheckpoint.Checkpoint = cb.Checkpoint
	tests := []struct {
		name string
		b    *Bundle
		cfg  Config
		want error
	}{
		{"revocation hidden from the list", hidden, nw.config(ledger.WitnessPolicy{}), ErrScan},
		{"scan short", shortScan, nw.config(ledger.WitnessPolicy{}), ErrScan},
		{"scan entry altered", alteredEntry, nw.config(ledger.WitnessPolicy{}), ErrScan},
		{"link proof altered", badProof, nw.config(ledger.WitnessPolicy{}), ErrNotIncluded},
		{"links out of order", swapped, nw.config(ledger.WitnessPolicy{}), ErrChain},
		{"another cal", otherCal, nw.config(ledger.WitnessPolicy{}), ErrChain},
		{"proofs for another checkpoint", wrongCheckpoint, nw.config(ledger.WitnessPolicy{}), ErrNotIncluded},
		{"witnesses required, none cosigned", b, nw.config(policy(t, 1)), ledger.ErrTooFewCosignatures},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Verify(tt.b, tt.cfg); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if res, err := Verify(dropped, nw.config(ledger.WitnessPolicy{})); err != nil || res.Scanned {
		t.Fatalf("an unscanned bundle: %+v %v", res, err)
	}
}

func policy(t *testing.T, n int) ledger.WitnessPolicy {
	seed := sha256.Sum256([]byte("w"))
	k, err := ledger.NewWitnessKey("w.example", ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return ledger.WitnessPolicy{Witnesses: []*ledger.WitnessKey{k}, Required: n}
}

func TestParseRefusals(t *testing.T) {
	tests := []struct{ name, in string }{
		{"not json", "x"},
		{"unknown field", `{"format":"` + Format + `","cal":"x","checkpoint":"","links":[{"index":0,"entry":"","proof":[]}],"revocations":[],"entries":[],"extra":1}`},
		{"format", `{"format":"v0","cal":"x","checkpoint":"","links":[],"revocations":[],"entries":[]}`},
		{"no links", `{"format":"` + Format + `","cal":"x","checkpoint":"","links":[],"revocations":[],"entries":[]}`},
	}
	for _, tt := range tests {
		if _, err := Parse([]byte(tt.in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"format":"` + Format + `","cal":"x","checkpoint":"","links":[{"index":0,"entry":"","proof":[]}],"revocations":[],"entries":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		bundle, err := Parse(b)
		if err != nil {
			return
		}
		// Verification of arbitrary bundles must fail cleanly, not panic.
		seed := sha256.Sum256([]byte("k"))
		k, _ := identity.FromSeed(append(seed[:], seed[:]...))
		if _, err := Verify(bundle, Config{RootKeys: k.Public(), Origin: "o", LogKey: k.Public()}); err == nil {
			t.Fatal("an arbitrary bundle verified")
		}
	})
}
