// Package client is the Go SDK for calnet's REST and WebSocket API: spawn
// Cals, list and inspect them, revoke subtrees, follow logs and watch the
// event stream. The calnet CLI is built on it.
package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/rules"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// DefaultAddr is where `calnet up` serves the API.
const DefaultAddr = "127.0.0.1:7070"

// The API's wire types (see package api).
type (
	Cal          = api.Cal
	Tier         = api.Tier
	Component    = api.Component
	TemplateInfo = api.TemplateInfo
	Quota        = api.Quota
	SpawnRequest = api.SpawnRequest
	Spawn        = api.Spawn
	Status       = api.Status
	Revoked      = api.Revoked
	Event        = api.Event
	Token        = api.Token
	Reflection   = api.Reflection
	Card         = api.Card
	Health       = api.Health
	RulesView    = api.RulesView
	RulePreview  = api.RulePreview
	PoliciesView = api.PoliciesView
	Admin        = api.Admin
	WhoAmI       = api.WhoAmI
	LogPage      = api.LogPage
	MatrixChange = api.MatrixChange
	LogEntry     = api.LogEntry
	Approval     = api.Approval
	Vote         = api.Vote
	AuditRecord  = api.AuditRecord
	AuditPage    = api.AuditPage
	SVIDVerdict  = api.SVIDVerdict
	// Policy is an admission policy (package rules).
	Policy = rules.Policy
	// Rule is a spawn criterion (package rules).
	Rule = rules.Rule
)

// Client talks to one control plane. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the API at addr (host:port or URL) with the
// admin credential or a developer token.
func New(addr, token string) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{}}
}

// WithHTTPClient makes the client use hc (for custom transports, proxies or
// tests that check every exchange).
func (c *Client) WithHTTPClient(hc *http.Client) *Client {
	c.http = hc
	return c
}

// ReadTokenFile reads a credential file such as <data>/admin.token. It
// refuses a file holding less than api.MinCredentialLen characters (empty
// or truncated), which would otherwise be sent as no credential at all.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < api.MinCredentialLen {
		return "", fmt.Errorf("credential file %s: %d characters, at least %d expected: the file is empty or truncated", path, len(tok), api.MinCredentialLen)
	}
	return tok, nil
}

// Error is an error answer of the API.
type Error struct {
	Status     int
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// Templates lists the templates the control plane offers.
func (c *Client) Templates(ctx context.Context) ([]TemplateInfo, error) {
	var out []TemplateInfo
	return out, c.do(ctx, http.MethodGet, "/v1/templates", nil, &out)
}

// Template returns one template (as JSON).
func (c *Client) Template(ctx context.Context, name string) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, http.MethodGet, "/v1/templates/"+url.PathEscape(name), nil, &out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	err := roundTrip(ctx, c.http, method, c.base+path, c.token, in, out)
	var e *Error
	if err != nil && !errors.As(err, &e) {
		return fmt.Errorf("calnet API at %s: %w (is `calnet up` running?)", c.base, err)
	}
	return err
}

// roundTrip sends in as JSON (when not nil) and decodes a 2xx answer into
// out (when not nil); any other answer becomes an *Error carrying the
// API's message and Retry-After. Both SDK clients use it.
func roundTrip(ctx context.Context, hc *http.Client, method, url, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		var m struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &m) == nil && m.Error != "" {
			e.Message = m.Error
		} else {
			e.Message = resp.Status
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(ra) * time.Second
		}
		return e
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Status returns the network summary.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// List returns every Cal.
func (c *Client) List(ctx context.Context) ([]Cal, error) {
	var out []Cal
	return out, c.do(ctx, http.MethodGet, "/v1/cals", nil, &out)
}

// Get returns one Cal (by ID, unique prefix or name) with its measured
// isolation.
func (c *Client) Get(ctx context.Context, id string) (*Cal, error) {
	var out Cal
	return &out, c.do(ctx, http.MethodGet, "/v1/cals/"+url.PathEscape(id), nil, &out)
}

// Spawn requests a child; with wait it returns when the spawn has ended.
func (c *Client) Spawn(ctx context.Context, req SpawnRequest, wait bool) (*Spawn, error) {
	var out Spawn
	q := ""
	if wait {
		q = "?wait=true"
	}
	return &out, c.do(ctx, http.MethodPost, "/v1/cals"+q, req, &out)
}

// GetSpawn returns a spawn request's record.
func (c *Client) GetSpawn(ctx context.Context, id string) (*Spawn, error) {
	var out Spawn
	return &out, c.do(ctx, http.MethodGet, "/v1/spawns/"+url.PathEscape(id), nil, &out)
}

// Spawns lists spawn requests.
func (c *Client) Spawns(ctx context.Context) ([]Spawn, error) {
	var out []Spawn
	return out, c.do(ctx, http.MethodGet, "/v1/spawns", nil, &out)
}

// Revoke revokes a Cal and its subtree as the network authority.
func (c *Client) Revoke(ctx context.Context, id, reason string) (*Revoked, error) {
	var out Revoked
	return &out, c.do(ctx, http.MethodPost, "/v1/cals/"+url.PathEscape(id)+"/revoke", map[string]string{"reason": reason}, &out)
}

// Restart runs a Cal again: a failed or stopped one (the Master Cal
// included) with a fresh restart budget, a running one as a new process.
// A revoked Cal is refused (409). The reason (optional) goes with the
// event. With wait it returns once the Cal runs or has failed again.
func (c *Client) Restart(ctx context.Context, id, reason string, wait bool) (*Cal, error) {
	var out Cal
	q := ""
	if wait {
		q = "?wait=true"
	}
	return &out, c.do(ctx, http.MethodPost, "/v1/cals/"+url.PathEscape(id)+"/restart"+q, map[string]string{"reason": reason}, &out)
}

// SetSpawning pauses or resumes all spawning (the kill switch).
func (c *Client) SetSpawning(ctx context.Context, paused bool) error {
	return c.do(ctx, http.MethodPost, "/v1/spawning", map[string]bool{"paused": paused}, nil)
}

// Shutdown asks the control plane to stop its Cals and exit.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/shutdown", nil, nil)
}

// SnapshotTrailer is the trailer of POST /v1/snapshot that carries the
// snapshot's manifest (base64 of its JSON) once the stream is complete.
const SnapshotTrailer = "Calnet-Snapshot-Manifest"

// Snapshot streams an encrypted snapshot of the whole network (root
// credential only) to w, encrypted to the hybrid post-quantum age
// recipients given (age1pq1...), and returns its manifest as JSON. A
// stream that ends without its manifest was cut: the error says so, and
// what was written to w does not decrypt.
func (c *Client) Snapshot(ctx context.Context, recipients []string, w io.Writer) ([]byte, error) {
	b, err := json.Marshal(api.SnapshotRequest{Recipients: recipients})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/snapshot", strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calnet API at %s: %w (is `calnet up` running?)", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, errorFrom(resp.StatusCode, b)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return nil, fmt.Errorf("snapshot stream: %w", err)
	}
	m := resp.Trailer.Get(SnapshotTrailer)
	if m == "" {
		return nil, errors.New("snapshot stream: the server ended it without its manifest (the snapshot failed on the server: see its log); what was received is incomplete")
	}
	manifest, err := base64.StdEncoding.DecodeString(m)
	if err != nil {
		return nil, fmt.Errorf("snapshot manifest: %w", err)
	}
	return manifest, nil
}

// Logs copies a Cal's log to w, following it when follow is set until ctx
// ends.
func (c *Client) Logs(ctx context.Context, id string, follow bool, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/cals/"+url.PathEscape(id)+"/logs?follow="+strconv.FormatBool(follow), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return errorFrom(resp.StatusCode, b)
	}
	_, err = io.Copy(w, resp.Body)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Watch streams events after seq until ctx ends; the returned function
// receives each event. It returns when the stream ends.
func (c *Client) Watch(ctx context.Context, after uint64, fn func(Event)) error {
	u := strings.Replace(c.base, "http", "ws", 1) + "/v1/events?after=" + strconv.FormatUint(after, 10)
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + c.token}}})
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var e Event
		if json.Unmarshal(b, &e) == nil {
			fn(e)
		}
	}
}

// CreateToken makes a developer token scoped to parent's subtree and a
// permission subset. Needs the admin credential.
func (c *Client) CreateToken(ctx context.Context, name, parent string, perms []string) (secret string, t *Token, err error) {
	var out struct {
		Token  string `json:"token"`
		Record Token  `json:"record"`
	}
	err = c.do(ctx, http.MethodPost, "/v1/tokens", map[string]any{"name": name, "parent": parent, "permissions": perms}, &out)
	return out.Token, &out.Record, err
}

// Tokens lists developer tokens.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	return out, c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
}

// DeleteToken revokes a developer token.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// Metrics returns a Cal's Prometheus metrics.
func (c *Client) Metrics(ctx context.Context, id string) (string, error) {
	var sb strings.Builder
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/cals/"+url.PathEscape(id)+"/metrics", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != 200 {
		return "", errorFrom(resp.StatusCode, b)
	}
	sb.Write(b)
	return sb.String(), nil
}

// Reflect appends a reflection to a Cal's log (kind: observation,
// decision, spawn-outcome, note, ...).
func (c *Client) Reflect(ctx context.Context, id, kind, text string, data json.RawMessage) (*Reflection, error) {
	var out Reflection
	return &out, c.do(ctx, http.MethodPost, "/v1/cals/"+url.PathEscape(id)+"/reflections", map[string]any{"kind": kind, "text": text, "data": data}, &out)
}

// Reflections reads a Cal's reflections from seq on; the Cal verifies its
// log and reports any tampering as an error.
func (c *Client) Reflections(ctx context.Context, id string, from uint64) ([]Reflection, error) {
	var out []Reflection
	return out, c.do(ctx, http.MethodGet, "/v1/cals/"+url.PathEscape(id)+"/reflections?from="+strconv.FormatUint(from, 10), nil, &out)
}

// Share has Cal from share the given reflections with Cal to, which
// records them (naming the sharer) in its own log.
func (c *Client) Share(ctx context.Context, from, to string, seqs []uint64) (*Reflection, error) {
	var out Reflection
	return &out, c.do(ctx, http.MethodPost, "/v1/cals/"+url.PathEscape(from)+"/reflections/share", map[string]any{"to": to, "seqs": seqs}, &out)
}

// Card returns a Cal's address card.
func (c *Client) Card(ctx context.Context, id string) (*Card, error) {
	var out Card
	return &out, c.do(ctx, http.MethodGet, "/v1/cals/"+url.PathEscape(id)+"/card", nil, &out)
}

// CardQR returns a Cal's address card as a QR code image, format png or svg.
func (c *Client) CardQR(ctx context.Context, id, format string) ([]byte, error) {
	return c.getBytes(ctx, "/v1/cals/"+url.PathEscape(id)+"/card?format="+url.QueryEscape(format), 1<<20)
}

// Profile returns a runtime profile of a Cal's process (cal "" for the
// control plane's own): heap, goroutine, allocs, block, mutex,
// threadcreate, or profile (CPU, for seconds). debug 0 is the binary
// format go tool pprof reads; 1 and 2 are text.
func (c *Client) Profile(ctx context.Context, cal, name string, seconds, debug int) ([]byte, error) {
	path := "/v1/debug/pprof/" + url.PathEscape(name)
	if cal != "" {
		path = "/v1/cals/" + url.PathEscape(cal) + "/pprof/" + url.PathEscape(name)
	}
	v := url.Values{}
	if seconds > 0 {
		v.Set("seconds", strconv.Itoa(seconds))
	}
	if debug > 0 {
		v.Set("debug", strconv.Itoa(debug))
	}
	return c.getBytes(ctx, path+"?"+v.Encode(), 64<<20)
}

// getBytes GETs a non-JSON answer of at most limit bytes.
func (c *Client) getBytes(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, errorFrom(resp.StatusCode, b)
	}
	return b, nil
}

// Health returns a Cal's health history.
func (c *Client) Health(ctx context.Context, id string) (*Health, error) {
	var out Health
	return &out, c.do(ctx, http.MethodGet, "/v1/cals/"+url.PathEscape(id)+"/health", nil, &out)
}

// Console attaches to a Cal's console (its CLI server) and returns the
// connection: write command lines, read their output. Needs the admin
// credential.
func (c *Client) Console(ctx context.Context, id string) (net.Conn, error) {
	u := strings.Replace(c.base, "http", "ws", 1) + "/v1/cals/" + url.PathEscape(id) + "/console"
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + c.token}}})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			msg := "console: " + resp.Status
			var m struct {
				Error string `json:"error"`
			}
			if b, rerr := io.ReadAll(io.LimitReader(resp.Body, 1024)); rerr == nil && json.Unmarshal(b, &m) == nil && m.Error != "" {
				msg = "console: " + m.Error
			}
			return nil, &Error{Status: resp.StatusCode, Message: msg}
		}
		return nil, err
	}
	return websocket.NetConn(ctx, conn, websocket.MessageBinary), nil
}

// Point is one sample of a metric series.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// Series returns a Cal's metric series since t ("host" for the host).
func (c *Client) Series(ctx context.Context, id string, since time.Time) (map[string][]Point, error) {
	var out struct {
		Series map[string][]Point `json:"series"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/cals/"+url.PathEscape(id)+"/series?since="+url.QueryEscape(since.UTC().Format(time.RFC3339)), nil, &out)
	return out.Series, err
}

// Limits are the spawn limits an administrator can change at run time.
type Limits struct {
	MaxCals     int     `json:"max_cals"`
	SpawnRate   float64 `json:"spawn_rate"`
	SpawnBurst  int     `json:"spawn_burst"`
	ParentRate  float64 `json:"parent_rate"`
	ParentBurst int     `json:"parent_burst"`
}

// SPIFFEBundle returns the network's SPIFFE trust bundle (a JWKS
// document; go-spiffe's spiffebundle.Parse reads it).
func (c *Client) SPIFFEBundle(ctx context.Context) ([]byte, error) {
	var out json.RawMessage
	return out, c.do(ctx, http.MethodGet, "/v1/spiffe/bundle", nil, &out)
}

// VerifySVID verifies an X.509-SVID chain (DER, leaf first) against the
// network's bundle and its revocations, now.
func (c *Client) VerifySVID(ctx context.Context, chain [][]byte) (*SVIDVerdict, error) {
	in := struct {
		Chain [][]byte `json:"chain"`
	}{chain}
	var out SVIDVerdict
	return &out, c.do(ctx, http.MethodPost, "/v1/spiffe/verify", in, &out)
}

// Limits returns the spawn limits in force.
func (c *Client) Limits(ctx context.Context) (*Limits, error) {
	var out Limits
	return &out, c.do(ctx, http.MethodGet, "/v1/limits", nil, &out)
}

// Rules returns a Cal's spawn criteria, their state and recent decisions.
func (c *Client) Rules(ctx context.Context, cal string) (*RulesView, error) {
	var out RulesView
	return &out, c.do(ctx, http.MethodGet, "/v1/cals/"+url.PathEscape(cal)+"/rules", nil, &out)
}

// PreviewRule runs a rule over a Cal's recorded metrics without storing
// or acting on it: when it would have fired, and what held it back.
func (c *Client) PreviewRule(ctx context.Context, cal string, r Rule, since time.Time) (*RulePreview, error) {
	var out RulePreview
	return &out, c.do(ctx, http.MethodPost, "/v1/cals/"+url.PathEscape(cal)+"/rules/preview", api.RulePreviewRequest{Rule: r, Since: since}, &out)
}

// SetRules replaces a Cal's spawn criteria (needs spawn). A rule that
// does not compile is refused with its index, field and CEL position.
func (c *Client) SetRules(ctx context.Context, cal string, rs []Rule) error {
	if rs == nil {
		rs = []Rule{}
	}
	return c.do(ctx, http.MethodPut, "/v1/cals/"+url.PathEscape(cal)+"/rules", api.RulesDoc{Rules: rs}, nil)
}

// Recommendations returns quota recommendations for a Cal from its
// observed usage over the last hour.
func (c *Client) Recommendations(ctx context.Context, cal string) (*api.Recommendations, error) {
	var out api.Recommendations
	return &out, c.do(ctx, http.MethodGet, "/v1/cals/"+url.PathEscape(cal)+"/recommendations", nil, &out)
}

// TemplateRecommendations returns what the Cals of a template used
// (pooled quotas, least-privilege permissions) and how its spawns went.
func (c *Client) TemplateRecommendations(ctx context.Context, template string) (*api.TemplateRecommendations, error) {
	var out api.TemplateRecommendations
	return &out, c.do(ctx, http.MethodGet, "/v1/templates/"+url.PathEscape(template)+"/recommendations", nil, &out)
}

// Policies returns the network's admission policies.
func (c *Client) Policies(ctx context.Context) (*PoliciesView, error) {
	var out PoliciesView
	return &out, c.do(ctx, http.MethodGet, "/v1/policies", nil, &out)
}

// SetPolicies replaces the network's admission policies (admin). A policy
// that does not compile, or that denies every request, is refused. A
// named administrator's change while a require_approval policy is in
// force is held for approval: the error is then a *HeldError carrying the
// request, and the policies change once enough other administrators
// approve it.
func (c *Client) SetPolicies(ctx context.Context, ps []Policy) error {
	if ps == nil {
		ps = []Policy{}
	}
	var out struct {
		api.Approval
		Policies json.RawMessage `json:"policies"`
	}
	if err := c.do(ctx, http.MethodPut, "/v1/policies", api.PoliciesDoc{Policies: ps}, &out); err != nil {
		return err
	}
	if out.ID != "" { // 202: an approval request, not the policies
		a := out.Approval
		return &HeldError{Approval: &a}
	}
	return nil
}

// SetLimits changes the spawn limits (admin).
func (c *Client) SetLimits(ctx context.Context, l Limits) (*Limits, error) {
	var out Limits
	return &out, c.do(ctx, http.MethodPut, "/v1/limits", l, &out)
}

// Admins lists the administrators, the root ("admin") first.
func (c *Client) Admins(ctx context.Context) ([]Admin, error) {
	var out []Admin
	return out, c.do(ctx, http.MethodGet, "/v1/admins", nil, &out)
}

// AddAdmin adds a named administrator (root only) and returns its
// credential, shown this once.
func (c *Client) AddAdmin(ctx context.Context, name string) (secret string, a *Admin, err error) {
	var out struct {
		Token string `json:"token"`
		Admin Admin  `json:"admin"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/admins", map[string]string{"name": name}, &out); err != nil {
		return "", nil, err
	}
	return out.Token, &out.Admin, nil
}

// RemoveAdmin removes a named administrator (root only).
func (c *Client) RemoveAdmin(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/admins/"+url.PathEscape(name), nil, nil)
}

// Approvals lists approval requests (pending first); state filters them
// ("pending", "approved", "rejected", "expired"; "" for all).
func (c *Client) Approvals(ctx context.Context, state string) ([]Approval, error) {
	var out []Approval
	return out, c.do(ctx, http.MethodGet, "/v1/approvals?state="+url.QueryEscape(state), nil, &out)
}

// GetApproval returns one approval request.
func (c *Client) GetApproval(ctx context.Context, id string) (*Approval, error) {
	var out Approval
	return &out, c.do(ctx, http.MethodGet, "/v1/approvals/"+url.PathEscape(id), nil, &out)
}

// Approve adds this administrator's approval; the one that reaches the
// policy's count carries the operation out (the result is in Result).
func (c *Client) Approve(ctx context.Context, id, comment string) (*Approval, error) {
	var out Approval
	return &out, c.do(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/approve", map[string]string{"comment": comment}, &out)
}

// Reject rejects a request; a held spawn is rejected with it.
func (c *Client) Reject(ctx context.Context, id, comment string) (*Approval, error) {
	var out Approval
	return &out, c.do(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/reject", map[string]string{"comment": comment}, &out)
}

// LogQuery selects lines of the aggregated log.
type LogQuery struct {
	Text   string   // substring, case-insensitive
	Level  string   // debug, info, warn, error: this level and above
	Cals   []string // IDs, prefixes or names; none: every Cal in scope
	Lines  int      // the most recent lines (default 200, at most 2,000)
	Cursor string   // from a previous page: only newer lines
}

// LogsAll returns the merged logs of the Cals in scope; pass the page's
// Cursor back to follow.
func (c *Client) LogsAll(ctx context.Context, q LogQuery) (*api.LogPage, error) {
	v := url.Values{}
	for k, x := range map[string]string{"q": q.Text, "level": q.Level, "cals": strings.Join(q.Cals, ","), "cursor": q.Cursor} {
		if x != "" {
			v.Set(k, x)
		}
	}
	if q.Lines > 0 {
		v.Set("lines", strconv.Itoa(q.Lines))
	}
	var out api.LogPage
	return &out, c.do(ctx, http.MethodGet, "/v1/logs?"+v.Encode(), nil, &out)
}

// Matrix returns the permission matrix of the subtree rooted at cal.
func (c *Client) Matrix(ctx context.Context, cal string) (*api.PermissionMatrix, error) {
	var out api.PermissionMatrix
	return &out, c.do(ctx, http.MethodGet, "/v1/cals/"+url.PathEscape(cal)+"/matrix", nil, &out)
}

// SetMatrix sets what Cals of the subtree may grant to new children
// (admin); a change with Grantable nil lifts the Cal's limit.
func (c *Client) SetMatrix(ctx context.Context, cal string, rows []api.MatrixChange) (*api.PermissionMatrix, error) {
	var out api.PermissionMatrix
	if rows == nil {
		rows = []api.MatrixChange{}
	}
	return &out, c.do(ctx, http.MethodPut, "/v1/cals/"+url.PathEscape(cal)+"/matrix", api.MatrixUpdate{Rows: rows}, &out)
}

// Simulate previews a rule set in the control plane's simulator (under
// the network's admission policies): at most 50 pools for at most a day.
func (c *Client) Simulate(ctx context.Context, req api.SimRequest) (*api.SimReport, error) {
	var out api.SimReport
	return &out, c.do(ctx, http.MethodPost, "/v1/sim", req, &out)
}

// Traffic returns the traffic matrix, busiest pairs first.
func (c *Client) Traffic(ctx context.Context) (*api.Traffic, error) {
	var out api.Traffic
	return &out, c.do(ctx, http.MethodGet, "/v1/traffic", nil, &out)
}

// WhoAmI says who the client's credential is.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var out WhoAmI
	return &out, c.do(ctx, http.MethodGet, "/v1/whoami", nil, &out)
}

// Authz returns the authorization table: every route of every surface,
// who may call it and how its target is scoped.
func (c *Client) Authz(ctx context.Context) ([]api.AuthzEntry, error) {
	var out []api.AuthzEntry
	return out, c.do(ctx, http.MethodGet, "/v1/authz", nil, &out)
}

// errorFrom makes the Error of a non-2xx answer: its JSON "error", or its
// text when the body is not the API's error form (a proxy's page, say).
func errorFrom(status int, body []byte) *Error {
	var m struct{ Error string }
	if err := json.Unmarshal(body, &m); err != nil || m.Error == "" {
		return &Error{Status: status, Message: strings.TrimSpace(string(body))}
	}
	return &Error{Status: status, Message: m.Error}
}

// AuditQuery selects records of the audit trail; zero fields select
// everything.
type AuditQuery struct {
	Since, Until time.Time
	Actor        string
	Type         string // an event type, or a prefix ending in "." ("cal.")
	Cal          string // a name, an ID or a prefix of at least 4 characters
	// After pages forward from a sequence number (oldest first); without
	// it the page holds the newest matches before Before (0: the end).
	After, Before uint64
	Limit         int // default 100, at most 1,000
}

// Audit returns a page of the audit trail, oldest first (administrators).
func (c *Client) Audit(ctx context.Context, q AuditQuery) (*AuditPage, error) {
	v := url.Values{}
	for k, x := range map[string]string{"actor": q.Actor, "type": q.Type, "cal": q.Cal} {
		if x != "" {
			v.Set(k, x)
		}
	}
	for k, t := range map[string]time.Time{"since": q.Since, "until": q.Until} {
		if !t.IsZero() {
			v.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	for k, n := range map[string]uint64{"after": q.After, "before": q.Before, "limit": uint64(q.Limit)} {
		if n > 0 {
			v.Set(k, strconv.FormatUint(n, 10))
		}
	}
	var out api.AuditPage
	return &out, c.do(ctx, http.MethodGet, "/v1/audit?"+v.Encode(), nil, &out)
}
