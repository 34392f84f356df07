package controlplane

import (
	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/template"
	"slices"

	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/soulfra/calnet/internal/sandbox"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/placement"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/rules"
	"github.com/soulfra/calnet/trust"
)

// SpawnParams is a request to spawn a child of Parent.
type SpawnParams = api.SpawnRequest

// Limits on spawn request fields.
const (
	maxNameLen = 63
	maxKeyLen  = 128
	// startFootprint is the memory a Cal needs to start, for the host check.
	startFootprint = 32 << 20
	// deployTimeout is the base wait for a new Cal to register; a template
	// whose Cals are slower is given 4x its p95 (placement.Outcomes).
	deployTimeout = 15 * time.Second
	// startCPU is about the CPU time a Cal takes to start (measured: a Cal
	// limited to 10m is operational after ~9 s, at 20m after ~4 s).
	startCPU = 150 * time.Millisecond
)

// startWait is the least deploy timeout for a Cal limited to cpuMillis:
// three times what its start takes at that share of a core, so that a
// small CPU limit the driver can apply is one a Cal can start in.
func startWait(cpuMillis int64) time.Duration {
	if cpuMillis <= 0 {
		return 0
	}
	return 3 * startCPU * 1000 / time.Duration(cpuMillis)
}

// APIError is the one error type of the API: a status and a message that
// names the field or limit and never leaks internals.
type APIError struct {
	Status     int           `json:"-"`
	Msg        string        `json:"error"`
	RetryAfter time.Duration `json:"-"`
}

func (e *APIError) Error() string { return e.Msg }

func apiErr(status int, format string, args ...any) *APIError {
	return &APIError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

func newID(prefix string) string {
	b := make([]byte, 10)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Spawn runs the spawn pipeline: requested -> authorized (the requester's
// bounds, on the expanded request) -> admitted (chain, permission, policy,
// quota, rate limit, resources) -> deploying -> running, or rejected /
// failed. Admission is synchronous; deployment continues in the
// background. A retried request with the same idempotency key returns the
// first request's record and never creates a second Cal.
func (s *Server) Spawn(ctx context.Context, p SpawnParams, who requester) (*SpawnRecord, error) {
	// No spawn before recovery is done: it must not start a Cal that
	// recovery adopts, nor be failed by it as one cut short.
	select {
	case <-s.recovered:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.spawn(ctx, p, who, nil)
}

// spawn is Spawn; held is the record of a spawn a policy held for
// approval and administrators approved, which continues from admission.
func (s *Server) spawn(ctx context.Context, p SpawnParams, who requester, held *SpawnRecord) (*SpawnRecord, error) {
	asked := p
	actor := who.actor
	reject := func(aerr *APIError) (*SpawnRecord, error) {
		if held != nil {
			s.rejectSpawn(ctx, held, aerr)
			return held, aerr
		}
		return nil, aerr
	}
	named := requestQuota(&p)
	tmpl, terr := s.resolveTemplate(p.Template, p.TemplateYAML)
	if terr == nil {
		applyTemplate(&p, tmpl)
		terr = validateParams(&p)
	}
	if terr != nil {
		return reject(terr)
	}
	// Policies see the template as resolved: an inline one is named as
	// such and cannot pass for a stored template of the same name.
	p.Template = tmpl.Name
	if p.TemplateYAML != "" {
		p.Template = "inline:" + tmpl.Name
	}
	// Quotas: what neither the request nor its template names is the
	// default, capped at the parent's limits; every limit must be one the
	// driver can apply and a Cal can start in.
	q := requestQuota(&p)
	var parentQuota *trust.Quota
	if prec, err := s.getCal(ctx, p.Parent); err == nil {
		pq := recordQuota(prec)
		parentQuota = &pq
	}
	src := fillQuota(&q, named, tmpl.Name, parentQuota)
	setRequestQuota(&p, q)
	if aerr := checkQuotaBounds(q, src, s.driverMin()); aerr != nil {
		return reject(aerr)
	}
	privilege := ""
	if p.LeastPrivilege {
		p.Permissions, privilege = s.leastPrivilege(ctx, tmpl.Name, p.Permissions)
	}
	// The one authorization decision, on the request as it will be
	// granted: nothing a template or a default adds escapes it.
	if aerr := s.authorizeSpawn(ctx, who, &p); aerr != nil {
		return reject(aerr)
	}
	// The template's rules come with the Cal: a retire rule it could not
	// carry out refuses the spawn rather than the rules after it.
	if aerr := checkRetireRules(who, "the new cal", p.Permissions, tmpl.Rules); aerr != nil {
		return reject(aerr)
	}
	rec := held
	if rec != nil {
		rec.Reason = ""
		rec.Permissions, rec.Privilege = p.Permissions, privilege
	} else {
		rec = &SpawnRecord{
			ID: newID("sp_"), IdempotencyKey: p.IdempotencyKey, Parent: p.Parent, Name: p.Name, Permissions: p.Permissions,
			CPUMillis: p.CPUMillis, MemoryBytes: p.MemoryBytes, DiskBytes: p.DiskBytes, State: SpawnRequested, Actor: actor, RequestedAt: s.now(),
			Template: tmpl.Name, Privilege: privilege,
		}
		// One transaction claims the idempotency key and records the
		// spawn: of concurrent requests with one key, exactly one spawns.
		first, err := s.claimSpawn(ctx, rec)
		if err != nil {
			return nil, err
		}
		if first != nil {
			return first, nil
		}
		s.bus.publish(Event{Type: "spawn.requested", Spawn: rec.ID, Parent: p.Parent, State: SpawnRequested, Actor: actor})
	}
	if until, n, backing := s.outcomes.BackOff(backOffKey(p.Template, p.Parent)); backing {
		aerr := &APIError{Status: 429, RetryAfter: until.Sub(s.now()),
			Msg: fmt.Sprintf("template %s: %d failed deploys under cal %s in the last %v and none succeeded since; backing off its spawns there until %s", tmpl.Name, n, p.Parent, placement.Window, until.UTC().Format(time.RFC3339))}
		s.rejectSpawn(ctx, rec, aerr)
		return rec, aerr
	}
	parentBlessing, serial, hold, aerr := s.admit(ctx, p, src, rec.ID, actor, held != nil)
	if aerr != nil {
		s.rejectSpawn(ctx, rec, aerr)
		return rec, aerr
	}
	if hold != nil {
		return s.holdSpawn(ctx, rec, asked, actor, hold)
	}
	if prec, err := s.getCal(ctx, p.Parent); err == nil {
		pd := s.place(ctx, p, prec)
		rec.Placement = pd.Reason()
		if pd.Chosen == "" {
			aerr := &APIError{Status: 429, Msg: "placement: " + rec.Placement, RetryAfter: 5 * time.Second}
			s.release(rec.ID)
			s.rejectSpawn(ctx, rec, aerr)
			return rec, aerr
		}
	}
	// Admitted is acknowledged only once stored: a spawn whose admission
	// the store refuses deploys nothing and is answered with the failure.
	rec.State = SpawnAdmitted
	if err := s.putSpawn(ctx, rec); err != nil {
		s.release(rec.ID)
		aerr := stateErr(err, "spawn %s: its admission", rec.ID)
		s.unrecorded(err, "the admission of a spawn; it is refused", "spawn", rec.ID, "parent", p.Parent)
		s.rejectSpawn(ctx, rec, aerr)
		return rec, aerr
	}
	s.usePermission(ctx, p.Parent, "spawn")
	s.bus.publish(Event{Type: "spawn.admitted", Spawn: rec.ID, Parent: p.Parent, State: SpawnAdmitted, Actor: actor})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.deploy(s.ctx, rec, p, tmpl, parentBlessing, serial, who.bound)
	}()
	return rec, nil
}

// holdSpawn parks a spawn a policy holds for approval: an approval
// request is opened and the spawn waits in state awaiting_approval.
func (s *Server) holdSpawn(ctx context.Context, rec *SpawnRecord, asked SpawnParams, actor string, pol *rules.CompiledPolicy) (*SpawnRecord, error) {
	a := &api.Approval{Operation: rules.OpSpawn, Cal: asked.Parent, Spawn: rec.ID, Request: &asked, Actor: actor}
	if aerr := s.openApproval(ctx, a, pol); aerr != nil {
		s.rejectSpawn(ctx, rec, aerr)
		return rec, aerr
	}
	rec.Approval = a.ID
	if err := s.finishSpawn(ctx, rec, SpawnAwaitingApproval, fmt.Sprintf("policy %s: %s; waiting for %d administrator approval(s) (%s)", pol.Name, pol.Message, pol.Approvals, a.ID)); err != nil {
		// Not held, then: the request is open, but recovery fails a
		// spawn left requested, and approving it finds it so.
		s.unrecorded(err, "the hold of a spawn for approval", "spawn", rec.ID, "approval", a.ID)
		return rec, stateErr(err, "spawn %s: its hold for approval %s", rec.ID, a.ID)
	}
	return rec, nil
}

func validateParams(p *SpawnParams) *APIError {
	if len(p.Name) > maxNameLen {
		return apiErr(400, "name: %d characters, over the limit of %d", len(p.Name), maxNameLen)
	}
	for _, r := range p.Name {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return apiErr(400, "name: %q may hold only a-z, 0-9 and -", p.Name)
		}
	}
	if len(p.IdempotencyKey) > maxKeyLen {
		return apiErr(400, "idempotency_key: over the limit of %d characters", maxKeyLen)
	}
	if _, err := trust.ParsePermissions(p.Permissions); err != nil {
		return apiErr(400, "permissions: %v", err)
	}
	switch p.RestartPolicy {
	case "":
		p.RestartPolicy = RestartAlways
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		return apiErr(400, "restart_policy: %q, want always, on-failure or never", p.RestartPolicy)
	}
	for _, f := range p.Without {
		if _, err := sandbox.ParseFeature(f); err != nil {
			return apiErr(400, "without: %v", err)
		}
	}
	return nil
}

// admit checks everything that can refuse a spawn before anything is
// signed, then makes the one decision concurrent spawns contend for and
// reserves what it grants (reserve, book.go). It returns the parent's
// blessing and the child's serial.
//
// When a policy holds the spawn for approval (and it is not approved
// already) admit returns that policy, and nothing is reserved.
func (s *Server) admit(ctx context.Context, p SpawnParams, src quotaSource, spawnID, actor string, approved bool) (*trust.Blessing, int, *rules.CompiledPolicy, *APIError) {
	if s.paused.Load() {
		return nil, 0, nil, apiErr(403, "spawning is paused by the kill switch (calnet spawning resume)")
	}
	pid, err := identity.ParseID(p.Parent)
	if err != nil {
		return nil, 0, nil, apiErr(400, "parent: %v", err)
	}
	prec, err := s.getCal(ctx, p.Parent)
	if err != nil {
		return nil, 0, nil, apiErr(404, "parent: no cal %s", p.Parent)
	}
	if prec.State != StateRunning {
		return nil, 0, nil, apiErr(409, "parent: cal %s is %s, not running", p.Parent, prec.State)
	}
	chain, err := s.chainOf(pid)
	if err != nil {
		return nil, 0, nil, apiErr(409, "parent: soul chain unreadable")
	}
	s.trustMu.RLock()
	v, verr := s.net.Verifier().Verify(chain, s.now(), s.state)
	children := max(len(s.state.Children[pid]), s.serials[pid])
	s.trustMu.RUnlock()
	if verr != nil {
		return nil, 0, nil, apiErr(403, "parent: soul chain does not verify: %v", verr)
	}
	perms, _ := trust.ParsePermissions(p.Permissions)
	if !v.Permissions.Has(trust.PermSpawn) {
		return nil, 0, nil, apiErr(403, "parent: cal %s does not hold spawn", p.Parent)
	}
	if extra := perms.Minus(v.Permissions); extra != 0 {
		return nil, 0, nil, apiErr(403, "permissions: %s not held by the parent (it holds %s)", extra, v.Permissions)
	}
	if aerr := s.checkGrant(p.Parent, perms); aerr != nil {
		return nil, 0, nil, aerr
	}
	c := v.Constraints
	if v.Depth+1 > c.MaxDepth {
		return nil, 0, nil, apiErr(403, "limit max_depth: a child would sit at depth %d, the parent's max_depth is %d", v.Depth+1, c.MaxDepth)
	}
	if children >= c.MaxChildren {
		return nil, 0, nil, apiErr(403, "limit max_children: the parent has %d children, its max_children is %d", children, c.MaxChildren)
	}
	q := requestQuota(&p)
	if aerr := withinParent(q, c.Quota, p.Parent, src); aerr != nil {
		return nil, 0, nil, aerr
	}
	s.limMu.Lock()
	maxCalsNow := s.cfg.Limits.MaxCals
	s.limMu.Unlock()
	aerr, hold := s.checkPolicies(ctx, p, prec, prec.Depth+1, s.liveIndexed(), actor, approved)
	if aerr != nil {
		return nil, 0, nil, aerr
	}
	if hold != nil {
		return nil, 0, hold, nil
	}
	if busy, what := cpuSaturated(s.cfg.Limits.MaxCPUPressure); busy {
		return nil, 0, nil, &APIError{Status: 429, Msg: "host resources: CPU saturated (" + what + ")", RetryAfter: 10 * time.Second}
	}
	if aerr := s.checkSpawnDisk(ctx, p.DiskBytes); aerr != nil {
		return nil, 0, nil, aerr
	}
	// The quota caps what the Cal may use; to start it the host needs room
	// for its start-up footprint (at most its quota) above the reserve.
	if need := min(p.MemoryBytes, startFootprint) + s.cfg.Limits.MinFreeMemory; availableMemory() >= 0 && availableMemory() < need {
		return nil, 0, nil, &APIError{Status: 429, Msg: fmt.Sprintf("host resources: %d bytes of memory available, starting a cal needs %d", availableMemory(), need), RetryAfter: 5 * time.Second}
	}
	s.limMu.Lock()
	lim := s.limiter
	s.limMu.Unlock()
	if ok, which, retry := lim.allow(p.Parent, time.Now()); !ok {
		return nil, 0, nil, &APIError{Status: 429, Msg: "limit " + which + ": too many spawns, retry later", RetryAfter: retry}
	}
	// The one decision and reservation: name, max_cals, the requests of
	// every subtree up to the Master, the child's serial.
	serial, aerr := s.reserve(admitAsk{spawn: spawnID, parent: pid, name: p.Name, quota: q, src: src, maxChildren: c.MaxChildren, maxCals: maxCalsNow})
	if aerr != nil {
		return nil, 0, nil, aerr
	}
	return chain.Leaf(), serial, nil, nil
}

// liveIndexed counts the live Cals of the registry index.
func (s *Server) liveIndexed() int {
	s.ns.mu.RLock()
	defer s.ns.mu.RUnlock()
	n := 0
	for _, c := range s.ns.byID {
		if isLive(c.State) {
			n++
		}
	}
	return n
}

// deploy has the parent's SpawnController sign, records the blessing in
// the ledger, writes the sandbox and starts the Cal, retrying deployment
// failures with backoff.
func (s *Server) deploy(ctx context.Context, rec *SpawnRecord, p SpawnParams, tmpl *template.Template, parent *trust.Blessing, serial int, bound string) {
	s.deploySem <- struct{}{}
	defer func() { <-s.deploySem }()
	childID, err := s.signAndRecord(ctx, rec, p, tmpl, parent, serial, bound)
	// Recorded, the Cal counts in the registry index; failed, it never
	// will: either way the admission reservation ends.
	s.release(rec.ID)
	if err != nil {
		s.unrecorded(s.finishSpawn(ctx, rec, SpawnFailed, err.Error()), "the failure of a spawn", "spawn", rec.ID, "reason", err.Error())
		return
	}
	// From here the Cal's record is the registry's truth (stored by
	// signAndRecord); the spawn record follows its progress, and recovery
	// rebuilds it from the Cal's record if a write here is lost. So a
	// failed progress write is logged and the deploy goes on.
	rec.State, rec.Cal = SpawnDeploying, childID
	if err := s.putSpawn(ctx, rec); err != nil {
		s.unrecorded(err, "a spawn's state deploying", "spawn", rec.ID, "cal", childID)
	} else {
		s.bus.publish(Event{Type: "spawn.deploying", Spawn: rec.ID, Cal: childID, Parent: p.Parent, State: SpawnDeploying, Actor: rec.Actor})
	}
	var lastErr error
	for attempt := range 3 {
		rec.Attempts = attempt + 1
		// The attempt count is on the record whatever ends it.
		s.unrecorded(s.putSpawn(ctx, rec), "a spawn's attempt count", "spawn", rec.ID, "cal", childID, "attempt", rec.Attempts)
		crec, err := s.getCal(ctx, childID)
		if err != nil {
			lastErr = err
			break
		}
		t0 := time.Now()
		timeout := max(s.outcomes.Timeout("template:"+p.Template, s.cfg.DeployTimeout), startWait(p.CPUMillis))
		registered, err := s.start(ctx, crec)
		if err == nil {
			select {
			case <-registered:
				s.learn(p, true)
				s.outcomes.Operational("template:"+p.Template, time.Since(t0))
				return // the registration handler finished the spawn
			case <-time.After(timeout):
				err = fmt.Errorf("the cal did not register within %v", timeout)
				s.stop(ctx, childID)
			case <-ctx.Done():
				return
			}
		}
		lastErr = err
		s.log.Warn("deploy failed, retrying", "cal", childID, "attempt", attempt+1, "err", err)
		time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
	}
	s.learn(p, false)
	s.setState(ctx, childID, StateFailed, "deploy: driver: "+lastErr.Error())
}

// learn records a deploy outcome for the template and this host: failures
// back the template off and lower the host's placement score.
//
// A template's failures back it off under the parent it failed under
// only: a tenant can make its own spawns fail (a workload that cannot
// start in the memory it asked for), and so back off its own subtree, never
// another's. A template broken for everyone is backed off under each
// parent after a few failures there.
func (s *Server) learn(p SpawnParams, ok bool) {
	s.outcomes.Record(backOffKey(p.Template, p.Parent), ok)
	s.outcomes.Record("host:"+hostName(), ok)
}

func (s *Server) signAndRecord(ctx context.Context, rec *SpawnRecord, p SpawnParams, tmpl *template.Template, parent *trust.Blessing, serial int, bound string) (string, error) {
	childKEKID := newID("pending_")
	kek, err := s.newKEK(ctx, childKEKID)
	if err != nil {
		return "", err
	}
	pc := parent.Constraints()
	cons := pc
	cons.Quota = requestQuota(&p)
	cons.NotBefore = s.now().Truncate(time.Second)
	cons.MaxChildren = min(pc.MaxChildren, 100)
	req := calproto.BlessRequest{Serial: serial, Permissions: p.Permissions, Constraints: cons, Recipient: kek.Recipient().String()}
	var reply calproto.BlessReply
	if err := s.callCal(ctx, parent.Child(), http.MethodPost, calproto.PathBless, req, &reply); err != nil {
		return "", fmt.Errorf("the parent's SpawnController refused: %w", err)
	}
	chain, err := trust.ParseChain(reply.Chain)
	if err != nil {
		return "", fmt.Errorf("parent returned a bad chain: %w", err)
	}
	leaf := chain.Leaf()
	want, _ := trust.ParsePermissions(p.Permissions)
	if leaf.Parent() != parent.Child() || leaf.Permissions() != want || leaf.Constraints().Quota != cons.Quota {
		return "", errors.New("the parent signed something other than what was asked")
	}
	if leaf.Serial() != serial {
		return "", fmt.Errorf("the parent signed serial %d, not the reserved %d", leaf.Serial(), serial)
	}
	// Verified first under the read lock (the costly part, which fills the
	// verifier's cache), then again, cheaply, under the write lock with the
	// state as it is when the blessing takes its place.
	s.trustMu.RLock()
	_, err = s.net.Verifier().Verify(chain, s.now(), s.state)
	s.trustMu.RUnlock()
	if err != nil {
		return "", fmt.Errorf("the child's chain does not verify: %w", err)
	}
	bj, _ := leaf.MarshalJSON()
	entry := ledger.Entry{Type: ledger.TypeBlessing, Time: s.now(), Subject: leaf.Child().String(), Actor: parent.Child().String(), Data: bj}
	check := func() error {
		if _, err := s.net.Verifier().Verify(chain, s.now(), s.state); err != nil {
			return fmt.Errorf("the child's chain does not verify: %w", err)
		}
		for _, sib := range s.state.Children[parent.Child()] {
			if s.state.Blessings[sib].Serial() == leaf.Serial() {
				return fmt.Errorf("serial %d is already taken by %s", leaf.Serial(), sib)
			}
		}
		return nil
	}
	apply := func() {
		s.state.Blessings[leaf.Child()] = leaf
		s.state.Children[parent.Child()] = append(s.state.Children[parent.Child()], leaf.Child())
		s.chains[leaf.Child()] = chain
	}
	// Nothing is deployed before the blessing is durable. If it never
	// becomes so (the ledger broke), the blessing lives only in memory,
	// names no Cal, and is gone at the next start.
	if _, err := s.commitTrust(ctx, entry, check, apply); err != nil {
		return "", err
	}
	id := leaf.Child().String()
	// Move the pending KEK to the Cal's ID.
	if err := s.renameKEK(ctx, childKEKID, id); err != nil {
		return "", err
	}
	uid, err := s.nextUID(ctx)
	if err != nil {
		return "", err
	}
	if err := s.sandboxFiles(ctx, id, uid, reply.SealedKey, leaf, chain, tmpl); err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	crec := s.newRecord(leaf, p.Name, uid, rec.ID)
	crec.Namespace = s.childNamespace(ctx, parent.Child().String(), p.Name, id)
	crec.RestartPolicy = p.RestartPolicy
	crec.Template = tmpl.Name
	crec.Features = slices.DeleteFunc(crec.Features, func(f string) bool { return slices.Contains(p.Without, f) })
	if err := s.putChild(ctx, crec); err != nil {
		s.releaseNamespace(crec.Namespace, id)
		return "", err
	}
	if len(tmpl.Rules) > 0 {
		s.attachRules(ctx, id, tmpl.Rules, bound)
	}
	return id, nil
}

// finishSpawn records a spawn's end (or its wait for approval) and
// announces it. A state the store refuses is not announced, and the error
// says which; recovery completes a spawn from its Cal's record at the
// next start.
func (s *Server) finishSpawn(ctx context.Context, rec *SpawnRecord, state, reason string) error {
	rec.State, rec.Reason = state, reason
	if state == SpawnRunning && rec.OperationalAt.IsZero() {
		rec.OperationalAt = s.now()
		s.note(rec.Parent, rec.Cal, "spawn", 0)
	}
	if err := s.putSpawn(ctx, rec); err != nil {
		return err
	}
	s.prom.observeSpawn(state, rec.RequestedAt, rec.OperationalAt)
	s.bus.publish(Event{Type: "spawn." + state, Spawn: rec.ID, Cal: rec.Cal, Parent: rec.Parent, State: state, Reason: reason, Actor: rec.Actor})
	return nil
}

// rejectSpawn records a spawn refused at admission; the refusal is the
// answer whether or not the record is stored (a record left requested is
// failed by recovery at the next start), so a store failure is logged.
func (s *Server) rejectSpawn(ctx context.Context, rec *SpawnRecord, aerr *APIError) {
	s.unrecorded(s.finishSpawn(ctx, rec, SpawnRejected, aerr.Msg), "the rejection of a spawn", "spawn", rec.ID, "parent", rec.Parent)
}

// callCal calls a Cal's own API over mutual TLS on its unix socket and
// decodes its JSON answer.
func (s *Server) callCal(ctx context.Context, id identity.ID, method, path string, in, out any) error {
	b, _ := jsonMarshal(in)
	body, err := s.callCalRaw(ctx, id, method, path, b)
	if err != nil {
		return err
	}
	if err := strictjson.Unmarshal(body, maxCalAnswer, out); err != nil {
		return fmt.Errorf("cal %s answered %s: %w", id, path, err)
	}
	return nil
}

// calTransport reaches a Cal's own API: mutual TLS on its unix socket,
// the peer checked to be that Cal twice, by the socket's credentials
// (its uid) and by its certificate. Close its idle connections when done.
func (s *Server) calTransport(id identity.ID) *http.Transport {
	expect := func(p *caltls.Peer) error {
		if p.Cal != id {
			return fmt.Errorf("peer is %s, want %s", p.Cal, id)
		}
		return s.resolveCal(p)
	}
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			sock, err := s.calSocket(id.String(), calproto.APISocket)
			if err != nil {
				return nil, err
			}
			c, err := sock.Dial(ctx)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		TLSClientConfig: caltlsConfig(s, expect),
	}
}

// callCalRaw is callCal without JSON decoding.
func (s *Server) callCalRaw(ctx context.Context, id identity.ID, method, path string, in []byte) ([]byte, error) {
	release, err := s.calGate.acquire(ctx, id.String())
	if err != nil {
		return nil, fmt.Errorf("waiting to call cal %s: %w", id, err)
	}
	defer release()
	tr := s.calTransport(id)
	defer tr.CloseIdleConnections()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, method, "https://cal"+path, strings.NewReader(string(in)))
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCalAnswer))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if strictjson.Unmarshal(body, maxCalAnswer, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return nil, &calError{Status: resp.StatusCode, Msg: e.Error}
	}
	return body, nil
}

func caltlsConfig(s *Server, resolve caltls.Resolver) *tlsConfig {
	return caltls.Config(s.certs, resolve, false)
}

// calError is an error answer of a Cal's own API.
type calError struct {
	Status int
	Msg    string
}

func (e *calError) Error() string { return e.Msg }

// relayErr turns a Cal's answer into the API's error: its 4xx status and
// message pass through; anything else is a 502.
func relayErr(id string, err error) *APIError {
	var ce *calError
	if errors.As(err, &ce) && ce.Status/100 == 4 {
		return apiErr(ce.Status, "cal %s: %s", id, ce.Msg)
	}
	return apiErr(502, "cal %s: %v", id, err)
}

// backOffKey keys a template's deploy outcomes by the template as resolved
// (an inline one is inline:NAME, apart from a stored one) and the parent.
func backOffKey(template, parent string) string {
	return "template:" + template + "@" + parent
}
