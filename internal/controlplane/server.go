// Package controlplane is calnet's control plane: the registry of Cals, the
// spawn pipeline with its admission checks and limits, the supervisor that
// runs Cals through a driver and heals them, revocation enforcement, the
// REST and WebSocket API for operators and developers, and the mutual-TLS
// API the Cals themselves call.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/auditlog"
	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/caldir"
	"github.com/soulfra/calnet/internal/calfs"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/connlimit"
	"github.com/soulfra/calnet/internal/discovery"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/hostuid"
	"github.com/soulfra/calnet/internal/metrics"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/placement"
	"github.com/soulfra/calnet/internal/sandbox"
	"github.com/soulfra/calnet/internal/seal"
	"github.com/soulfra/calnet/internal/securedir"
	"github.com/soulfra/calnet/internal/spiffeca"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/ledger/tiles"
	"github.com/soulfra/calnet/rules"
	"github.com/soulfra/calnet/trust"
)

// Limits bound spawning (PRD risk 1: runaway spawning).
type Limits struct {
	// MaxCals is the most Cals the network may hold (not revoked).
	MaxCals int
	// SpawnRate and SpawnBurst are the network-wide token bucket.
	SpawnRate  float64
	SpawnBurst int
	// ParentRate and ParentBurst are each parent's token bucket.
	ParentRate  float64
	ParentBurst int
	// MinFreeMemory is the host memory that must stay available beyond a
	// new Cal's quota.
	MinFreeMemory int64
	// MinFreeDisk is the free space the data directory's filesystem keeps:
	// below it the control plane refuses spawns and writes to its ledger,
	// state and audit trail (revocations may use half of it).
	MinFreeDisk int64
	// RestartIntensity restarts within RestartPeriod mark a Cal failed.
	RestartIntensity int
	RestartPeriod    time.Duration
	// MaxCPUPressure refuses spawns while tasks have waited for CPU more
	// than this percentage of the last 10 s (Linux PSI); above 100 the
	// check is off.
	MaxCPUPressure float64
	// Overcommit is each resource's overcommit factor: a Cal requests
	// 1/factor of its limits, and a subtree's requests fit in its root's
	// limits. Zero fields take the defaults of quotaDims.
	Overcommit trust.Quota
}

// DefaultLimits suit one host.
var DefaultLimits = Limits{
	MaxCals: 2000, SpawnRate: 200, SpawnBurst: 200, ParentRate: 100, ParentBurst: 100,
	MinFreeMemory: 128 << 20, MinFreeDisk: 256 << 20, RestartIntensity: 5, RestartPeriod: 30 * time.Second, MaxCPUPressure: 99,
}

// Config configures a Server.
type Config struct {
	DataDir string
	// Snapshots schedules snapshots of the network (off by default).
	Snapshots SnapshotSchedule
	// Addr is the operator API address (default 127.0.0.1:7070).
	Addr string
	// Binary is the calnet executable the Cals run (`calnet cal`).
	Binary   string
	Driver   driver.Driver
	Features []sandbox.Feature
	Limits   Limits
	Logger   *slog.Logger
	Now      func() time.Time
	// RouterAddr is where the Infinity Router listens (default
	// 127.0.0.1:7080).
	RouterAddr string
	// DNSAddr is where the discovery DNS server listens (UDP and TCP);
	// empty turns it off.
	DNSAddr string
	// Domain is the DNS zone of the network (default "calnet.").
	Domain string
	// IdleWindow is how long a child must use under 1% of a core to count
	// as idle for retire rules (default one minute).
	IdleWindow time.Duration
	// ObserveWindow is how long the Cals of a template (or a Cal) must
	// have been observed before least privilege cuts a permission they
	// never used.
	ObserveWindow time.Duration
	// Zone is this host's failure domain, its topology label in placement
	// (default "local").
	Zone string
	// DeployTimeout is the base wait for a new Cal to register (default
	// 15 s); a template whose Cals are slower is given more (learned).
	DeployTimeout time.Duration
	// MasterQuota overrides the Master Cal's quota when the network is
	// created (default: this host's CPUs and memory).
	MasterQuota *trust.Quota
	// UIDs allocates this network's uid blocks host-wide (default: the
	// allocation file in hostuid.DefaultDir).
	UIDs *hostuid.Host
	// AcceptLedgerRollback starts on a ledger older than the state store
	// recorded (anchor.go), accepting that what it lost is gone.
	AcceptLedgerRollback bool
	// Seal protects the network's root sealing key (a passphrase, an HSM
	// key); nil is the file mode (seal.key), which needs no operator.
	Seal seal.Protector
	// Root is the root sealing key, already unsealed (calnet up started
	// sealed and the operator unsealed it); nil unseals with Seal.
	Root *seal.Root
	// CalDiskBytes is the size of the Cal filesystem (package calfs) when
	// it is made, what all Cals together may store (default: a quarter of
	// the data directory's free space, 1 to 64 GiB; sparse).
	CalDiskBytes int64
	// LedgerAddr, if set, serves the ledger as a C2SP tlog-tiles log on
	// its own listener (it is always at /ledger/ on Addr too).
	LedgerAddr string
	// Witnesses cosign each new checkpoint (C2SP tlog-witness); the
	// ledger's /checkpoint carries their cosignatures.
	Witnesses []WitnessEndpoint
	// SVIDTTL is the lifetime of the X.509-SVIDs the network's authority
	// issues (default spiffeca.DefaultTTL); Cals renew them at half.
	SVIDTTL time.Duration
	// BundleAddr is where the SPIFFE bundle endpoint (https_spiffe
	// profile, for federation) listens; empty turns it off.
	BundleAddr string
}

// Server is a running control plane. Create it with Open, run it with Run.
type Server struct {
	cfg   Config
	log   *slog.Logger
	net   *netdir.Network
	store store.Store
	lg    *ledger.Log
	tiles *tiles.Handler // the ledger as tlog-tiles (tlog.go)
	// cosigned is the latest checkpoint with its witnesses' cosignatures
	// (witnesses.go).
	cosigned atomic.Pointer[[]byte]
	// calGate bounds the calls in flight to each Cal (callCalRaw).
	calGate calGate
	auth    *identity.PrivateKey // network authority (genesis) key
	root    *seal.Root           // seals the Cals' key-encryption identities (keks.go)
	certs   *caltls.Source       // the control plane's TLS certificate, renewed as it ages
	ca      *spiffeca.Authority  // the network's X.509 authority (SVIDs)
	token   string
	bus     *bus

	// auditAnchored is the audit trail's sequence number last anchored in
	// the ledger (auditAnchorLoop, then Run at shutdown).
	auditAnchored uint64

	// trustMu orders trust-state changes with their ledger entries (staged
	// under it, made durable outside it); readers (every TLS handshake of a
	// Cal) take it shared.
	trustMu sync.RWMutex
	// snapMu is held while a snapshot is taken (one at a time).
	snapMu  sync.Mutex
	state   *netdir.State
	chains  map[identity.ID]*trust.Chain
	serials map[identity.ID]int // highest child serial reserved per parent

	// book holds admitted spawns' reservations (admission's one decision).
	book book
	// regMu orders registry writes of Cal records with their index
	// updates, so the index (which admission reads) never goes back to an
	// older state of a Cal.
	regMu sync.Mutex

	limMu   sync.Mutex // guards limiter and cfg.Limits' spawn fields
	limiter *limiter
	paused  atomic.Bool

	procMu       sync.Mutex
	shuttingDown bool       // set by stopAll: no Cal starts any more
	restartMu    sync.Mutex // one restart by hand at a time (restart.go)
	procs        map[string]*proc

	challenges challenges
	metrics    metrics.Set
	rules      ruleBook
	outcomes   *placement.Outcomes // deploy outcomes per template and host
	policies   atomic.Pointer[[]*rules.CompiledPolicy]
	policyErr  atomic.Pointer[string]
	approvalMu sync.Mutex    // serialises votes on approval requests
	simSem     chan struct{} // one simulation at a time (simapi.go)
	grantMu    sync.RWMutex
	grants     map[string][]string // what each Cal may grant (matrix.go)
	trafficMu  sync.Mutex
	traffic    trafficBook // the traffic matrix (traffic.go)
	useMu      sync.Mutex
	uses       map[string]map[string]int64 // permission uses per Cal (privilege.go)
	health     healthHistory
	routerAddr string
	ns         nsIndex
	watchers   watchers
	audit      *auditlog.Log
	prom       *promMetrics
	deploySem  chan struct{}
	connBudget *connlimit.Budget // descriptors the listeners may hold (listeners.go)
	streams    streams           // long-lived streams per principal (streams.go)
	anchored   atomic.Uint64     // ledger size last recorded in the state store
	anchorKick chan struct{}
	recovered  chan struct{} // closed when Run has recovered the Cals
	onShutdown func()
	uidHost    *hostuid.Host
	dirs       caldir.Layout // every path of a Cal's directories
	pool       *calfs.Pool   // the Cal filesystem; nil when disk-quota is lowered
	wg         sync.WaitGroup
	ctx        context.Context
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now().UTC()
	}
	return time.Now().UTC()
}

// Paths in the data directory.
func (s *Server) networkDir() string       { return filepath.Join(s.cfg.DataDir, "network") }
func (s *Server) runDir() string           { return filepath.Join(s.cfg.DataDir, "run") }
func (s *Server) programsDir() string      { return filepath.Join(s.cfg.DataDir, "programs") }
func (s *Server) calsDir() string          { return s.dirs.Cals() }
func (s *Server) calsImage() string        { return filepath.Join(s.cfg.DataDir, "cals.img") }
func (s *Server) logPath(id string) string { return filepath.Join(s.logsDir(), id+".log") }

// InstancesDir is where a driver keeps its records of the Cals it runs,
// so that the next control plane on dataDir adopts them (root only; no Cal
// can write there).
func InstancesDir(dataDir string) string { return filepath.Join(dataDir, "instances") }

// TokenFile is where the admin credential is written, 0600.
func TokenFile(dataDir string) string { return filepath.Join(dataDir, "admin.token") }

// Open prepares the control plane on cfg.DataDir: on first run it creates
// the network (genesis, ledger, Master Cal) and the admin credential; on
// later runs it reopens them.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	// Every path handed to a driver is used from another working directory
	// (a Cal starts in "/"), so the data directory must be absolute: the
	// CLI resolves it once, at the edge.
	if !filepath.IsAbs(cfg.DataDir) {
		return nil, fmt.Errorf("data directory %q: must be an absolute path", cfg.DataDir)
	}
	cfg.DataDir = filepath.Clean(cfg.DataDir)
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:7070"
	}
	if cfg.RouterAddr == "" {
		cfg.RouterAddr = "127.0.0.1:7080"
	}
	if cfg.Domain == "" {
		cfg.Domain = "calnet."
	}
	if cfg.Zone == "" {
		cfg.Zone = "local"
	}
	if cfg.DeployTimeout <= 0 {
		cfg.DeployTimeout = deployTimeout
	}
	if cfg.ObserveWindow <= 0 {
		cfg.ObserveWindow = 10 * time.Minute
	}
	if cfg.IdleWindow <= 0 {
		cfg.IdleWindow = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits
	}
	s := &Server{cfg: cfg, log: cfg.Logger, bus: newBus(), procs: map[string]*proc{}, chains: map[identity.ID]*trust.Chain{}, serials: map[identity.ID]int{},
		deploySem: make(chan struct{}, 64), anchorKick: make(chan struct{}, 1), recovered: make(chan struct{})}
	s.uidHost = cfg.UIDs
	if s.uidHost == nil {
		s.uidHost = hostuid.New("")
	}
	s.limiter = newLimiter(cfg.Limits)
	s.outcomes = placement.NewOutcomes(s.now)
	s.simSem = make(chan struct{}, 1)
	s.prom = newPromMetrics(s)
	if err := checkDataDir(cfg.DataDir, s.runDir(), filepath.Join(cfg.DataDir, "logs"), s.programsDir(), s.templatesDir(), s.networkDir(), InstancesDir(cfg.DataDir)); err != nil {
		return nil, err
	}
	s.dirs = caldir.New(cfg.DataDir)
	// The run dir is mounted into every sandbox; Cals connect to its socket.
	for _, d := range []string{s.runDir(), s.programsDir()} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
	}
	// Cals reach the run directory through the data directory: they may
	// pass through it, not list it.
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
	}
	if err := s.openPool(ctx); err != nil {
		return nil, err
	}
	if err := s.dirs.Prepare(); err != nil {
		return nil, err
	}
	// The root credential first: a short one must stop the start before
	// anything is served.
	var err error
	if s.token, err = loadOrCreateToken(TokenFile(cfg.DataDir)); err != nil {
		return nil, err
	}
	first := false
	nopts := netdir.Options{Logger: cfg.Logger, Seal: cfg.Seal, Root: cfg.Root}
	n, err := netdir.Load(s.networkDir(), nopts)
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(s.networkDir(), "network.json")); !errors.Is(statErr, os.ErrNotExist) {
			return nil, err
		}
		mc := masterConstraints(s.now(), s.diskSize())
		if cfg.MasterQuota != nil {
			mc.Quota = *cfg.MasterQuota
		}
		n, err = netdir.Init(ctx, s.networkDir(), netdir.MasterGrant{Constraints: mc}, nopts)
		if err != nil {
			return nil, fmt.Errorf("create network: %w", err)
		}
		first = true
	}
	s.net = n
	// A network made before sealing keeps its key-encryption identity in
	// clear (kek.age): seal it now (nothing is re-encrypted, so nothing can
	// be lost; a crash mid-way is finished on the next start).
	if migrated, err := n.MigrateToSealed(ctx); err != nil {
		return nil, fmt.Errorf("seal the network's keys: %w", err)
	} else if migrated {
		s.log.Info("sealed the network's key-encryption identity (kek.age removed)", "seal", n.SealMode())
	}
	if s.root, err = n.Root(ctx); err != nil {
		return nil, err
	}
	if s.auth, err = n.LoadKey(filepath.Join(s.networkDir(), "genesis")); err != nil {
		return nil, fmt.Errorf("network authority key: %w", err)
	}
	if s.certs, err = caltls.NewSource(s.auth, n.Info.Network, caltls.ControlPlanePath, nil, 30*24*time.Hour, s.now); err != nil {
		return nil, err
	}
	if s.ca, err = spiffeca.New(spiffeca.Config{Network: n.Info.Network, Born: n.Info.CreatedAt, Root: s.auth.TLSSigner(), TTL: cfg.SVIDTTL, Now: s.now}); err != nil {
		return nil, fmt.Errorf("x509 authority: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.Root())
	s.certs.SetRoots(roots)
	if s.lg, err = openLedgerWaiting(ctx, n, ledgerLockWait); err != nil {
		return nil, err
	}
	s.tiles = s.newTiles()
	if s.state, err = n.Replay(ctx, s.lg); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	// A spawn cut short after its parent signed leaves its serial unused,
	// a gap among the children's serials: the next child must get a serial
	// above the highest used, not one past the count.
	for parent, kids := range s.state.Children {
		for _, k := range kids {
			if b := s.state.Blessings[k]; b != nil && b.Serial() > s.serials[parent] {
				s.serials[parent] = b.Serial()
			}
		}
	}
	bolt, err := store.OpenBolt(filepath.Join(cfg.DataDir, "state.db"))
	if err != nil {
		return nil, err
	}
	s.store = reserveStore{Store: bolt, s: s}
	if sealed, err := s.sealStoredKEKs(ctx); err != nil {
		return nil, errors.Join(err, s.store.Close(), s.lg.Close())
	} else if sealed > 0 {
		s.log.Info("sealed the Cals' key-encryption identities kept in clear in state.db", "cals", sealed)
	}
	if err := checkLedgerAnchor(ctx, s.store, s.lg, filepath.Join(s.networkDir(), "ledger"), filepath.Join(cfg.DataDir, "state.db"), cfg.AcceptLedgerRollback, s.log, s.now()); err != nil {
		return nil, errors.Join(err, s.store.Close(), s.lg.Close())
	}
	s.anchored.Store(s.lg.Size())
	if err := s.openAudit(); err != nil {
		return nil, err
	}
	if !first {
		if err := s.removeOrphanSandboxes(ctx); err != nil {
			return nil, err
		}
	}
	// Before the uids are claimed: a restored Cal's sandbox is made with
	// the uid it had, and moved with the others if that is taken here.
	if err := s.restoreSandboxes(ctx); err != nil {
		return nil, err
	}
	if err := s.claimUIDs(ctx); err != nil {
		return nil, err
	}
	if err := s.keepChains(ctx); err != nil {
		return nil, err
	}
	if first {
		if err := s.adoptMaster(ctx); err != nil {
			return nil, fmt.Errorf("master cal: %w", err)
		}
	}
	return s, nil
}

func masterConstraints(now time.Time, disk int64) trust.Constraints {
	var si = hostMemory()
	return trust.Constraints{
		MaxDepth: 16, MaxChildren: 1000,
		Quota:     trust.Quota{CPUMillis: int64(runtime.NumCPU()) * 1000, MemoryBytes: si, PIDs: 1 << 16, DiskBytes: disk},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
	}
}

// loadOrCreateToken reads the root credential, or creates it on the first
// start (atomically: a crash leaves no file or a whole one). A credential
// shorter than api.MinCredentialLen refuses the start: an empty file must
// never mean "no credential needed".
func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		tok := strings.TrimSpace(string(b))
		if len(tok) < api.MinCredentialLen {
			return "", fmt.Errorf("admin credential %s: %d characters, the minimum is at least %d (is the file empty or truncated, e.g. by a crash while it was written?): remove it and start again to get a new one (the network and its Cals are kept; credentials of named administrators and developer tokens stay valid), or write a credential of at least %d characters into it",
				path, len(tok), api.MinCredentialLen, api.MinCredentialLen)
		}
		return tok, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("admin credential: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := "calnet_admin_" + hex.EncodeToString(raw)
	if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin credential: %w", err)
	}
	return tok, nil
}

// Network returns the network's public description.
func (s *Server) Network() netdir.Info { return s.net.Info }

// Run serves the APIs, starts the Cals of the registry and supervises them
// until ctx ends; then it stops every Cal, deepest first, and flushes state.
func (s *Server) Run(ctx context.Context) error {
	s.ctx = ctx
	calLn, err := s.listenCalSocket()
	if err != nil {
		return err
	}
	apiLn, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		calLn.Close()
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	routerLn, err := net.Listen("tcp", s.cfg.RouterAddr)
	if err != nil {
		calLn.Close()
		apiLn.Close()
		return fmt.Errorf("router: listen %s: %w", s.cfg.RouterAddr, err)
	}
	s.routerAddr = routerLn.Addr().String()
	var ledgerLn net.Listener
	if s.cfg.LedgerAddr != "" {
		if ledgerLn, err = net.Listen("tcp", s.cfg.LedgerAddr); err != nil {
			calLn.Close()
			apiLn.Close()
			routerLn.Close()
			return fmt.Errorf("ledger: listen %s: %w", s.cfg.LedgerAddr, err)
		}
	}
	// State first, then the listeners: a client that reaches the API finds
	// the rules, policies and grants already loaded.
	if err := s.rebuildIndex(ctx); err != nil {
		s.log.Error("namespace index", "err", err)
	}
	if err := s.loadGrants(ctx); err != nil {
		s.log.Error("loading the permission matrix", "err", err)
	}
	if err := s.loadPolicies(ctx); err != nil {
		s.log.Error("loading admission policies", "err", err)
	}
	if err := s.loadRules(ctx); err != nil {
		s.log.Error("loading rules", "err", err)
	}
	if err := s.loadLearned(); err != nil {
		s.log.Error("restoring what the control plane learned (that part starts empty)", "err", err)
	}
	// No client may take every descriptor: each listener is bounded, in
	// total and per client, and all of them by one budget that leaves a
	// reserve for the rest of the process.
	nofile, budget, err := raiseNoFile()
	if err != nil {
		s.log.Warn("file descriptor limit", "err", err)
	}
	s.connBudget = connlimit.NewBudget(budget)
	s.log.Info("connection limits", "nofile", nofile, "budget", budget, "api", apiConns, "router", routerConns, "cal_api", calConns, "dns", dnsConns)
	apiL := s.limitListener(apiLn, "api", apiConns, true)
	routerL := s.limitListener(routerLn, "router", routerConns, true)
	calL := s.limitListener(calLn, "cal-api", calConns, false)
	rtr := s.router()
	rtr.Observe(func(cal string, _ bool) { s.note(fromOutside, cal, "http", 0) })
	routerSrv := &http.Server{Handler: authz.Whole(authz.Router, authz.Public, rtr), ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout, ConnState: routerL.ConnState}
	errc := make(chan error, 3)
	go func() {
		if err := routerSrv.Serve(routerL); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("router server", "err", err)
			errc <- fmt.Errorf("router: %w", err)
		}
	}()
	defer rtr.Close() // pinned connections are hijacked: the server does not track them
	defer routerSrv.Close()
	calSrv := &http.Server{Handler: s.calHandler(), TLSConfig: caltls.Config(s.certs, s.resolveCal, true),
		ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout, ConnState: calL.ConnState}
	apiSrv := &http.Server{Handler: s.apiHandler(), ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout, ConnState: apiL.ConnState}
	go func() { errc <- calSrv.ServeTLS(calL, "", "") }()
	if s.cfg.BundleAddr != "" {
		h, tc, err := s.bundleEndpoint()
		if err != nil {
			return fmt.Errorf("bundle endpoint: %w", err)
		}
		bln, err := net.Listen("tcp", s.cfg.BundleAddr)
		if err != nil {
			return fmt.Errorf("bundle endpoint: %w", err)
		}
		bl := s.limitListener(bln, "bundle", dnsConns, false)
		bundleSrv := &http.Server{Handler: h, TLSConfig: tc, ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout, ConnState: bl.ConnState}
		go func() {
			if err := bundleSrv.ServeTLS(bl, "", ""); !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("bundle endpoint", "err", err)
			}
		}()
		defer bundleSrv.Close()
		s.log.Info("spiffe bundle endpoint up", "url", "https://"+bln.Addr().String()+"/", "endpoint_id", "spiffe://"+s.ca.TrustDomain().Name()+spiffeca.BundleEndpointPath)
	}
	if s.cfg.DNSAddr != "" {
		target, _ := net.ResolveTCPAddr("tcp", s.routerAddr)
		d := discovery.New(discovery.Config{Domain: s.cfg.Domain, Addr: s.cfg.DNSAddr, Target: target, Lookup: s.lookupNS, Logger: s.log,
			LimitTCP: func(ln net.Listener) net.Listener { return s.limitListener(ln, "dns-tcp", dnsConns, false) }})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := d.Run(ctx); err != nil {
				s.log.Error("dns server", "err", err)
			}
		}()
		s.log.Info("dns up", "addr", s.cfg.DNSAddr, "zone", s.cfg.Domain)
	}
	// The operator API serves once the Cals are recovered: no spawn may
	// start a Cal that recovery is adopting or failing (connections wait
	// in the listener's backlog meanwhile).
	if err := s.recover(ctx); err != nil {
		s.log.Error("recovering cals", "err", err)
	}
	close(s.recovered)
	go func() { errc <- apiSrv.Serve(apiL) }()
	var ledgerSrv *http.Server
	if ledgerLn != nil {
		srv, l := s.ledgerServer(ledgerLn)
		ledgerSrv = srv
		go func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("ledger listener", "err", err)
			}
		}()
		s.log.Info("ledger served as tlog-tiles", "url", "http://"+ledgerLn.Addr().String()+ledgerPrefix)
	}
	s.log.Info("control plane up", "api", "http://"+apiLn.Addr().String(), "network", s.net.Info.Network.String())
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.collect() }()
	go func() { defer s.wg.Done(); s.anchorLoop(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.auditAnchorLoop(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.keepLearned(ctx) }()
	if len(s.cfg.Witnesses) > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.witnessLoop(ctx) }()
	}
	if s.cfg.Snapshots.Interval > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.snapshotLoop(ctx) }()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.log.Info("control plane stopping: stopping cals deepest first")
	s.stopAll()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	apiSrv.Shutdown(shutdownCtx)
	if ledgerSrv != nil {
		ledgerSrv.Close()
	}
	calSrv.Close()
	s.wg.Wait()
	if err := s.saveLearned(); err != nil {
		s.log.Error("saving what the control plane learned", "err", err)
	}
	s.anchorAudit(context.Background())
	if err := s.lg.Close(); err != nil {
		s.log.Error("closing the ledger", "err", err)
	}
	if err := s.store.Close(); err != nil {
		s.log.Error("closing the state store", "err", err)
	}
	s.closeAudit()
	if s.pool != nil {
		if err := s.pool.Close(); err != nil {
			s.log.Warn("the cal filesystem stays mounted; the next start uses it", "err", err)
		}
	}
	if errors.Is(runErr, http.ErrServerClosed) {
		runErr = nil
	}
	return runErr
}

// checkDataDir makes the data directory and its subdirectories the
// control plane fills, and refuses to run on any of them (or on a
// directory above the data directory) that a user other than root could
// write, replace or own: that user could rename admin.token, the network's
// keys, the ledger, the state store, the programs every Cal runs or the
// Cal filesystem's image away and put their own in its place (a local
// user who made /tmp/calnet-data before the operator ran calnet up on it
// chose the root credential at the next start).
// CheckDataDir makes the data directory if needed and refuses one that a
// user other than root owns or may write (or one above it), as Open does.
func CheckDataDir(data string) error { return checkDataDir(data) }

func checkDataDir(data string, subdirs ...string) error {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	if err := securedir.Check(data); err != nil {
		return fmt.Errorf("data directory %s: %w; use a directory only root can write (chown root:root, chmod go-w on it and on each directory above it; a directory another user could write is theirs: start over in a new one)", data, err)
	}
	for _, d := range subdirs {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := securedir.Check(d); err != nil {
			return fmt.Errorf("data directory %s: %w", data, err)
		}
	}
	// The root credential is read, not only written: another user's file
	// in its place would choose it.
	if err := securedir.OwnFile(TokenFile(data)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin credential: %w: whoever could write it chose the root credential; remove it to get a new one", err)
	}
	return nil
}

// Addr is the configured API address.
func (s *Server) Addr() string { return s.cfg.Addr }

func (s *Server) listenCalSocket() (net.Listener, error) {
	p := filepath.Join(s.runDir(), calproto.ControlSock)
	os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, err
	}
	// Any Cal uid may connect; mutual TLS decides who is who.
	if err := os.Chmod(p, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func jsonUnmarshal(b []byte, v any) error { return store.DecodeJSON(b, v) }
