package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/caltls/caltlstest"
	"github.com/soulfra/calnet/trust"
)

// The tests run real clusters in one process: each server has its own
// directory, its own TCP listener on loopback and mutual TLS 1.3 with the
// hybrid post-quantum key exchange, as between machines.

// testCA issues the certificates of one test network.
type testCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// configs returns the server and client TLS configurations of a server.
func (ca *testCA) configs(t testing.TB, id string) (server, client *tls.Config) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	must(t, err)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	curves := []tls.CurveID{tls.X25519MLKEM768}
	server = &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: curves, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool}
	client = &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: curves, Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}
	return server, client
}

type testNode struct {
	id, dir, addr string
	s             *Raft
	cfg           RaftConfig
}

type testCluster struct {
	t  testing.TB
	ca *testCA
	// configs, if set, makes a server's TLS configurations instead of ca.
	configs func(id string) (server, client *tls.Config)
	nodes   []*testNode
	tune    func(*RaftConfig)
}

// newTestCluster starts n servers and bootstraps them as one cluster.
func newTestCluster(t testing.TB, n int, tune func(*RaftConfig)) *testCluster {
	return newTestClusterTLS(t, n, tune, nil)
}

// newTestClusterTLS is newTestCluster with the servers' TLS configurations
// made by configs.
func newTestClusterTLS(t testing.TB, n int, tune func(*RaftConfig), configs func(id string) (server, client *tls.Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, ca: newTestCA(t, "test network"), tune: tune, configs: configs}
	var servers []RaftServer
	for i := range n {
		nd := c.add(fmt.Sprintf("s%d", i))
		servers = append(servers, RaftServer{ID: nd.id, Address: nd.addr, Voter: true})
	}
	for _, nd := range c.nodes {
		must(t, nd.s.Bootstrap(servers))
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if nd.s != nil {
				_ = nd.s.Close()
			}
		}
	})
	return c
}

// add starts a new server with its own directory and port.
func (c *testCluster) add(id string) *testNode {
	nd := &testNode{id: id, dir: filepath.Join(c.t.TempDir(), id)}
	c.nodes = append(c.nodes, nd)
	c.start(nd)
	return nd
}

// start (re)starts a server on its directory and address.
func (c *testCluster) start(nd *testNode) {
	c.t.Helper()
	addr := nd.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	// The port of a stopped server may take a moment to be free again.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	must(c.t, err)
	nd.addr = ln.Addr().String()
	server, client := c.ca.configs(c.t, nd.id)
	if c.configs != nil {
		server, client = c.configs(nd.id)
	}
	cfg := RaftConfig{Dir: nd.dir, ID: nd.id, Listener: ln, ServerTLS: server, ClientTLS: client, Meta: []byte("api-of-" + nd.id),
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 200 * time.Millisecond}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	nd.cfg = cfg
	nd.s, err = OpenRaft(cfg)
	must(c.t, err)
}

func (c *testCluster) stop(nd *testNode) {
	c.t.Helper()
	must(c.t, nd.s.Close())
	nd.s = nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = cond(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

// leader waits until the running servers agree on a leader and it has
// published itself, and returns it.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	var l *testNode
	eventually(c.t, "a leader", func() error {
		l = nil
		for _, nd := range c.nodes {
			if nd.s != nil && nd.s.Status().State == "Leader" {
				l = nd
			}
		}
		if l == nil {
			return errors.New("no leader")
		}
		for _, nd := range c.nodes {
			if nd.s == nil {
				continue
			}
			if st := nd.s.Status(); st.LeaderID != l.id {
				return fmt.Errorf("%s follows %q, not %s", nd.id, st.LeaderID, l.id)
			}
		}
		return nil
	})
	return l
}

func put(ctx context.Context, s Store, bucket, key, value string) error {
	return s.Update(ctx, func(tx Tx) error { return tx.Put(bucket, key, []byte(value)) })
}

func get(s Store, bucket, key string) (string, error) {
	var v []byte
	err := s.View(context.Background(), func(tx Tx) error {
		var err error
		v, err = tx.Get(bucket, key)
		return err
	})
	return string(v), err
}

// hasValue waits until every running server reads value at bucket/key.
func (c *testCluster) hasValue(bucket, key, value string) {
	c.t.Helper()
	eventually(c.t, fmt.Sprintf("%s/%s = %q everywhere", bucket, key, value), func() error {
		for _, nd := range c.nodes {
			if nd.s == nil {
				continue
			}
			if v, err := get(nd.s, bucket, key); err != nil || v != value {
				return fmt.Errorf("%s reads %q, %v", nd.id, v, err)
			}
		}
		return nil
	})
}

func TestRaftReplicates(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	must(t, put(ctx, l.s, "cals", "a", "1"))
	// Acknowledged means applied on the leader at once.
	if v, err := get(l.s, "cals", "a"); err != nil || v != "1" {
		t.Fatalf("leader reads %q, %v right after its write", v, err)
	}
	c.hasValue("cals", "a", "1")

	// A follower refuses writes and names the leader and its address.
	for _, nd := range c.nodes {
		if nd == l {
			continue
		}
		err := put(ctx, nd.s, "cals", "b", "2")
		var nl *NotLeaderError
		if !errors.As(err, &nl) || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("write on follower %s: %v", nd.id, err)
		}
		if nl.LeaderID != l.id || nl.LeaderAddr != l.addr || string(nl.LeaderMeta) != "api-of-"+l.id {
			t.Fatalf("follower %s names leader %q at %q meta %q, want %s at %s", nd.id, nl.LeaderID, nl.LeaderAddr, nl.LeaderMeta, l.id, l.addr)
		}
		st := nd.s.Status()
		if st.LastContact.IsZero() || st.AppliedIndex == 0 {
			t.Fatalf("follower status %+v", st)
		}
	}
	if _, err := get(l.s, "cals", "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused write was made: %v", err)
	}
	servers, err := l.s.Servers()
	must(t, err)
	if len(servers) != 3 {
		t.Fatalf("servers %+v", servers)
	}
}

func TestRaftTransaction(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, 1, nil)
	s := c.leader().s
	must(t, s.Update(ctx, func(tx Tx) error {
		for _, k := range []string{"a", "c", "e"} {
			if err := tx.Put("b", k, []byte("old-"+k)); err != nil {
				return err
			}
		}
		return nil
	}))
	boom := errors.New("boom")
	cases := []struct {
		name    string
		fn      func(tx Tx) error
		wantErr error
		want    map[string]string // the bucket after the update
	}{
		{"reads its own writes, merged in key order", func(tx Tx) error {
			if err := tx.Put("b", "b", []byte("new-b")); err != nil {
				return err
			}
			if err := tx.Delete("b", "c"); err != nil {
				return err
			}
			if err := tx.Put("b", "e", []byte("new-e")); err != nil {
				return err
			}
			if err := tx.Put("b", "f", []byte("new-f")); err != nil {
				return err
			}
			if v, err := tx.Get("b", "b"); err != nil || string(v) != "new-b" {
				return fmt.Errorf("own write reads %q, %v", v, err)
			}
			if _, err := tx.Get("b", "c"); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("own delete reads %v", err)
			}
			var seen []string
			if err := tx.ForEach("b", "", func(k string, v []byte) error { seen = append(seen, k+"="+string(v)); return nil }); err != nil {
				return err
			}
			if got := strings.Join(seen, ","); got != "a=old-a,b=new-b,e=new-e,f=new-f" {
				return fmt.Errorf("ForEach saw %s", got)
			}
			return nil
		}, nil, map[string]string{"a": "old-a", "b": "new-b", "e": "new-e", "f": "new-f"}},
		{"a failing function writes nothing", func(tx Tx) error {
			if err := tx.Put("b", "z", []byte("z")); err != nil {
				return err
			}
			return boom
		}, boom, map[string]string{"a": "old-a", "b": "new-b", "e": "new-e", "f": "new-f"}},
		{"the store's own buckets are refused", func(tx Tx) error {
			return tx.Put(reservedPrefix+"raft", "applied", []byte("x"))
		}, errReserved, nil},
		{"an empty key is refused", func(tx Tx) error { return tx.Put("b", "", []byte("x")) }, errEmptyKey, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Update(ctx, tc.fn)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errorsLike(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.want == nil {
				return
			}
			got := map[string]string{}
			must(t, s.View(ctx, func(tx Tx) error {
				return tx.ForEach("b", "", func(k string, v []byte) error { got[k] = string(v); return nil })
			}))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("bucket %v, want %v", got, tc.want)
			}
		})
	}
}

var (
	errReserved = errors.New("the store's own")
	errEmptyKey = errors.New("empty")
)

// errorsLike matches err by identity or by the message part of want.
func errorsLike(err, want error) bool {
	return err != nil && (errors.Is(err, want) || strings.Contains(err.Error(), want.Error()))
}

func TestRaftLeaderKilled(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, 3, nil)
	old := c.leader()
	must(t, put(ctx, old.s, "k", "before", "1"))
	c.hasValue("k", "before", "1")
	c.stop(old)

	l := c.leader()
	if l == old {
		t.Fatal("the stopped server leads")
	}
	// The new leader has every acknowledged write and accepts new ones.
	if v, err := get(l.s, "k", "before"); err != nil || v != "1" {
		t.Fatalf("new leader reads %q, %v", v, err)
	}
	eventually(t, "a write on the new leader", func() error { return put(ctx, l.s, "k", "after", "2") })

	// The old leader comes back as a follower and catches up.
	c.start(old)
	c.hasValue("k", "after", "2")
	if st := old.s.Status(); st.State != "Follower" {
		t.Fatalf("the returning server is %s", st.State)
	}
}

func TestRaftMinorityRefusesWrites(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	must(t, put(ctx, l.s, "k", "a", "1"))
	c.hasValue("k", "a", "1")
	for _, nd := range c.nodes {
		if nd != l {
			c.stop(nd)
		}
	}
	// Alone, the leader steps down within its lease: writes are refused
	// with a reason, never acknowledged.
	eventually(t, "the minority refuses", func() error {
		err := put(ctx, l.s, "k", "b", "2")
		if !errors.Is(err, ErrNotLeader) {
			return fmt.Errorf("write on a minority: %v", err)
		}
		return nil
	})
	var nl *NotLeaderError
	if err := put(ctx, l.s, "k", "c", "3"); !errors.As(err, &nl) || nl.LeaderID != "" || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("write on a minority: %v", err)
	}
	// Reads still answer, from the local state.
	if v, err := get(l.s, "k", "a"); err != nil || v != "1" {
		t.Fatalf("read on a minority: %q, %v", v, err)
	}
	// The majority returns: writes are accepted again.
	for _, nd := range c.nodes {
		if nd.s == nil {
			c.start(nd)
		}
	}
	l = c.leader()
	eventually(t, "a write after healing", func() error { return put(ctx, l.s, "k", "d", "4") })
	c.hasValue("k", "d", "4")
}

func TestRaftFollowerCatchesUp(t *testing.T) {
	ctx := context.Background()
	// Small snapshots and a short log tail: a follower that was down
	// longer than the tail is sent the snapshot.
	c := newTestCluster(t, 3, func(cfg *RaftConfig) {
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
	})
	l := c.leader()
	var down *testNode
	for _, nd := range c.nodes {
		if nd != l {
			down = nd
			break
		}
	}
	must(t, put(ctx, l.s, "k", "first", "1"))
	c.hasValue("k", "first", "1")
	c.stop(down)
	for i := range 100 {
		must(t, put(ctx, l.s, "k", fmt.Sprintf("n%03d", i), fmt.Sprint(i)))
	}
	must(t, put(ctx, l.s, "k", "first", "changed"))
	must(t, put(ctx, l.s, "k", "gone", "x"))
	must(t, l.s.Update(ctx, func(tx Tx) error { return tx.Delete("k", "gone") }))
	must(t, l.s.Snapshot())
	c.start(down)
	c.hasValue("k", "first", "changed")
	c.hasValue("k", "n099", "99")
	if _, err := get(down.s, "k", "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key on the follower: %v", err)
	}
	// Same state everywhere, key for key.
	want := dump(t, l.s)
	for _, nd := range c.nodes {
		if got := dump(t, nd.s); got != want {
			t.Fatalf("%s holds\n%s\nthe leader\n%s", nd.id, got, want)
		}
	}
}

func dump(t testing.TB, s Store) string {
	t.Helper()
	var b strings.Builder
	must(t, s.View(context.Background(), func(tx Tx) error {
		return tx.ForEach("k", "", func(k string, v []byte) error { fmt.Fprintf(&b, "%s=%s\n", k, v); return nil })
	}))
	return b.String()
}

func TestRaftSnapshotRestore(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, 1, func(cfg *RaftConfig) { cfg.TrailingLogs = 1 })
	l := c.leader()
	for i := range 20 {
		must(t, put(ctx, l.s, "k", fmt.Sprintf("n%02d", i), fmt.Sprint(i)))
	}
	must(t, l.s.Snapshot())
	must(t, put(ctx, l.s, "k", "after-snapshot", "x"))
	want := dump(t, l.s)

	// The state file lost: the server restores the snapshot and replays
	// the log after it.
	c.stop(l)
	must(t, os.Remove(filepath.Join(l.dir, "state.db")))
	c.start(l)
	c.leader()
	eventually(t, "the state restored", func() error {
		if got := dump(t, l.s); got != want {
			return fmt.Errorf("holds\n%s\nwant\n%s", got, want)
		}
		return nil
	})

	// A new server joins a cluster whose log was compacted: it is sent the
	// snapshot, then the entries after it.
	must(t, l.s.Snapshot())
	nd := c.add("joiner")
	must(t, l.s.AddVoter(ctx, nd.id, nd.addr))
	eventually(t, "the joiner has the state", func() error {
		if got := dump(t, nd.s); got != want {
			return fmt.Errorf("holds\n%s\nwant\n%s", got, want)
		}
		return nil
	})
	must(t, put(ctx, l.s, "k", "after-join", "y"))
	c.hasValue("k", "after-join", "y")
}

// A server whose certificate another network issued cannot talk to the
// cluster: the TLS handshake refuses it, in both directions.
func TestRaftRefusesAnotherNetwork(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	l := c.leader()
	other := newTestCA(t, "another network")
	_, foreignClient := other.configs(t, "intruder")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	foreignServer, _ := other.configs(t, "intruder")
	st, err := newTLSStream(ln, ln.Addr().String(), foreignServer, foreignClient)
	must(t, err)
	defer st.Close()
	conn, err := st.Dial(raft.ServerAddress(l.addr), 5*time.Second)
	if err == nil {
		// TLS 1.3: the client's certificate is checked after the client
		// finished; the server's refusal arrives on the first read.
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a server of another network connected")
	}
	// And the cluster's own client refuses the intruder's server.
	_, ownClient := c.ca.configs(t, "s9")
	own, err := newTLSStream(mustListen(t), "127.0.0.1:1", foreignServer, ownClient)
	must(t, err)
	defer own.Close()
	go func() {
		if c, err := st.Accept(); err == nil {
			_, _ = c.Read(make([]byte, 1))
			c.Close()
		}
	}()
	if _, err := own.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("dialing a server of another network: %v", err)
	}
}

func mustListen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	return ln
}

func TestRaftConfigRefusesPlainConnections(t *testing.T) {
	ln := mustListen(t)
	defer ln.Close()
	_, err := OpenRaft(RaftConfig{Dir: t.TempDir(), ID: "x", Listener: ln})
	if err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("a store without TLS: %v", err)
	}
	server, client := newTestCA(t, "n").configs(t, "x")
	server.ClientAuth = tls.NoClientCert
	if _, err := OpenRaft(RaftConfig{Dir: t.TempDir(), ID: "x", Listener: ln, ServerTLS: server, ClientTLS: client}); err == nil || !strings.Contains(err.Error(), "authenticate the client") {
		t.Fatalf("a store that does not authenticate clients: %v", err)
	}
}

// Concurrent writers on the leader: each read-modify-write sees every
// write acknowledged before it (no lost update). A leadership change
// during the test (a loaded machine) refuses writes; a write refused
// before it reached the log is retried on the new leader, one whose
// outcome is unknown is counted apart.
func TestRaftConcurrentIncrements(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, 3, nil)
	c.leader()
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		acked, unknown int
	)
	const writers, each = 4, 10
	incr := func(tx Tx) error {
		var n int
		if v, err := tx.Get("k", "n"); err == nil {
			if _, err := fmt.Sscan(string(v), &n); err != nil {
				return err
			}
		}
		return tx.Put("k", "n", []byte(fmt.Sprint(n+1)))
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				nd := c.nodes[(w+done)%len(c.nodes)]
				err := nd.s.Update(ctx, incr)
				var nl *NotLeaderError
				switch {
				case err == nil:
					mu.Lock()
					acked++
					mu.Unlock()
					done++
				case errors.As(err, &nl) && nl.Unknown:
					mu.Lock()
					unknown++
					mu.Unlock()
					done++
				case errors.As(err, &nl):
					// Forward, as the API does: to the leader it names.
					for _, l := range c.nodes {
						if l.id == nl.LeaderID {
							err := l.s.Update(ctx, incr)
							var nl2 *NotLeaderError
							mu.Lock()
							if err == nil {
								acked++
								done++
							} else if errors.As(err, &nl2) && nl2.Unknown || !errors.As(err, &nl2) {
								unknown++ // a failure after the log took it
								done++
							}
							mu.Unlock()
						}
					}
					time.Sleep(10 * time.Millisecond)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l := c.leader()
	must(t, put(ctx, l.s, "k", "sync", "1")) // commits everything of earlier terms
	v, err := get(l.s, "k", "n")
	must(t, err)
	var n int
	_, _ = fmt.Sscan(v, &n)
	if n < acked || n > acked+unknown {
		t.Fatalf("counter %d after %d acknowledged and %d unknown increments", n, acked, unknown)
	}
	c.hasValue("k", "n", v)
}

// A batch made in one term and appended to the log in another is refused
// by every server alike: it may have read a batch of its term that never
// reached the log.
func TestFSMRefusesBatchOfAnotherTerm(t *testing.T) {
	f, err := openFSM(filepath.Join(t.TempDir(), "state.db"), nil, slog.New(slog.DiscardHandler))
	must(t, err)
	defer func() { must(t, f.close()) }()
	mk := func(term uint64, key string) []byte {
		b := batch{term: term, ops: []op{{kind: opPut, bucket: "k", key: key, value: []byte("v")}}}
		enc, err := b.encode()
		must(t, err)
		return enc
	}
	resp := f.ApplyBatch([]*raft.Log{
		{Index: 1, Term: 2, Type: raft.LogCommand, Data: mk(2, "same-term")},
		{Index: 2, Term: 3, Type: raft.LogCommand, Data: mk(2, "earlier-term")},
	})
	if resp[0] != nil || !errors.Is(resp[1].(error), errStaleBatch) {
		t.Fatalf("responses %v", resp)
	}
	must(t, f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("k"))
		if b == nil || b.Get([]byte("same-term")) == nil || b.Get([]byte("earlier-term")) != nil {
			t.Fatal("the stale batch was applied, or the good one was not")
		}
		if readApplied(tx) != 2 {
			t.Fatalf("applied index %d", readApplied(tx))
		}
		return nil
	}))
}

// Servers blessed into one calnet network authenticate each other by their
// soul chains (caltls.ServerTLS) and replicate over that.
func TestRaftServersAuthenticateByChain(t *testing.T) {
	n, err := caltlstest.New(time.Now())
	must(t, err)
	ids := map[string]caltls.ServerIdentity{}
	c := newTestClusterTLS(t, 3, nil, func(id string) (*tls.Config, *tls.Config) {
		sid, ok := ids[id]
		if !ok {
			sid, err = n.Bless(trust.PermissionsOf(trust.PermAdmin))
			must(t, err)
			ids[id] = sid
		}
		server, client, err := caltls.ServerTLS(sid, n.Verifier, nil, nil)
		must(t, err)
		return server, client
	})
	l := c.leader()
	must(t, put(context.Background(), l.s, "k", "a", "1"))
	c.hasValue("k", "a", "1")
}

// Writers keep writing while the leader is stopped: every write that was
// acknowledged is on the new leader (an acknowledgement means a quorum's
// disks), and every server ends with the same state.
func TestRaftAcknowledgedWritesSurviveFailover(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, 3, nil)
	c.leader()
	var (
		mu    sync.Mutex
		acked []string
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	leaderNow := func() *testNode {
		mu.Lock()
		defer mu.Unlock()
		for _, nd := range c.nodes {
			if nd.s != nil && nd.s.Status().State == "Leader" {
				return nd
			}
		}
		return nil
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				l := leaderNow()
				if l == nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				key := fmt.Sprintf("w%d-%04d", w, i)
				if err := put(ctx, l.s, "k", key, key); err == nil {
					mu.Lock()
					acked = append(acked, key)
					mu.Unlock()
				} else if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrClosed) {
					t.Error(err)
					return
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	eventually(t, "writes before the failover", func() error {
		if n := count(); n < 40 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	old := leaderNow()
	mu.Lock() // no writer picks the old leader while it stops
	must(t, old.s.Close())
	old.s = nil
	mu.Unlock()
	before := count()
	eventually(t, "writes after the failover", func() error {
		if n := count(); n < before+40 {
			return fmt.Errorf("%d acknowledged, %d before", n, before)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	l := c.leader()
	mu.Lock()
	defer mu.Unlock()
	for _, k := range acked {
		if v, err := get(l.s, "k", k); err != nil || v != k {
			t.Fatalf("acknowledged write %s on the new leader: %q, %v", k, v, err)
		}
	}
	c.start(old)
	must(t, put(ctx, c.leader().s, "k", "last", "x"))
	c.hasValue("k", "last", "x")
	want := dump(t, l.s)
	for _, nd := range c.nodes {
		eventually(t, nd.id+" holds the leader's state", func() error {
			if got := dump(t, nd.s); got != want {
				return fmt.Errorf("%d bytes, the leader's %d", len(got), len(want))
			}
			return nil
		})
	}
}
