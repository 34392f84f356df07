package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/spiffeca"
)

// spiffeStats is what examples/spiffe-mtls keeps as a client.
type spiffeStats struct {
	OK          int      `json:"ok"`
	Failed      int      `json:"failed"`
	LastError   string   `json:"last_error"`
	MySerials   []string `json:"my_serials"`
	PeerSerials []string `json:"peer_serials"`
	LastAnswer  string   `json:"last_answer"`
	SVIDPEM     string   `json:"svid_pem"`
}

// spiffeTemplate is a Cal whose workload is examples/spiffe-mtls.
func spiffeTemplate(env map[string]string) string {
	var e []string
	for k, v := range env {
		e = append(e, fmt.Sprintf("%s: %q", k, v))
	}
	return `name: spiffe
permissions: [read]
resources: {cpu: 500m, memory: 256Mi, pids: 256}
tiers:
  "0":   [{name: gateway, builtin: gateway}]
  "-1":  [{name: api, builtin: api}]
  "-2":  [{name: console, builtin: console}]
  "-3":
    - name: mtls
      command: [/opt/calnet/spiffe-mtls]
      env: {` + strings.Join(e, ", ") + `}
      restart: always
  "-5":  [{name: mesh, builtin: mesh}]
  "-6":  [{name: discovery, builtin: discovery}]
  "-9":  [{name: vault, builtin: vault}]
  "-10": [{name: identity, builtin: identity}]
`
}

// TestSPIFFEWorkloadsMutualTLS runs two unmodified go-spiffe programs
// (examples/spiffe-mtls) in two Cals: each fetches its X.509-SVID from
// its Cal's Workload API and they talk mutual TLS, each authorizing the
// other by SPIFFE ID. SVIDs live 20 s, so requests flow across several
// renewals of both sides' SVIDs with zero failures. A Cal not on the
// server's list, and a client expecting another server, are refused. The
// network's bundle (GET /v1/spiffe/bundle) is rooted in the genesis key
// and go-spiffe verifies the SVIDs against it; after the client's Cal is
// revoked, its last SVID is refused (reason revoked) by the network.
func TestSPIFFEWorkloadsMutualTLS(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	must(t, os.MkdirAll(filepath.Join(data, "programs"), 0o755))
	build := exec.Command("go", "build", "-o", filepath.Join(data, "programs", "spiffe-mtls"), "github.com/soulfra/calnet/examples/spiffe-mtls")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/spiffe-mtls: %v\n%s", err, out)
	}
	n := up(t, data, "--svid-ttl", "20s")
	ctx := context.Background()

	// The bundle endpoint: one authority, the network's genesis key.
	raw, err := n.c.SPIFFEBundle(ctx)
	must(t, err)
	var info struct {
		Network  identity.NetworkID  `json:"network"`
		RootKeys *identity.PublicKey `json:"root_keys"`
	}
	nb, err := os.ReadFile(filepath.Join(data, "network", "network.json"))
	must(t, err)
	must(t, json.Unmarshal(nb, &info))
	td := spiffeca.TrustDomain(info.Network)
	bundle, err := spiffebundle.Parse(td, raw)
	if err != nil {
		t.Fatalf("the bundle endpoint's document: %v\n%s", err, raw)
	}
	if auth := bundle.X509Authorities(); len(auth) != 1 || spiffeca.RootMatches(auth[0], info.RootKeys) != nil {
		t.Fatalf("the bundle's authorities are not the genesis key: %d", len(auth))
	}

	port := freeAddr(t)
	spawn := func(name string, env map[string]string) string {
		t.Helper()
		sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: name, TemplateYAML: spiffeTemplate(env), Without: []string{"net-namespace"}}, true)
		if err != nil || sp.State != "running" {
			t.Fatalf("spawn %s: %+v %v", name, sp, err)
		}
		return sp.Cal
	}
	workloadID := func(cal string) string { return "spiffe://" + td.Name() + "/cal/" + cal + "/workload" }
	server := spawn("server", map[string]string{"ROLE": "server", "LISTEN": port, "ALLOW_FILE": "/data/work/allow"})
	clientEnv := func() map[string]string {
		return map[string]string{"ROLE": "client", "TARGET": "https://" + port + "/", "SERVER_ID": workloadID(server), "STATS_FILE": "/data/work/stats.json"}
	}
	cli := spawn("client", clientEnv())
	stranger := spawn("stranger", clientEnv())
	misdirectedEnv := clientEnv()
	misdirectedEnv["SERVER_ID"] = workloadID(stranger)
	misdirected := spawn("misdirected", misdirectedEnv)
	allow := filepath.Join(data, "cals", server, "work", "allow")
	must(t, os.WriteFile(allow+".tmp", []byte(workloadID(cli)+"\n"+workloadID(misdirected)+"\n"), 0o644))
	must(t, os.Rename(allow+".tmp", allow))

	stats := func(cal string) spiffeStats {
		var s spiffeStats
		b, err := os.ReadFile(filepath.Join(data, "cals", cal, "work", "stats.json"))
		if err == nil {
			_ = json.Unmarshal(b, &s) // a file being written reads as no progress yet
		}
		return s
	}
	var base spiffeStats
	waitFor(t, "the client's first answer", 30*time.Second, func() bool { base = stats(cli); return base.OK > 0 },
		func() { t.Logf("client stats: %+v", stats(cli)) })
	if want := workloadID(server); !strings.HasPrefix(base.LastAnswer, want) || !strings.Contains(base.LastAnswer, "answers "+workloadID(cli)) {
		t.Fatalf("answer %q, want one from %s to %s", base.LastAnswer, want, workloadID(cli))
	}
	// Across at least two renewals of each side's SVID (20 s, renewed at
	// half), no request fails.
	var now spiffeStats
	waitFor(t, "two renewals of both SVIDs", 90*time.Second, func() bool {
		now = stats(cli)
		return len(now.MySerials) >= len(base.MySerials)+2 && len(now.PeerSerials) >= len(base.PeerSerials)+2
	}, func() { t.Logf("client stats: %+v", stats(cli)) })
	if now.Failed != base.Failed {
		t.Fatalf("%d requests failed across the renewals (last: %s)", now.Failed-base.Failed, now.LastError)
	}
	t.Logf("%d requests, 0 failures, across %d client and %d server SVIDs", now.OK-base.OK, len(now.MySerials)-len(base.MySerials)+1, len(now.PeerSerials)-len(base.PeerSerials)+1)

	// Every Cal presents the X.509-SVID the network issued for its
	// identity key (and the Workload API's Cals have their workload's),
	// and no renewal failed.
	for _, c := range []struct {
		cal  string
		want []string
	}{{server, []string{"svid=cal", "svid=workload"}}, {cli, []string{"svid=cal", "svid=workload"}}, {"master", []string{"svid=cal"}}} {
		page, err := n.c.LogsAll(ctx, client.LogQuery{Cals: []string{c.cal}, Lines: 2000})
		must(t, err)
		var text strings.Builder
		for _, e := range page.Entries {
			fmt.Fprintln(&text, e.Text)
		}
		for _, w := range c.want {
			if !regexp.MustCompile(`x509-svid in use.*` + w).MatchString(text.String()) {
				t.Errorf("cal %s: no %q in its logs:\n%s", c.cal, w, text.String())
			}
		}
		if strings.Contains(text.String(), "svid renewal failed") {
			t.Errorf("cal %s: an svid renewal failed:\n%s", c.cal, text.String())
		}
	}

	// Authorization by SPIFFE ID, both ways.
	for _, c := range []struct{ name, cal string }{{"a client the server does not list", stranger}, {"a client expecting another server", misdirected}} {
		s := stats(c.cal)
		if s.OK != 0 || s.Failed == 0 {
			t.Errorf("%s: %d answered, %d refused (%s)", c.name, s.OK, s.Failed, s.LastError)
		}
	}
	if s := stats(misdirected); !strings.Contains(s.LastError, "unexpected ID") {
		t.Errorf("the misdirected client's refusal: %q", s.LastError)
	}

	// go-spiffe verifies the client's SVID against the bundle endpoint's
	// bundle; the network says it is valid, then revoked.
	var chain [][]byte
	var certs []*x509.Certificate
	rest := []byte(now.SVIDPEM)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		must(t, err)
		chain, certs = append(chain, b.Bytes), append(certs, c)
	}
	id, _, err := x509svid.Verify(certs, bundle)
	if err != nil || id.String() != workloadID(cli) {
		t.Fatalf("x509svid.Verify of the client's SVID: %v %v", id, err)
	}
	if v, err := n.c.VerifySVID(ctx, chain); err != nil || !v.Valid || v.SPIFFEID != workloadID(cli) {
		t.Fatalf("the network's verdict before revocation: %+v %v", v, err)
	}
	if _, err := n.c.Revoke(ctx, cli, "test"); err != nil {
		t.Fatal(err)
	}
	v, err := n.c.VerifySVID(ctx, chain)
	if err != nil || v.Valid || v.Reason != "revoked" {
		t.Fatalf("the network's verdict after revocation: %+v %v", v, err)
	}
}
