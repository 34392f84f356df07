// Package api holds the wire types of calnet's REST and WebSocket API,
// shared by the control plane that serves them and the Go SDK (package
// client) that consumes them, so the two cannot drift apart. The OpenAPI
// document at /v1/openapi.json describes the same shapes.
package api

import (
	"encoding/json"
	"time"

	"github.com/soulfra/calnet/rules"
)

// Cal is a Cal in the registry.
type Cal struct {
	ID            string          `json:"id"`
	Name          string          `json:"name,omitempty"`
	Parent        string          `json:"parent"`
	Depth         int             `json:"depth"`
	Permissions   []string        `json:"permissions"`
	Quota         Quota           `json:"quota"`
	State         string          `json:"state"`
	Healthy       bool            `json:"healthy"`
	Children      []string        `json:"children"`
	UID           int             `json:"uid"`
	PID           int             `json:"pid,omitempty"`
	Features      []string        `json:"features"`
	RestartPolicy string          `json:"restart_policy"`
	Restarts      int             `json:"restarts"`
	LastError     string          `json:"last_error,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	Spawn         string          `json:"spawn,omitempty"`
	Isolation     map[string]bool `json:"isolation,omitempty"`
	ActivatedAt   time.Time       `json:"activated_at,omitzero"`
	Namespace     string          `json:"namespace"`
	Template      string          `json:"template,omitempty"`
	// PermissionUse counts the uses of its permissions the control plane
	// has seen (spawn, revoke, read, share, talk); least privilege is
	// learned from it.
	PermissionUse map[string]int64 `json:"permission_use,omitempty"`
	Degraded      string           `json:"degraded,omitempty"`
	Tiers         []Tier           `json:"tiers,omitempty"`
}

// Tier is one tier of a Cal's platform.
type Tier struct {
	Tier       int         `json:"tier"`
	State      string      `json:"state"`
	Components []Component `json:"components"`
}

// Component is one component of a tier.
type Component struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	State    string `json:"state"`
	Restarts int    `json:"restarts,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Note     string `json:"note,omitempty"`
	Error    string `json:"error,omitempty"`
}

// TemplateInfo describes an available template.
type TemplateInfo struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Source      string `json:"source"`
	Error       string `json:"error,omitempty"`
}

// Quota is a Cal's resource share.
type Quota struct {
	CPUMillis   int64 `json:"cpu_millis"`
	MemoryBytes int64 `json:"memory_bytes"`
	PIDs        int64 `json:"pids"`
	// DiskBytes bounds what the Cal stores in its private directory
	// (/data); a blessing issued before disk quotas reads as 2^50.
	DiskBytes int64 `json:"disk_bytes"`
}

// SpawnRequest asks for a child of Parent (default: the Master Cal).
type SpawnRequest struct {
	Parent      string   `json:"parent,omitempty"`
	Name        string   `json:"name,omitempty"`
	Permissions []string `json:"permissions"`
	// CPUMillis, MemoryBytes and PIDs are the Cal's limits (its cgroups
	// cap it there), each at most the parent's and at least what a Cal can
	// start in (10m, 16 MiB, 16). Zero: the template's, else the default
	// (250m, 64 MiB, 256) capped at the parent's. Admission reserves a
	// fraction of each from every ancestor's limit (docs/guide.md, Quotas).
	CPUMillis   int64 `json:"cpu_millis,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	PIDs        int64 `json:"pids,omitempty"`
	// DiskBytes is what the Cal may store in its directory (/data): at
	// least 16 MiB; zero: the template's, else 64 MiB capped at the
	// parent's. Not summed (the Cal filesystem bounds all Cals together).
	DiskBytes      int64  `json:"disk_bytes,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// RestartPolicy is always (default), on-failure or never.
	RestartPolicy string `json:"restart_policy,omitempty"`
	// Without lowers the Cal's isolation explicitly (admin only).
	Without []string `json:"without,omitempty"`
	// Template names a template; TemplateYAML gives one inline instead.
	Template     string `json:"template,omitempty"`
	TemplateYAML string `json:"template_yaml,omitempty"`
	// LeastPrivilege cuts Permissions to what the Cals of the same
	// template have been seen to use (and keeps what cannot be observed);
	// the spawn record says what was cut and why.
	LeastPrivilege bool `json:"least_privilege,omitempty"`
}

// Spawn is a spawn request's record.
type Spawn struct {
	ID             string   `json:"id"`
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
	Parent         string   `json:"parent"`
	Name           string   `json:"name,omitempty"`
	Permissions    []string `json:"permissions"`
	CPUMillis      int64    `json:"cpu_millis"`
	MemoryBytes    int64    `json:"memory_bytes"`
	DiskBytes      int64    `json:"disk_bytes,omitempty"`
	State          string   `json:"state"`
	Reason         string   `json:"reason,omitempty"`
	Cal            string   `json:"cal,omitempty"`
	Actor          string   `json:"actor"`
	Attempts       int      `json:"attempts"`
	// Placement says where the Cal runs and why (scores of the candidate
	// hosts: free resources, spread across zones, affinity to the parent).
	Placement string `json:"placement,omitempty"`
	// Approval is the approval request a require_approval policy opened
	// for this spawn (state awaiting_approval until it is resolved).
	Approval string `json:"approval,omitempty"`
	// Privilege says how least privilege cut the permissions asked.
	Privilege     string    `json:"privilege,omitempty"`
	Template      string    `json:"template,omitempty"`
	RequestedAt   time.Time `json:"requested_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	OperationalAt time.Time `json:"operational_at,omitzero"`
}

// Status summarises the network.
type Status struct {
	Network string `json:"network"`
	Master  string `json:"master"`
	// MasterState is the Master Cal's state; when it is failed,
	// MasterError says why and `calnet restart` runs it again.
	MasterState string         `json:"master_state,omitempty"`
	MasterError string         `json:"master_error,omitempty"`
	Cals        map[string]int `json:"cals"`
	Paused      bool           `json:"spawning_paused"`
	LedgerSize  uint64         `json:"ledger_size"`
	Driver      string         `json:"driver"`
	Isolation   []string       `json:"isolation"`
}

// Revoked is the answer to a revocation.
type Revoked struct {
	Revoked string   `json:"revoked"`
	Subtree []string `json:"subtree"`
	// Approval is set instead (HTTP 202, Revoked empty) when a policy holds
	// the revocation for administrators to approve.
	Approval *Approval `json:"approval,omitempty"`
}

// WhoAmI is GET /v1/whoami: who the credential is, so that a client (the
// dashboard) offers only what it may do.
type WhoAmI struct {
	Actor string `json:"actor"` // as in events: admin, admin:<name>, token:<id>
	Admin bool   `json:"admin"`
	Root  bool   `json:"root,omitempty"`
	Name  string `json:"name,omitempty"` // the administrator's name
	Token *Token `json:"token,omitempty"`
}

// LogEntry is one line of a Cal's log.
type LogEntry struct {
	Cal   string    `json:"cal"`
	Name  string    `json:"name,omitempty"`
	Time  time.Time `json:"time,omitzero"`
	Level string    `json:"level,omitempty"`
	Text  string    `json:"text"`
}

// LogPage is GET /v1/logs: the matching lines of every Cal in scope,
// oldest first, and a cursor that returns only newer lines (follow).
type LogPage struct {
	Entries   []LogEntry `json:"entries"`
	Truncated int        `json:"truncated,omitempty"` // older matching lines left out
	Cursor    string     `json:"cursor"`
}

// TrafficPair is the traffic from one endpoint (a Cal, or outside,
// operator, authority) to a Cal, of one kind (http, spawn, share, revoke,
// retire, console, profile).
type TrafficPair struct {
	From     string    `json:"from"`
	FromName string    `json:"from_name,omitempty"`
	To       string    `json:"to"`
	ToName   string    `json:"to_name,omitempty"`
	Kind     string    `json:"kind"`
	Count    int64     `json:"count"`
	Bytes    int64     `json:"bytes,omitempty"`
	Last     time.Time `json:"last"`
}

// Traffic is GET /v1/traffic, busiest pairs first.
type Traffic struct {
	Pairs []TrafficPair `json:"pairs"`
}

// PermissionMatrix is GET /v1/cals/{id}/matrix: every live Cal of a
// subtree, the permissions it holds (fixed by its blessing), how often it
// used each, and what it may grant to new children.
type PermissionMatrix struct {
	Root        string      `json:"root"`
	Permissions []string    `json:"permissions"` // the vocabulary, the matrix's columns
	Rows        []MatrixRow `json:"rows"`
}

// MatrixRow is one Cal of the matrix.
type MatrixRow struct {
	Cal    string           `json:"cal"`
	Name   string           `json:"name,omitempty"`
	Parent string           `json:"parent"`
	Depth  int              `json:"depth"`
	Held   []string         `json:"held"`
	Used   map[string]int64 `json:"used"`
	// Grantable is what the Cal may grant to new children; absent (null):
	// whatever it holds.
	Grantable []string `json:"grantable"`
}

// MatrixUpdate is PUT /v1/cals/{id}/matrix: rows to change; a row with
// grantable null lifts the Cal's limit.
type MatrixUpdate struct {
	Rows []MatrixChange `json:"rows"`
}

// MatrixChange sets what one Cal may grant.
type MatrixChange struct {
	Cal       string   `json:"cal"`
	Grantable []string `json:"grantable"`
}

// SimQuality is decision quality against the oracle.
type SimQuality struct {
	Decisions int64 `json:"decisions"`
	// OptimalPercent is the share of decisions that left the pool within
	// the oracle's band; Short and Over count the others.
	OptimalPercent float64 `json:"optimal_percent"`
	Short          int64   `json:"short"`
	Over           int64   `json:"over"`
	// CalHours are the running children's hours; OracleCalHours the
	// oracle's; OverOraclePercent how many more the rules used.
	CalHours          float64 `json:"cal_hours"`
	OracleCalHours    float64 `json:"oracle_cal_hours"`
	OverOraclePercent float64 `json:"over_oracle_percent"`
	// UnderCapacityPercent is the share of pool-time in which the running
	// children could not serve the load.
	UnderCapacityPercent float64 `json:"under_capacity_percent"`
	Oscillations         int     `json:"oscillations"`
	LimitHits            int     `json:"limit_hits"`
	Spawns               int     `json:"spawns"`
	Retires              int     `json:"retires"`
	DeployFailures       int     `json:"deploy_failures"`
	Lost                 int     `json:"lost"` // children lost to breakage and the host outage
}

// SimRuleStats are one rule's evaluations over the run.
type SimRuleStats struct {
	Rule        string `json:"rule"`
	Evaluations int64  `json:"evaluations"`
	Fired       int64  `json:"fired"`
	Suppressed  int64  `json:"suppressed"`
	Disabled    int64  `json:"disabled,omitempty"` // evaluations while disabled
	Error       string `json:"error,omitempty"`    // the first pool's reason
}

// SimReport is a simulation's outcome (calnet sim, POST /v1/sim).
type SimReport struct {
	Pools          int                   `json:"pools"`
	Duration       string                `json:"duration"`
	Tick           string                `json:"tick"`
	Seed           uint64                `json:"seed"`
	Hosts          int                   `json:"hosts"`
	Zones          int                   `json:"zones"`
	Ticks          int                   `json:"ticks"`
	CalsSimulated  int                   `json:"cals_simulated"` // every Cal that existed: parents and children
	PeakCals       int                   `json:"peak_cals"`      // most alive at once
	RuleEvals      int64                 `json:"rule_evaluations"`
	WallSeconds    float64               `json:"wall_seconds"`
	Total          SimQuality            `json:"total"`
	Workloads      map[string]SimQuality `json:"workloads"`
	Rules          []SimRuleStats        `json:"rules"`
	LimitHits      map[string]int        `json:"limit_hits"`
	ChildrenByZone map[string]int        `json:"children_by_zone"` // at the end
}

// SimRequest is POST /v1/sim: a rule set simulated on synthetic
// workloads before it is enabled (bounded: the control plane runs it).
type SimRequest struct {
	Rules     []rules.Rule `json:"rules"`
	Workloads []string     `json:"workloads,omitempty"` // default: every shape
	Pools     int          `json:"pools,omitempty"`     // default 10, at most 50
	Duration  string       `json:"duration,omitempty"`  // default 24h, at most 24h
	Seed      uint64       `json:"seed,omitempty"`
}

// Admin is a named administrator. The admin credential written by calnet
// up is the administrator "admin"; others are added with calnet admin add
// and approve requests under their own names.
type Admin struct {
	Name      string    `json:"name"`
	Root      bool      `json:"root,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Approval states.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
	ApprovalExpired  = "expired"
)

// Approval is a request held by a require_approval policy until Required
// distinct administrators (not the requester) approve it, or one rejects
// it, or it expires.
type Approval struct {
	ID        string `json:"id"`
	Operation string `json:"operation"` // spawn, revoke or policies
	// Cal is the parent (spawn) or the Cal to revoke.
	Cal     string        `json:"cal"`
	Spawn   string        `json:"spawn,omitempty"`   // the waiting spawn record
	Request *SpawnRequest `json:"request,omitempty"` // spawn: what was asked
	// Reason is the revocation's reason; SubtreeCals how many Cals it stops.
	Reason string `json:"reason,omitempty"`
	// Revocation is the revocation a Cal signed and submitted, carried out
	// as signed once approved (absent: the network authority signs).
	Revocation  json.RawMessage `json:"revocation,omitempty"`
	SubtreeCals int             `json:"subtree_cals,omitempty"`
	// Policies is the policy set a named administrator asked for
	// (operation policies), set once approved.
	Policies *PoliciesDoc `json:"policies,omitempty"`
	Actor    string       `json:"actor"`
	// Behind is the named administrator behind a request another
	// principal made: the creator of the token, the author of the rules,
	// or the spawner of the Cal that made it. Like the requester, it may
	// not approve or reject the request.
	Behind    string    `json:"behind,omitempty"`
	Policy    string    `json:"policy"`
	Message   string    `json:"message"`
	Required  int       `json:"required"`
	Approvals []Vote    `json:"approvals"`
	Rejection *Vote     `json:"rejection,omitempty"`
	State     string    `json:"state"`
	Result    string    `json:"result,omitempty"` // what carrying it out gave
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Vote is one administrator's approval or rejection.
type Vote struct {
	Admin   string    `json:"admin"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
}

// Event is one entry of the event stream.
type Event struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Type   string    `json:"type"`
	Cal    string    `json:"cal,omitempty"`
	Parent string    `json:"parent,omitempty"`
	Spawn  string    `json:"spawn,omitempty"`
	State  string    `json:"state,omitempty"`
	Actor  string    `json:"actor,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// MinCredentialLen is the shortest credential (admin.token, a named
// administrator's or a developer token) a server accepts and a client
// sends: an empty or truncated credential file is refused, never taken
// for "no credential".
const MinCredentialLen = 32

// AuthzEntry is one row of the authorization table (GET /v1/authz): a
// route of one surface, who may call it, the permission a developer
// token or Cal must hold, and how its target is bounded by the caller's
// subtree.
type AuthzEntry struct {
	Surface    string   `json:"surface"`
	Route      string   `json:"route"`
	Who        []string `json:"who"`
	Permission string   `json:"permission,omitempty"`
	Scope      string   `json:"scope"`
	Note       string   `json:"note,omitempty"`
}

// Token is a developer token's record (the secret is returned only once).
type Token struct {
	ID          string    `json:"id"`
	Name        string    `json:"name,omitempty"`
	Parent      string    `json:"parent"`
	Permissions []string  `json:"permissions"`
	CreatedAt   time.Time `json:"created_at"`
	// CreatedBy is the administrator who created the token ("admin" for
	// the root, "admin:NAME"): requests the token makes are its, for
	// approvals (absent on tokens created before it was recorded).
	CreatedBy string `json:"created_by,omitempty"`
}

// Reflection is one entry of a Cal's reflection log.
type Reflection struct {
	Seq  uint64          `json:"seq"`
	Time time.Time       `json:"time"`
	Kind string          `json:"kind"`
	Text string          `json:"text"`
	Data json.RawMessage `json:"data,omitempty"`
	Prev string          `json:"prev"`
}

// Card is a Cal's address card: where its namespace is served and the
// fingerprint of its identity keys.
type Card struct {
	Cal         string `json:"cal"`
	Namespace   string `json:"namespace"`
	URL         string `json:"url"`
	Fingerprint string `json:"fingerprint"`
}

// Health is a Cal's health and its recent transitions.
type Health struct {
	Cal      string  `json:"cal"`
	State    string  `json:"state"`
	Healthy  bool    `json:"healthy"`
	Degraded string  `json:"degraded,omitempty"`
	History  []Event `json:"history"`
}

// Terminal reports whether the spawn has ended.
func (s *Spawn) Terminal() bool {
	return s.State == "running" || s.State == "rejected" || s.State == "failed"
}

// RulesDoc is the body of PUT /v1/cals/{id}/rules: the Cal's spawn
// criteria, replacing the ones it had.
type RulesDoc struct {
	Rules []rules.Rule `json:"rules"`
}

// RulesView is GET /v1/cals/{id}/rules: the rules, each one's state, the
// recent decisions (fired, suppressed, disabled) and the variables rules
// may use.
type RulesView struct {
	Rules     []rules.Rule            `json:"rules"`
	State     map[string]*rules.State `json:"state"`
	Decisions []rules.Decision        `json:"decisions"`
	Vars      []rules.Var             `json:"vars"`
}

// RulePreviewRequest is the body of POST /v1/cals/{id}/rules/preview.
type RulePreviewRequest struct {
	Rule  rules.Rule `json:"rule"`
	Since time.Time  `json:"since,omitzero"` // default: 15 minutes ago
}

// RulePreview is how a rule would have behaved over a Cal's recorded
// metrics: outcomes per sample, and the firings and suppressions.
type RulePreview struct {
	Samples   int              `json:"samples"`
	Counts    map[string]int   `json:"counts"`
	Decisions []rules.Decision `json:"decisions"`
}

// PoliciesDoc is the body of PUT /v1/policies: the network's admission
// policies, replacing the ones it had.
type PoliciesDoc struct {
	Policies []rules.Policy `json:"policies"`
}

// PoliciesView is GET /v1/policies: the policies and the variables they
// may use.
type PoliciesView struct {
	Policies []rules.Policy `json:"policies"`
	Vars     []rules.Var    `json:"vars"`
}

// Recommendation is a quota recommendation for one resource of a Cal,
// from its observed usage: a high percentile plus headroom, and a flag
// when the quota is far from it.
type Recommendation struct {
	Resource    string  `json:"resource"` // cpu_millis, memory_bytes
	Samples     int     `json:"samples"`
	Observed    float64 `json:"observed_p95"` // in the resource's unit
	Quota       int64   `json:"quota"`
	Recommended int64   `json:"recommended,omitempty"`
	Flag        string  `json:"flag,omitempty"` // over-provisioned, under-provisioned
	Reason      string  `json:"reason"`
}

// Recommendations is GET /v1/cals/{id}/recommendations.
type Recommendations struct {
	Cal         string                    `json:"cal"`
	Window      string                    `json:"window"`
	Resources   []Recommendation          `json:"resources"`
	Permissions *PermissionRecommendation `json:"permissions,omitempty"`
}

// PermissionRecommendation is least privilege learned from use: the
// permissions held, those seen used, and what a new Cal doing the same
// work needs.
type PermissionRecommendation struct {
	Held   []string `json:"held"`
	Used   []string `json:"used"`
	Unused []string `json:"unused"`
	// NotObservable are held permissions whose use the control plane
	// cannot see (admin); they are kept.
	NotObservable []string `json:"not_observable,omitempty"`
	Recommended   []string `json:"recommended"`
	Observed      string   `json:"observed"` // how long, over how many Cals
	Reason        string   `json:"reason"`
}

// TemplateRecommendations is GET /v1/templates/{name}/recommendations:
// what the Cals spawned from a template used and how their spawns went
// (FR-5.1, FR-5.4, FR-5.5).
type TemplateRecommendations struct {
	Template    string                    `json:"template"`
	Cals        int                       `json:"cals"` // live Cals of the template observed
	Resources   []Recommendation          `json:"resources"`
	Permissions *PermissionRecommendation `json:"permissions,omitempty"`
	Outcomes    TemplateOutcomes          `json:"outcomes"`
}

// TemplateOutcomes are a template's spawn outcomes.
type TemplateOutcomes struct {
	Spawns   int `json:"spawns"`
	Running  int `json:"running"`
	Failed   int `json:"failed"`
	Rejected int `json:"rejected"`
	// Time to operational of the spawns that got there, milliseconds.
	OperationalP50 float64  `json:"operational_p50_ms,omitempty"`
	OperationalP95 float64  `json:"operational_p95_ms,omitempty"`
	LastFailures   []string `json:"last_failures,omitempty"`
	// DeployTimeout is how long the control plane now waits for a Cal of
	// this template to register (learned: 4x the p95, at least the base).
	DeployTimeout string `json:"deploy_timeout"`
	BackedOff     string `json:"backed_off_until,omitempty"`
}

// AuditRecord is one line of the audit trail: an event with its place in
// the hash chain (internal/auditlog describes the hashing).
type AuditRecord struct {
	Event
	// Dropped, on a record of type audit.dropped, is the first and last
	// sequence number of events that were published but not written (the
	// disk was below the control plane's reserve).
	Dropped []uint64 `json:"dropped,omitempty"`
	// Prev is the hash of the record before it.
	Prev string `json:"prev"`
	// Hash is this record's hash; it is always the last field.
	Hash string `json:"hash"`
}

// AuditPage is a page of GET /v1/audit, oldest first.
type AuditPage struct {
	Records []AuditRecord `json:"records"`
	// More is set when more records match beyond this page: before its
	// first record (a page without after), or after its last (with after).
	More bool `json:"more"`
	// HeadSeq is the sequence number of the newest record in the trail.
	HeadSeq uint64 `json:"head_seq"`
}

// SnapshotRequest is the body of POST /v1/snapshot: the hybrid
// post-quantum age recipients (age1pq1...) the snapshot is encrypted to.
type SnapshotRequest struct {
	Recipients []string `json:"recipients"`
}

// SVIDVerdict is the answer of POST /v1/spiffe/verify: whether an
// X.509-SVID verifies now against the network's bundle and revocations,
// and if not, why (Reason: malformed, expired, not-yet-valid,
// wrong-trust-domain, unknown-authority, revoked).
type SVIDVerdict struct {
	Valid    bool   `json:"valid"`
	SPIFFEID string `json:"spiffe_id,omitempty"`
	Cal      string `json:"cal,omitempty"`
	Workload bool   `json:"workload,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Error    string `json:"error,omitempty"`
}
