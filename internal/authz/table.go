package authz

import (
	"sort"

	"github.com/soulfra/calnet/internal/calproto"
)

// Who a route admits, by role.
var (
	// anyone: no credential needed (static documents, the dashboard's
	// files, the gateway and router by design).
	anyone = []Kind{Anonymous, Root, Admin, Developer}
	// signedIn: any valid operator or developer credential.
	signedIn = []Kind{Root, Admin, Developer}
	// admins: the root or a named administrator.
	admins = []Kind{Root, Admin}
	// rootOnly: admin.token alone.
	rootOnly = []Kind{Root}
	// cals: a Cal over mutual TLS.
	cals = []Kind{Cal}
	// workload: inside the Cal's sandbox.
	workload = []Kind{Workload}
	// controlPlane: the control plane over mutual TLS.
	controlPlane = []Kind{ControlPlane}
	// public: whoever reaches the Infinity Router or a gateway.
	public = []Kind{Anonymous}
)

// table is the authorization table: surface, then route pattern (as
// registered with net/http, or a console command), then its rule.
var table = map[Surface]map[string]Rule{
	Operator: {
		"GET /":                  {Who: anyone, Scope: None, Note: "the dashboard's static files; it signs in with a credential"},
		"GET /docs":              {Who: anyone, Scope: None},
		"GET /healthz":           {Who: anyone, Scope: None, Note: "whether the control plane serves; says nothing of the Cals"},
		"GET /metrics":           {Who: admins, Scope: None, Note: "Prometheus metrics of the whole network"},
		"GET /v1/openapi.json":   {Who: anyone, Scope: None},
		"GET /ledger/checkpoint": {Who: anyone, Scope: None, Note: "the ledger's signed checkpoint with its witnesses' cosignatures (C2SP tlog-tiles); rate-limited per address"},
		"GET /ledger/tile/":      {Who: anyone, Scope: None, Note: "the ledger's hash tiles and entry bundles (C2SP tlog-tiles): every entry is public; rate-limited per address"},
		"GET /v1/authz":          {Who: signedIn, Scope: None, Note: "this table, as the running server registered it"},
		"GET /v1/whoami":         {Who: signedIn, Scope: None},
		"GET /v1/status":         {Who: signedIn, Scope: Filtered, Note: "a token's counts are of its subtree"},
		"POST /v1/verify":        {Who: signedIn, Scope: None, Note: "verifies a pasted chain; reveals only whether it is valid now"},
		"GET /v1/spiffe/bundle":  {Who: anyone, Scope: None, Note: "the network's SPIFFE trust bundle: public keys, as a bundle endpoint serves them"},
		"POST /v1/spiffe/verify": {Who: signedIn, Scope: None, Note: "verifies an X.509-SVID against the bundle and the revocations; reveals only whether it is valid now and why not"},

		"GET /v1/cals":                             {Who: signedIn, Perm: "read", Scope: Filtered},
		"GET /v1/cals/{id}":                        {Who: signedIn, Perm: "read", Scope: Path},
		"POST /v1/cals":                            {Who: signedIn, Perm: "spawn", Scope: Body, Note: "authorizeSpawn (authorize.go) on the expanded request: parent in the subtree, permissions within the token's, isolation lowered by administrators only"},
		"POST /v1/cals/{id}/revoke":                {Who: signedIn, Perm: "revoke", Scope: Below, Note: "revoke policies may hold it for approval"},
		"POST /v1/cals/{id}/restart":               {Who: signedIn, Perm: "spawn", Scope: Path, Note: "runs the Cal again: a failed or stopped one with a fresh restart budget, a running one as a new process; never a revoked one"},
		"GET /v1/cals/{id}/logs":                   {Who: signedIn, Perm: "read", Scope: Path},
		"GET /v1/cals/{id}/matrix":                 {Who: signedIn, Perm: "read", Scope: Path},
		"PUT /v1/cals/{id}/matrix":                 {Who: admins, Scope: Path},
		"GET /v1/cals/{id}/metrics":                {Who: signedIn, Perm: "read", Scope: Path},
		"GET /v1/cals/{id}/card":                   {Who: signedIn, Perm: "read", Scope: Path},
		"GET /v1/cals/{id}/health":                 {Who: signedIn, Perm: "read", Scope: Path},
		"GET /v1/cals/{id}/series":                 {Who: signedIn, Perm: "read", Scope: Path, Note: `id "host" (the host's series) for administrators`},
		"GET /v1/cals/{id}/rules":                  {Who: signedIn, Perm: "read", Scope: Path},
		"PUT /v1/cals/{id}/rules":                  {Who: signedIn, Perm: "spawn", Scope: Path, Note: "a retire rule needs revoke as well; the rules act within what both their author and the Cal may do (checked when set and when they fire)"},
		"POST /v1/cals/{id}/rules/preview":         {Who: signedIn, Perm: "read", Scope: Path},
		"GET /v1/cals/{id}/console":                {Who: admins, Scope: Path, Note: "the console acts with the Cal's powers"},
		"GET /v1/cals/{id}/pprof/{profile}":        {Who: admins, Scope: Path},
		"GET /v1/cals/{id}/chain":                  {Who: signedIn, Perm: "read", Scope: Path},
		"GET /v1/cals/{id}/reflections":            {Who: signedIn, Perm: "read", Scope: Path},
		"POST /v1/cals/{id}/reflections":           {Who: signedIn, Perm: "share", Scope: Path, Note: "writing into a Cal's reflection log needs share, as sharing into one does"},
		"POST /v1/cals/{id}/reflections/share":     {Who: signedIn, Perm: "share", Scope: Path, Note: "to: in the subtree as well (handleShare); the Cals must be parent and child, or both hold talk"},
		"GET /v1/cals/{id}/recommendations":        {Who: signedIn, Perm: "read", Scope: Path},
		"GET /v1/logs":                             {Who: signedIn, Perm: "read", Scope: Filtered},
		"GET /v1/traffic":                          {Who: signedIn, Perm: "read", Scope: Filtered, Note: "a Cal outside the subtree shows as the pseudo-endpoint out-of-scope"},
		"GET /v1/heat":                             {Who: signedIn, Perm: "read", Scope: Filtered},
		"GET /v1/events":                           {Who: signedIn, Perm: "read", Scope: Filtered, Note: "a token receives the events of its subtree's Cals"},
		"GET /v1/spawns":                           {Who: signedIn, Perm: "read", Scope: Filtered},
		"GET /v1/spawns/{id}":                      {Who: signedIn, Perm: "read", Scope: Filtered},
		"GET /v1/templates":                        {Who: signedIn, Perm: "read", Scope: None},
		"GET /v1/templates/{name}":                 {Who: signedIn, Perm: "read", Scope: None},
		"GET /v1/templates/{name}/recommendations": {Who: signedIn, Perm: "read", Scope: Filtered, Note: "from the template's Cals in the subtree"},
		"POST /v1/sim":                             {Who: signedIn, Perm: "read", Scope: None},
		"GET /v1/policies":                         {Who: signedIn, Perm: "read", Scope: None},
		"PUT /v1/policies":                         {Who: admins, Scope: None, Note: "a named administrator's change, while a require_approval policy is in force, is held for the quorum of the strictest one"},
		"GET /v1/limits":                           {Who: signedIn, Perm: "read", Scope: None},
		"PUT /v1/limits":                           {Who: admins, Scope: None},
		"GET /v1/audit":                            {Who: admins, Scope: None, Note: "the audit trail names every Cal and actor of the network; a token scoped to a subtree must not read it"},
		"POST /v1/spawning":                        {Who: admins, Scope: None, Note: "the kill switch"},
		"GET /v1/approvals":                        {Who: signedIn, Scope: Filtered, Note: "a token sees the requests it made"},
		"GET /v1/approvals/{id}":                   {Who: signedIn, Scope: Filtered, Note: "a token sees the requests it made"},
		"POST /v1/approvals/{id}/approve":          {Who: admins, Scope: None, Note: "not by the administrator who made the request"},
		"POST /v1/approvals/{id}/reject":           {Who: admins, Scope: None, Note: "not by the administrator who made the request"},
		"POST /v1/tokens":                          {Who: admins, Scope: None},
		"GET /v1/tokens":                           {Who: admins, Scope: None},
		"DELETE /v1/tokens/{id}":                   {Who: admins, Scope: None},
		"GET /v1/admins":                           {Who: admins, Scope: None},
		"POST /v1/admins":                          {Who: rootOnly, Scope: None},
		"DELETE /v1/admins/{name}":                 {Who: rootOnly, Scope: None},
		"GET /v1/debug/pprof/{profile}":            {Who: admins, Scope: None},
		"POST /v1/shutdown":                        {Who: admins, Scope: None},
		"POST /v1/snapshot":                        {Who: rootOnly, Scope: None, Note: "a snapshot holds admin.token and the genesis key, which a named administrator does not have"},
	},
	CalAPI: {
		"POST " + calproto.PathChallenge:    {Who: cals, Scope: Self},
		"POST " + calproto.PathRegister:     {Who: cals, Scope: Self, Note: "proofs of possession of the identity key"},
		"POST " + calproto.PathSVID:         {Who: cals, Scope: Self, Note: "an X.509-SVID for the Cal's identity key (the handshake proved it) or its workload's CSR; none for a revoked Cal"},
		"POST " + calproto.PathGauges:       {Who: cals, Scope: Self},
		"POST " + calproto.PathStatus:       {Who: cals, Scope: Self},
		"GET " + calproto.PathWatch:         {Who: cals, Scope: Self},
		"POST " + calproto.PathSpawnRequest: {Who: cals, Perm: "spawn", Scope: Self, Note: "authorizeSpawn and the blessing the Cal signs"},
		"GET " + calproto.PathChildren:      {Who: cals, Perm: "read", Scope: Self},
		"POST " + calproto.PathRevoke:       {Who: cals, Perm: "revoke", Scope: Body, Note: "a revocation the Cal signed, of one of its descendants (trust.Revocations.Check)"},
	},
	Local: {
		"GET /v1/self":             {Who: workload, Scope: Self},
		"POST /v1/children":        {Who: workload, Perm: "spawn", Scope: Self},
		"GET /v1/children":         {Who: workload, Perm: "read", Scope: Self},
		"DELETE /v1/children/{id}": {Who: workload, Perm: "revoke", Scope: Body, Note: "the control plane checks the Cal's revocation"},
		"GET /v1/reflections":      {Who: workload, Scope: Self},
		"POST /v1/reflections":     {Who: workload, Scope: Self},
		"POST /v1/metrics":         {Who: workload, Scope: Self},
	},
	CalServe: {
		"GET " + calproto.PathSelf:              {Who: controlPlane, Scope: Self},
		"GET " + calproto.PathHealth:            {Who: controlPlane, Scope: Self},
		"GET /metrics":                          {Who: controlPlane, Scope: Self},
		"POST " + calproto.PathBless:            {Who: controlPlane, Scope: Self, Note: "trust.Issue refuses what the Cal may not grant"},
		"GET " + calproto.PathTiers:             {Who: controlPlane, Scope: Self},
		"GET " + calproto.PathReflections:       {Who: controlPlane, Scope: Self},
		"POST " + calproto.PathReflections:      {Who: controlPlane, Scope: Self},
		"POST " + calproto.PathShare:            {Who: controlPlane, Scope: Self},
		"POST " + calproto.PathInbox:            {Who: controlPlane, Scope: Self, Note: "the sharer's chain is verified"},
		"POST " + calproto.PathSignRevocation:   {Who: controlPlane, Scope: Self, Note: "a retirement by one of the Cal's rules, or a revocation by a developer token bound to the Cal: the Cal's own revocation, applied only if the Cal holds revoke and is an ancestor of the target"},
		"GET " + calproto.PathPprof + "profile": {Who: controlPlane, Scope: Self},
		"GET " + calproto.PathPprof + "{name}":  {Who: controlPlane, Scope: Self},
	},
	Gateway: {
		"GET /{$}":     {Who: public, Scope: Self, Note: "the Cal's address card"},
		"GET /healthz": {Who: public, Scope: Self},
		"/":            {Who: public, Scope: Self, Note: "404: workload routes come with the template"},
	},
	Router: {
		"/": {Who: public, Scope: None, Note: "to the gateway socket of the namespace's Cal, nothing else"},
	},
	Ledger: {
		"GET /ledger/checkpoint": {Who: public, Scope: None, Note: "as on the operator surface"},
		"GET /ledger/tile/":      {Who: public, Scope: None, Note: "as on the operator surface"},
	},
	Witness: {
		"GET /checkpoint":      {Who: public, Scope: None, Note: "the latest checkpoint the witness cosigned"},
		"POST /add-checkpoint": {Who: public, Scope: None, Note: "C2SP tlog-witness: anyone may submit; only a checkpoint signed by the log key and proven consistent with the last one cosigned is cosigned"},
	},
	Console: {
		"help":        {Who: workload, Scope: Self},
		"exit":        {Who: workload, Scope: Self},
		"status":      {Who: workload, Scope: Self},
		"tiers":       {Who: workload, Scope: Self},
		"logs":        {Who: workload, Scope: Self},
		"reflect":     {Who: workload, Scope: Self},
		"reflections": {Who: workload, Scope: Self},
		"spawn":       {Who: workload, Perm: "spawn", Scope: Self},
		"children":    {Who: workload, Perm: "read", Scope: Self},
	},
}

// Lookup returns the rule of a route.
func Lookup(s Surface, pattern string) (Rule, bool) {
	r, ok := table[s][pattern]
	return r, ok
}

// Entry is one row of the table.
type Entry struct {
	Surface Surface `json:"surface"`
	Pattern string  `json:"route"`
	Who     []Kind  `json:"who"`
	Perm    string  `json:"permission,omitempty"`
	Scope   Scope   `json:"scope"`
	Note    string  `json:"note,omitempty"`
}

// Routes lists the table's routes of one surface, sorted by pattern.
func Routes(s Surface) []Entry {
	var out []Entry
	for p, r := range table[s] {
		out = append(out, entry(s, p, r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pattern < out[j].Pattern })
	return out
}

func entry(s Surface, p string, r Rule) Entry {
	return Entry{Surface: s, Pattern: p, Who: r.Who, Perm: r.Perm, Scope: r.Scope, Note: r.Note}
}
