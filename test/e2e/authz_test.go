package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/rules"
	"github.com/soulfra/calnet/trust"
)

// authzNet is a network laid out for authorization tests:
//
//	master ── team (spawn,read,revoke,share,talk) ── worker (read,share)
//	       └─ other (spawn,share,talk)                   (outside team's subtree)
//
// with developer tokens on team and a named administrator.
type authzNet struct {
	*network
	master, team, worker, other string
	alice                       string // a named administrator's credential
	tokens                      map[string]string
}

func newAuthzNet(t *testing.T, extra ...string) *authzNet {
	t.Helper()
	n := up(t, filepath.Join(t.TempDir(), "data"), extra...)
	ctx := context.Background()
	a := &authzNet{network: n, master: n.master(), tokens: map[string]string{}}
	spawn := func(parent, name string, perms ...string) string {
		req := client.SpawnRequest{Parent: parent, Name: name, Permissions: perms, CPUMillis: 100, MemoryBytes: 32 << 20}
		if name == "team" {
			req.CPUMillis, req.MemoryBytes, req.PIDs = 500, 256<<20, 512
		}
		return spawnRetrying(t, n.c, req).Cal
	}
	a.team = spawn("", "team", "spawn", "read", "revoke", "share", "talk")
	a.worker = spawn(a.team, "worker", "read", "share")
	a.other = spawn("", "other", "spawn", "share", "talk")
	var err error
	if a.alice, _, err = n.c.AddAdmin(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	for name, perms := range map[string][]string{
		"full":  {"spawn", "read", "revoke", "share", "talk"},
		"read":  {"read"},
		"spawn": {"spawn"},
	} {
		secret, _, err := n.c.CreateToken(ctx, name, a.team, perms)
		if err != nil {
			t.Fatal(err)
		}
		a.tokens[name] = secret
	}
	return a
}

// spawnRetrying spawns and waits for the Cal, retrying while a loaded
// machine makes the control plane refuse with 429 (host CPU saturated).
func spawnRetrying(t *testing.T, c *client.Client, req client.SpawnRequest) *client.Spawn {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sp, err := c.Spawn(context.Background(), req, true)
		var ae *client.Error
		if asAPIError(err, &ae) && ae.Status == 429 && time.Now().Before(deadline) {
			time.Sleep(max(ae.RetryAfter, time.Second))
			continue
		}
		if err != nil || sp.State != "running" {
			t.Fatalf("spawn %s: %+v %v", req.Name, sp, err)
		}
		return sp
	}
}

// as is a client holding tok.
func (a *authzNet) as(tok string) *client.Client { return client.New(a.addr, tok) }

// call makes one raw API request with the credential tok ("" for none).
func (a *authzNet) call(t *testing.T, tok, method, path, body string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+a.addr+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, string(b)
}

// TestRouteWalk walks every route the running control plane registered
// (GET /v1/authz lists its mux's routes, so a new route is walked without
// changing this test) with every kind of principal and, for a route that
// names a Cal, a Cal inside the tokens' subtree, the tokens' own Cal and
// a Cal outside it; each answer must be the table's (authz.Expect):
// admitted (the answer carries the Calnet-Route header of the entry that
// admitted it) or refused with 401, 403 or 404 and no such header.
// Requests that change something carry a body no handler accepts, so an
// admitted one is refused by the handler (400) and changes nothing.
func TestRouteWalk(t *testing.T) {
	needRoot(t)
	a := newAuthzNet(t)
	root := readToken(t, a.data)
	var served []authz.Entry
	code, _, body := a.call(t, root, "GET", "/v1/authz", "")
	if code != 200 || json.Unmarshal([]byte(body), &served) != nil {
		t.Fatalf("GET /v1/authz: %d %s", code, body)
	}
	var routes []authz.Entry
	for _, e := range served {
		if e.Surface == authz.Operator {
			routes = append(routes, e)
		}
	}
	if len(routes) != len(authz.Routes(authz.Operator)) {
		t.Fatalf("the server registered %d operator routes, the table has %d", len(routes), len(authz.Routes(authz.Operator)))
	}
	perms := func(names ...string) trust.Permissions {
		p, _ := trust.ParsePermissions(names)
		return p
	}
	type who struct {
		name string
		tok  string
		p    authz.Principal
	}
	principals := []who{
		{"no credential", "", authz.Principal{Kind: authz.Anonymous}},
		{"wrong credential", "calnet_admin_" + strings.Repeat("0", 64), authz.Principal{Kind: authz.Anonymous}},
		{"root", root, authz.Principal{Kind: authz.Root}},
		{"named administrator", a.alice, authz.Principal{Kind: authz.Admin}},
		{"token with every permission of its Cal", a.tokens["full"], authz.Principal{Kind: authz.Developer, Perms: perms("spawn", "read", "revoke", "share", "talk")}},
		{"read-only token", a.tokens["read"], authz.Principal{Kind: authz.Developer, Perms: perms("read")}},
		{"spawn-only token", a.tokens["spawn"], authz.Principal{Kind: authz.Developer, Perms: perms("spawn")}},
	}
	type target struct {
		name         string
		id           string
		inScope, own bool
	}
	targets := []target{{"in its subtree", a.worker, true, false}, {"its own Cal", a.team, true, true}, {"outside its subtree", a.other, false, false}}
	fill := strings.NewReplacer("{name}", "default", "{profile}", "heap")
	walked := 0
	for _, e := range routes {
		rule, ok := authz.Lookup(authz.Operator, e.Pattern)
		if !ok {
			t.Errorf("served route %q is not in the table", e.Pattern)
			continue
		}
		method, path, _ := strings.Cut(e.Pattern, " ")
		path = strings.TrimSuffix(path, "{$}")
		ts := []target{{"", "", true, false}}
		if strings.Contains(path, "{id}") {
			switch {
			case strings.HasPrefix(path, "/v1/cals/"):
				ts = targets
			case strings.HasPrefix(path, "/v1/tokens/"):
				ts = []target{{"", "tok_nosuchtoken", true, false}}
			case strings.HasPrefix(path, "/v1/approvals/"):
				ts = []target{{"", "apr_nosuchrequest", true, false}}
			default:
				ts = []target{{"", "sp_nosuchspawn", true, false}}
			}
		}
		for _, tg := range ts {
			p := fill.Replace(strings.ReplaceAll(path, "{id}", tg.id))
			body := ""
			if method != "GET" {
				body = "not json: the route walk changes nothing"
			}
			for _, w := range principals {
				name := fmt.Sprintf("%s %s as %s", method, p, w.name)
				if tg.name != "" {
					name = fmt.Sprintf("%s (%s)", name, tg.name)
				}
				t.Run(name, func(t *testing.T) {
					want := authz.Expect(rule, w.p, tg.inScope, tg.own)
					code, h, body := a.call(t, w.tok, method, p, body)
					admitted := h.Get(authz.RouteHeader)
					switch {
					case want == 0 && admitted != e.Pattern:
						t.Errorf("the table admits it, the server answered %d without %s %q: %.300s", code, authz.RouteHeader, e.Pattern, body)
					case want != 0 && (code != want || admitted != ""):
						t.Errorf("the table refuses it with %d, the server answered %d (%s %q): %.300s", want, code, authz.RouteHeader, admitted, body)
					}
				})
				walked++
			}
		}
	}
	t.Logf("walked %d routes with %d principals: %d requests", len(routes), len(principals), walked)
	if r := a.cli("authz", "--surface", "local"); r.code != 0 || !strings.Contains(r.stdout, "DELETE /v1/children/{id}") || strings.Contains(r.stdout, "/v1/tokens") {
		t.Errorf("calnet authz --surface local: %+v", r)
	}

	// The server is still whole: nothing the walk sent changed anything.
	if st, err := a.c.Status(context.Background()); err != nil || st.Paused || st.Cals["running"] != 4 {
		t.Fatalf("after the walk: %+v %v", st, err)
	}

	// A Cal's local API and its console act with the Cal's blessing: each
	// route and command is the table's answer for a workload holding the
	// Cal's permissions (team holds all but admin, worker read and share,
	// other spawn, share and talk).
	for _, cal := range []struct {
		id    string
		perms trust.Permissions
	}{{a.team, perms("spawn", "read", "revoke", "share", "talk")}, {a.worker, perms("read", "share")}, {a.other, perms("spawn", "share", "talk")}} {
		w := authz.Principal{Kind: authz.Workload, Perms: cal.perms}
		for _, e := range authz.Routes(authz.Local) {
			rule, _ := authz.Lookup(authz.Local, e.Pattern)
			method, path, _ := strings.Cut(e.Pattern, " ")
			path = strings.ReplaceAll(path, "{id}", "not-a-cal-id")
			var body any
			if method != "GET" {
				body = json.RawMessage("not json")
			}
			t.Run(fmt.Sprintf("local %s %s of %s", method, path, cal.id[:8]), func(t *testing.T) {
				want := authz.Expect(rule, w, true, false)
				code, h := a.localRaw(t, cal.id, method, path, body)
				if admitted := h.Get(authz.RouteHeader); (want == 0) != (admitted == e.Pattern) || (want != 0 && code != want) {
					t.Errorf("want %d, got %d (%s %q)", want, code, authz.RouteHeader, admitted)
				}
			})
		}
		for _, e := range authz.Routes(authz.Console) {
			rule, _ := authz.Lookup(authz.Console, e.Pattern)
			if e.Pattern == "exit" || e.Pattern == "spawn" && authz.Decide(rule, w).Allowed() {
				continue // ends the session; would spawn a child
			}
			t.Run(fmt.Sprintf("console %s of %s", e.Pattern, cal.id[:8]), func(t *testing.T) {
				out := a.console(t, cal.id, e.Pattern)
				refused := strings.Contains(out, "does not hold "+rule.Perm)
				if refused == authz.Decide(rule, w).Allowed() {
					t.Errorf("console %s: %q (the table allows: %v)", e.Pattern, out, authz.Decide(rule, w).Allowed())
				}
			})
		}
	}

	// The control plane's Cal API and a Cal's own API take mutual TLS only:
	// a client without a certificate is refused at the handshake.
	for _, sock := range []string{filepath.Join(a.data, "run", "cal.sock"), filepath.Join(a.data, "host", a.team, "api.sock")} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			_, err = fmt.Fprintf(tc, "GET /v1/self HTTP/1.1\r\nHost: cal\r\n\r\n")
			if err == nil {
				_, err = bufio.NewReader(tc).ReadString('\n')
			}
		}
		tc.Close()
		if err == nil {
			t.Errorf("%s answered a client without a certificate", sock)
		}
	}

	// The Infinity Router reaches a Cal's gateway tier and nothing else:
	// every answer through it is admitted by a gateway route.
	for _, p := range []string{"/", "/healthz", "/v1/self", "/v1/children", "/cal/v1/spawn", "/debug/pprof/heap"} {
		resp, err := http.Get("http://" + a.router + "/team.master" + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		rule, ok := authz.Lookup(authz.Gateway, resp.Header.Get(authz.RouteHeader))
		if !ok || !slices.Equal(rule.Who, []authz.Kind{authz.Anonymous}) || (p != "/" && p != "/healthz" && resp.StatusCode != 404) {
			t.Errorf("router %s: %d, admitted by gateway route %q", p, resp.StatusCode, resp.Header.Get(authz.RouteHeader))
		}
	}
}

// localRaw calls a Cal's local API with a raw body and returns the status
// and headers.
func (a *authzNet) localRaw(t *testing.T, id, method, path string, body any) (int, http.Header) {
	t.Helper()
	sock := filepath.Join(a.data, "cals", id, "local.sock")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	var r io.Reader
	if raw, ok := body.(json.RawMessage); ok {
		r = strings.NewReader(string(raw))
	}
	req, _ := http.NewRequest(method, "http://cal"+path, r)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("local API of %s: %v", id, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header
}

// console runs one command on a Cal's console socket and returns what it
// printed before the next prompt.
func (a *authzNet) console(t *testing.T, id, cmd string) string {
	t.Helper()
	c, err := net.Dial("unix", filepath.Join(a.data, "host", id, "console.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	readPrompt := func() string {
		var sb strings.Builder
		for !strings.HasSuffix(sb.String(), "> ") {
			b, err := r.ReadByte()
			if err != nil {
				t.Fatalf("console %s: %v after %q", cmd, err, sb.String())
			}
			sb.WriteByte(b)
		}
		return sb.String()
	}
	readPrompt()
	fmt.Fprintf(c, "%s\n", cmd)
	return readPrompt()
}

// TestTokenReadsStayInScope (finding 12): a developer token reads only its
// subtree: events, traffic, status counts, the host's series, template
// recommendations and spawns of Cals outside it are not shown.
func TestTokenReadsStayInScope(t *testing.T) {
	needRoot(t)
	a := newAuthzNet(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dev := a.as(a.tokens["read"])
	var mu sync.Mutex
	var seen []client.Event
	watch(t, dev, 0, func(e client.Event) {
		mu.Lock()
		seen = append(seen, e)
		mu.Unlock()
	})
	// Traffic outside the subtree: other shares with the master.
	if _, err := a.c.Reflect(ctx, a.other, "note", "private to other", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Share(ctx, a.other, a.master, []uint64{0}); err != nil {
		t.Fatal(err)
	}
	// An event outside the subtree, after the token subscribed.
	out := spawnRetrying(t, a.c, client.SpawnRequest{Parent: a.other, Name: "outside", Permissions: []string{"talk"}, CPUMillis: 50, MemoryBytes: 32 << 20})
	// And one inside, so that we know the stream delivered up to here.
	in := spawnRetrying(t, a.c, client.SpawnRequest{Parent: a.team, Name: "inside", Permissions: []string{"read"}, CPUMillis: 50, MemoryBytes: 32 << 20})
	waitFor(t, "the token's stream to carry its subtree's spawn", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(seen, func(e client.Event) bool { return e.Cal == in.Cal && e.Type == "cal.running" })
	})
	mine := map[string]bool{a.team: true, a.worker: true, in.Cal: true}
	mu.Lock()
	for _, e := range seen {
		if e.Cal == "" && e.Parent == "" || e.Cal != "" && !mine[e.Cal] || e.Cal == "" && !mine[e.Parent] {
			t.Errorf("the token received an event outside its subtree: %+v", e)
		}
	}
	mu.Unlock()

	tr, err := dev.Traffic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tr.Pairs {
		for _, end := range []string{p.From, p.To} {
			if end == a.master || end == a.other || end == out.Cal {
				t.Errorf("the token's traffic names a Cal outside its subtree: %+v", p)
			}
		}
	}
	st, err := dev.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Cals["running"] != 3 {
		t.Errorf("the token's status counts %v, want its subtree's 3 running Cals", st.Cals)
	}
	var ae *client.Error
	if _, err := dev.Series(ctx, "host", time.Time{}); !asAPIError(err, &ae) || ae.Status != 404 {
		t.Errorf("the host's series for a token: %v, want 404", err)
	}
	code, _, body := a.call(t, a.tokens["read"], "GET", "/v1/spawns/"+out.ID, "")
	if code != 404 {
		t.Errorf("a spawn outside the subtree: %d %s", code, body)
	}
	code, _, body = a.call(t, a.tokens["read"], "GET", "/v1/templates/default/recommendations", "")
	var rec struct {
		Cals     int `json:"cals"`
		Outcomes struct {
			Spawns int `json:"spawns"`
		} `json:"outcomes"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &rec) != nil || rec.Cals != 3 || rec.Outcomes.Spawns != 2 {
		t.Errorf("template recommendations for a token: %d %s, want its subtree's 3 Cals and 2 spawns", code, body)
	}
	// Administrators see everything.
	if st, _ := a.c.Status(ctx); st.Cals["running"] != 6 {
		t.Errorf("root's status: %v", st.Cals)
	}
}

// TestReflectionsNeedShare (finding 10): writing into a Cal's reflection
// log needs share (read alone is refused), and a token shares only between
// Cals of its subtree: never into its Cal's parent (the Master) nor
// anywhere else outside.
func TestReflectionsNeedShare(t *testing.T) {
	needRoot(t)
	a := newAuthzNet(t)
	ctx := context.Background()
	var ae *client.Error
	if _, err := a.as(a.tokens["read"]).Reflect(ctx, a.worker, "note", "from a read-only token", nil); !asAPIError(err, &ae) || ae.Status != 403 {
		t.Errorf("a read-only token wrote a reflection: %v", err)
	}
	full := a.as(a.tokens["full"])
	if _, err := full.Reflect(ctx, a.team, "note", "team's own", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := full.Share(ctx, a.team, a.master, []uint64{0}); !asAPIError(err, &ae) || ae.Status != 404 {
		t.Errorf("a token shared into the Master's vault: %v", err)
	}
	if rs, _ := a.c.Reflections(ctx, a.master, 0); slices.ContainsFunc(rs, func(r client.Reflection) bool { return r.Kind == "shared" }) {
		t.Errorf("the Master's vault holds a share: %+v", rs)
	}
	if _, err := a.as(a.tokens["read"]).Share(ctx, a.team, a.worker, []uint64{0}); !asAPIError(err, &ae) || ae.Status != 403 {
		t.Errorf("a token without share shared: %v", err)
	}
	// Within the subtree, with share, it works.
	if _, err := full.Share(ctx, a.team, a.worker, []uint64{0}); err != nil {
		t.Errorf("a token sharing within its subtree: %v", err)
	}
}

// TestPolicyChangeNeedsQuorum (finding 11): while a require_approval
// policy is in force, a named administrator cannot change or clear the
// policies alone (and then grant admin alone): the change is held for
// the quorum of the strictest such policy, from administrators other
// than the requester, and carried out once they approve. The root
// changes them directly.
func TestPolicyChangeNeedsQuorum(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	admin := map[string]*client.Client{}
	for _, name := range []string{"alice", "bob", "carol"} {
		tok, _, err := n.c.AddAdmin(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		admin[name] = client.New(n.addr, tok).WithHTTPClient(validatingClient(t))
	}
	grant := client.Policy{Name: "grant-admin", RequireApproval: `"admin" in request_permissions`, Approvals: 2, Message: "granting admin takes two administrators"}
	big := client.Policy{Name: "big-revoke", On: "revoke", RequireApproval: `subtree_cals >= 3`, Message: "revoking three or more Cals takes one approval"}
	if err := n.c.SetPolicies(ctx, []client.Policy{grant, big}); err != nil {
		t.Fatal(err)
	}

	// alice clears them: held for two approvals (the strictest policy's).
	err := admin["alice"].SetPolicies(ctx, nil)
	var held *client.HeldError
	if !errors.As(err, &held) || held.Approval.Required != 2 || held.Approval.Operation != "policies" || held.Approval.Policy != "grant-admin" {
		t.Fatalf("a named administrator clearing the policies alone: %v", err)
	}
	if v, _ := n.c.Policies(ctx); len(v.Policies) != 2 {
		t.Fatalf("policies after alice's held change: %+v", v.Policies)
	}
	// So granting admin alone is still held.
	sp, err := admin["alice"].Spawn(ctx, client.SpawnRequest{Name: "ops", Permissions: []string{"admin"}}, false)
	if err != nil || sp.State != "awaiting_approval" {
		t.Fatalf("alice granting admin: %+v %v", sp, err)
	}
	// alice cannot approve her own change; bob and carol can.
	id := held.Approval.ID
	var ae *client.Error
	if _, err := admin["alice"].Approve(ctx, id, ""); !asAPIError(err, &ae) || ae.Status != 403 {
		t.Fatalf("alice approving her own change: %v", err)
	}
	if a, err := admin["bob"].Approve(ctx, id, ""); err != nil || a.State != "pending" {
		t.Fatalf("bob approves: %+v %v", a, err)
	}
	if v, _ := n.c.Policies(ctx); len(v.Policies) != 2 {
		t.Fatalf("policies after one of two approvals: %+v", v.Policies)
	}
	a, err := admin["carol"].Approve(ctx, id, "ok")
	if err != nil || a.State != "approved" || !strings.Contains(a.Result, "policies set") {
		t.Fatalf("carol approves: %+v %v", a, err)
	}
	if v, _ := n.c.Policies(ctx); len(v.Policies) != 0 {
		t.Fatalf("policies after the quorum approved clearing them: %+v", v.Policies)
	}
	// With no require_approval policy in force, a named administrator sets
	// them directly; the root always does.
	if err := admin["alice"].SetPolicies(ctx, []client.Policy{big}); err != nil {
		t.Fatalf("alice with no approval policy in force: %v", err)
	}
	if err := n.c.SetPolicies(ctx, []client.Policy{grant, big}); err != nil {
		t.Fatal(err)
	}
	if err := n.c.SetPolicies(ctx, nil); err != nil {
		t.Fatalf("the root clearing the policies: %v", err)
	}
}

// ledgerRevocations returns, per revoked Cal, who signed its revocation
// in the ledger: a Cal's ID, or "authority" for the genesis key.
func ledgerRevocations(t *testing.T, data string) map[string]string {
	t.Helper()
	var out struct {
		Entries []struct {
			Type    string          `json:"type"`
			Subject string          `json:"subject"`
			Data    json.RawMessage `json:"data"`
		} `json:"entries"`
	}
	okJSON(t, "", &out, "ledger", "log", "--dir", filepath.Join(data, "network"))
	signed := map[string]string{}
	for _, e := range out.Entries {
		if e.Type != "revocation" {
			continue
		}
		var rev struct {
			Issuer string `json:"issuer"`
		}
		must(t, json.Unmarshal(e.Data, &rev))
		signed[e.Subject] = rev.Issuer
	}
	return signed
}

// TestRetireRuleBounds (finding 6): a rule does only what both its author
// and its Cal may do. A token without revoke cannot set a retire rule,
// nor can anyone on a Cal without revoke; a retirement is the Cal's own
// revocation (signed by the Cal, never by the genesis key); and once the
// rule's author is gone the rule retires nothing.
func TestRetireRuleBounds(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"), "--idle-window", "10s")
	ctx := context.Background()
	team := spawnRetrying(t, n.c, client.SpawnRequest{Name: "team", Permissions: []string{"spawn", "read", "revoke"}, CPUMillis: 500, MemoryBytes: 256 << 20, PIDs: 512}).Cal
	norev := spawnRetrying(t, n.c, client.SpawnRequest{Name: "norev", Permissions: []string{"spawn", "read"}, CPUMillis: 100, MemoryBytes: 64 << 20}).Cal
	var kids []string
	for _, name := range []string{"k1", "k2"} {
		kids = append(kids, spawnRetrying(t, n.c, client.SpawnRequest{Parent: team, Name: name, Permissions: []string{"read"}, CPUMillis: 50, MemoryBytes: 32 << 20}).Cal)
	}
	retire := []client.Rule{{Name: "trim", When: "idle_children > 0", Cooldown: rules.Duration(20 * time.Second), Action: rules.Action{Kind: rules.Retire, Count: 1}}}

	// A spawn-only token may set spawn rules, not retire rules.
	spawner, _, err := n.c.CreateToken(ctx, "spawner", team, []string{"spawn", "read"})
	if err != nil {
		t.Fatal(err)
	}
	var ae *client.Error
	if err := client.New(n.addr, spawner).SetRules(ctx, team, retire); !asAPIError(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "revoke") {
		t.Fatalf("a token without revoke set a retire rule: %v", err)
	}
	// Nobody sets a retire rule on a Cal that may not revoke.
	if err := n.c.SetRules(ctx, norev, retire); !asAPIError(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "revoke") {
		t.Fatalf("a retire rule on a Cal without revoke: %v", err)
	}

	// A token with revoke sets it; the retirement is signed by team.
	full, rec, err := n.c.CreateToken(ctx, "full", team, []string{"spawn", "read", "revoke"})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.New(n.addr, full).SetRules(ctx, team, retire); err != nil {
		t.Fatal(err)
	}
	var gone string
	waitFor(t, "one idle child retired by the rule", 90*time.Second, func() bool {
		time.Sleep(time.Second) // poll slowly: asking about a Cal keeps it busy
		for _, k := range kids {
			if c, err := n.c.Get(ctx, k); err == nil && c.State == "revoked" {
				gone = k
				return true
			}
		}
		return false
	})
	if by := ledgerRevocations(t, n.data)[gone]; by != team {
		t.Fatalf("the retirement of %s was signed by %q, want the Cal %s", gone, by, team)
	}
	// The author's token is deleted: the rule retires nothing more.
	if err := n.c.DeleteToken(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rule refused for want of its author", 90*time.Second, func() bool {
		time.Sleep(time.Second)
		v, err := n.c.Rules(ctx, team)
		if err != nil {
			return false
		}
		for _, d := range v.Decisions {
			if d.Outcome == rules.Suppressed && strings.Contains(d.Reason, "no longer exists") {
				return true
			}
		}
		return false
	})
	running := 0
	for _, k := range kids {
		if c, err := n.c.Get(ctx, k); err == nil && c.State == "running" {
			running++
		}
	}
	if running != 1 {
		t.Fatalf("%d children running after the author's token was deleted, want 1", running)
	}

	// A developer token's revocation is its Cal's own revocation too: the
	// authority signs only what administrators decided.
	revoker, _, err := n.c.CreateToken(ctx, "revoker", team, []string{"revoke"})
	if err != nil {
		t.Fatal(err)
	}
	last := kids[0]
	if last == gone {
		last = kids[1]
	}
	if _, err := client.New(n.addr, revoker).Revoke(ctx, last, "done"); err != nil {
		t.Fatal(err)
	}
	if by := ledgerRevocations(t, n.data)[last]; by != team {
		t.Fatalf("a token's revocation of %s was signed by %q, want its Cal %s", last, by, team)
	}
}
