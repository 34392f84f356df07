// Package calrt is the Cal runtime, `calnet cal`: the process a driver
// starts for each Cal. It enters its sandbox, opens its sealed key,
// verifies its own soul chain (refusing to start if it fails), serves its
// API over mutual TLS and a local API for itself and its workload, and
// registers with the control plane, whose watch stream tells it of
// revocations.
package calrt

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/connlimit"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/sandbox"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/internal/vault"
	"github.com/soulfra/calnet/trust"
)

// Runtime is one running Cal.
type Runtime struct {
	log       *slog.Logger
	dir       string // /data inside the sandbox
	runDir    string // /run/calnet
	key       *identity.PrivateKey
	root      *identity.PublicKey
	network   identity.NetworkID
	chain     *trust.Chain
	verifier  *trust.Verifier
	certs     *caltls.Source // the Cal's TLS certificate, renewed as it ages
	cp        *http.Client
	kek       *age.HybridIdentity
	card      atomicCard
	tiers     *tierSet
	closers   []func()
	challenge []byte // fetched by the discovery tier, answered at activation
	// listen listens on a socket the control plane bound for this Cal
	// where the Cal cannot write (sandbox.Config.Listener): the ones the
	// control plane and the router dial.
	listen   func(name string) (*net.UnixListener, error)
	logs     *logRing
	vault    *vault.Log
	vaultErr error // set when the vault failed verification: reported, never skipped
	prom     calMetrics
	conns    *connlimit.Budget // descriptors the Cal's listeners may hold (listeners.go)
	svids    *svidState        // the workload's X.509-SVID (workloadapi.go)
	wapiOnce sync.Once         // starts the Workload API
	wapiErr  error
}

// Main enters the sandbox from the driver's config and runs the Cal until
// ctx ends or it is revoked.
func Main(ctx context.Context, log *slog.Logger) error {
	cfg, err := sandbox.ReadConfig()
	if err != nil {
		return err
	}
	if err := sandbox.Enter(cfg); err != nil {
		return err
	}
	dir, run := sandbox.DataDir, sandbox.RunDir
	if !cfg.Has(sandbox.ReadOnlyRoot) {
		dir, run = cfg.Dir, cfg.RunDir
	}
	rt, err := Open(dir, run, cfg.Secret, log)
	if err != nil {
		return err
	}
	rt.listen = cfg.Listener
	return rt.Run(ctx)
}

// Open loads the Cal's key and verifies its chain.
func Open(dir, runDir, secret string, log *slog.Logger) (*Runtime, error) {
	ring := &logRing{max: 500}
	log = slog.New(ringHandler{log.Handler(), ring})
	kek, err := age.ParseHybridIdentity(secret)
	if err != nil {
		return nil, fmt.Errorf("cal: key-encryption identity: %w", err)
	}
	key, err := identity.LoadKeyFile(filepath.Join(dir, "identity.key"), kek)
	if err != nil {
		return nil, err
	}
	nb, err := limitedfile.Read(filepath.Join(dir, calproto.NetworkFile), maxAnswer)
	if err != nil {
		return nil, err
	}
	var ni calproto.NetworkInfo
	if err := strictjson.Unmarshal(nb, maxAnswer, &ni); err != nil {
		return nil, fmt.Errorf("cal: %s: %w", calproto.NetworkFile, err)
	}
	var root identity.PublicKey
	if err := root.UnmarshalJSON(ni.RootKeys); err != nil {
		return nil, fmt.Errorf("cal: root keys: %w", err)
	}
	cb, err := limitedfile.Read(filepath.Join(dir, "soul-chain.sig"), trust.MaxChainJSON)
	if err != nil {
		return nil, err
	}
	chain, err := trust.ParseChain(cb)
	if err != nil {
		return nil, fmt.Errorf("cal: refusing to start: %w", err)
	}
	v := trust.NewVerifier(&root)
	got, err := v.Verify(chain, time.Now(), nil)
	if err != nil {
		return nil, fmt.Errorf("cal: refusing to start, my soul chain does not verify: %w", err)
	}
	if got.Cal != key.Public().ID() {
		return nil, fmt.Errorf("cal: refusing to start: the chain blesses %s but my key is %s", got.Cal, key.Public().ID())
	}
	d := chain.Leaf().Digest()
	certs, err := caltls.NewSource(key, v.Network(), "/cal/"+got.Cal.String(), d[:], 7*24*time.Hour, nil)
	if err != nil {
		return nil, err
	}
	rt := &Runtime{log: log, dir: dir, runDir: runDir, key: key, root: &root, network: v.Network(), chain: chain, verifier: v, certs: certs, kek: kek, logs: ring, conns: newConnBudget(), svids: newSVIDState(),
		listen: func(name string) (*net.UnixListener, error) {
			return nil, fmt.Errorf("no socket %q was passed to this cal", name)
		}}
	rt.vault, rt.vaultErr = vault.Open(filepath.Join(dir, "vault"), kek, key, nil)
	if rt.vaultErr != nil {
		log.Error("vault failed verification; reflections are unavailable", "err", rt.vaultErr)
	}
	rt.cp = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", filepath.Join(runDir, calproto.ControlSock))
		},
		TLSClientConfig: caltls.Config(certs, rt.isControlPlane, false),
		MaxIdleConns:    2,
	}}
	return rt, nil
}

// ListenWith makes listen how the Cal listens on the sockets the control
// plane bound for it (Main uses sandbox.Config.Listener): for a runtime
// run in some other process than the one a driver started, such as the
// in-process Cals of the fake driver's tests. Call it before Run.
func (rt *Runtime) ListenWith(listen func(name string) (*net.UnixListener, error)) {
	rt.listen = listen
}

// ID returns the Cal's ID.
func (rt *Runtime) ID() identity.ID { return rt.key.Public().ID() }

// isControlPlane accepts only the control plane, whose certificate key is
// the network authority's Ed25519 key.
func (rt *Runtime) isControlPlane(p *caltls.Peer) error {
	if p.Path != caltls.ControlPlanePath || !rt.root.Ed25519().Equal(p.Key) {
		return errors.New("peer is not this network's control plane")
	}
	return nil
}

// Run serves the Cal's APIs and stays registered until ctx ends or the Cal
// is revoked.
func (rt *Runtime) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	tmpl, err := loadTemplate(rt.dir)
	if err != nil {
		return err
	}
	rt.tiers = newTierSet(tmpl)
	// The Cal's certificate becomes the X.509-SVID the network's
	// authority issues, renewed at half its life (until then, and
	// whenever the control plane is away past its expiry, it presents one
	// self-signed by its identity key, which the control plane accepts).
	go rt.keepRenewed(ctx, "cal", rt.renewOwnSVID)
	defer func() {
		for i := len(rt.closers) - 1; i >= 0; i-- { // tier 0 first
			rt.closers[i]()
		}
	}()
	if failed := rt.startTiers(ctx, cancel); failed <= 0 {
		_, why := rt.tiers.snapshot()
		rt.log.Error("platform degraded", "reason", why)
	}
	if err := rt.register(ctx); err != nil {
		return err
	}
	go rt.watch(ctx, cancel)
	trimMemory()
	collectOnDemand(rt.chain.Leaf().Constraints().Quota.MemoryBytes)
	<-ctx.Done()
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return nil
}

func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ErrRevoked ends a Cal that learns it was revoked.
var ErrRevoked = errors.New("this cal was revoked")

// register activates the Cal with the control plane: a fresh challenge
// answered with proofs of possession of its key. A control plane that is
// away (restarting, upgraded, crashed) is waited for, however long: the
// Cal keeps serving meanwhile, and the next control plane decides (it
// adopts the Cal, or stops it). Only a refusal ends the Cal.
func (rt *Runtime) register(ctx context.Context) error {
	var reply calproto.RegisterReply
	refusals := 0
	backoff := 20 * time.Millisecond
	for {
		reg, err := rt.activation(ctx)
		if err == nil {
			if rt.tiers != nil {
				_, reg.Degraded = rt.tiers.snapshot()
			}
			err = rt.call(ctx, http.MethodPost, calproto.PathRegister, reg, &reply)
		}
		if err == nil {
			break
		}
		var ce *CPError
		if errors.As(err, &ce) && ce.Status == http.StatusForbidden {
			// A challenge fetched by the discovery tier, or from a control
			// plane that restarted since, is unknown to this one: retry
			// with a fresh one. Refused again, the Cal gives up.
			if refusals++; refusals >= 3 {
				return fmt.Errorf("cal: activation refused: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff+20*time.Millisecond, 2*time.Second)
	}
	if reply.Revoked {
		return ErrRevoked
	}
	rt.card.set(reply.Namespace, reply.RouterURL, reply.Domain)
	return nil
}

// activation answers a fresh challenge of the control plane with proofs
// of possession of the identity key.
func (rt *Runtime) activation(ctx context.Context) (*calproto.Register, error) {
	var ch calproto.Challenge
	if rt.challenge != nil {
		ch.Challenge, rt.challenge = rt.challenge, nil
	} else if err := rt.call(ctx, http.MethodPost, calproto.PathChallenge, nil, &ch); err != nil {
		return nil, err
	}
	proof, err := rt.key.ProvePossession(ch.Challenge, nil)
	if err != nil {
		return nil, err
	}
	sig, err := rt.key.Sign(identity.PurposeActivation, ch.Challenge)
	if err != nil {
		return nil, err
	}
	pj, _ := proof.MarshalJSON()
	sj, _ := sig.MarshalJSON()
	return &calproto.Register{PID: os.Getpid(), Challenge: ch.Challenge, Possession: pj, Signature: sj}, nil
}

// watch follows the control plane's event stream and ends the Cal on its
// revocation. When the control plane goes away the Cal keeps running and
// reconnects with backoff; a new control plane that adopted it asks it to
// register again.
func (rt *Runtime) watch(ctx context.Context, cancel context.CancelCauseFunc) {
	const maxBackoff = 2 * time.Second
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://control-plane"+calproto.PathWatch, nil)
		resp, err := rt.cp.Do(req)
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			err = fmt.Errorf("watch: %s", resp.Status)
		}
		if err == nil {
			backoff = 50 * time.Millisecond
			revoked := rt.follow(ctx, resp.Body)
			resp.Body.Close()
			if revoked {
				cancel(ErrRevoked)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// follow reads one watch stream until it ends; it reports whether the Cal
// learnt of its revocation.
func (rt *Runtime) follow(ctx context.Context, body io.Reader) (revoked bool) {
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev calproto.Event
		if err := strictjson.Unmarshal([]byte(line), maxAnswer, &ev); err != nil {
			rt.log.Error("control plane sent an event this Cal cannot read", "err", err)
			continue
		}
		switch {
		case ev.Type == "child-failed":
			rt.log.Warn("a child failed for good; its supervisor gave up", "child", ev.Cal)
		case ev.Type == calproto.EventRevoked && ev.Cal == rt.ID().String():
			rt.log.Warn("revoked by the network; stopping")
			return true
		case ev.Type == calproto.EventRegister:
			switch err := rt.register(ctx); {
			case errors.Is(err, ErrRevoked):
				rt.log.Warn("revoked by the network; stopping")
				return true
			case err != nil:
				rt.log.Error("registering with a new control plane", "err", err)
			default:
				rt.log.Info("re-registered with a new control plane")
			}
		}
	}
	return false
}

// call sends a JSON request to the control plane.
func (rt *Runtime) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://control-plane"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := rt.cp.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := limitedfile.ReadAll(resp.Body, "control plane answer", maxAnswer)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if strictjson.Unmarshal(b, maxAnswer, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		ce := &CPError{Status: resp.StatusCode, Msg: e.Error}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra >= 0 {
			ce.RetryAfter = time.Duration(ra) * time.Second
		}
		return ce
	}
	if out != nil {
		if err := strictjson.Unmarshal(b, maxAnswer, out); err != nil {
			return fmt.Errorf("control plane answer to %s: %w", path, err)
		}
	}
	return nil
}

// CPError is an error answer of the control plane.
type CPError struct {
	Status int
	Msg    string
	// RetryAfter is the control plane's Retry-After (a 429 or 503), zero
	// when it sent none; the local API passes it on to the workload.
	RetryAfter time.Duration
}

func (e *CPError) Error() string { return fmt.Sprintf("control plane: %d: %s", e.Status, e.Msg) }

// reportDegraded tells the control plane the platform lost a tier.
func (rt *Runtime) reportDegraded(ctx context.Context, why string) {
	if err := rt.call(ctx, http.MethodPost, calproto.PathStatus, calproto.Status{Degraded: why}, nil); err != nil {
		rt.log.Error("could not report degradation", "err", err)
	}
}
