package store

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The failover measurement runs each server in its own process (this test
// binary, started again as a server) with Raft's default timing, kills the
// leader with SIGKILL and times until another server acknowledges a write.
// It reports numbers and asserts no time: run it with
//
//	CALNET_FAILOVER_TRIALS=20 go test -run TestStoreFailoverProcesses -v ./internal/store/

func TestMain(m *testing.M) {
	if os.Getenv("CALNET_STORE_SERVER") != "" {
		if err := runTestServer(); err != nil {
			fmt.Fprintln(os.Stderr, "test server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runTestServer is one server process: a Raft store and a small HTTP API
// on loopback (PUT /k/<key> writes, GET /status answers the state).
func runTestServer() error {
	env := os.Getenv
	caPEM, err := os.ReadFile(env("CALNET_TEST_CA"))
	if err != nil {
		return err
	}
	ca, err := parseTestCA(caPEM)
	if err != nil {
		return err
	}
	id := env("CALNET_TEST_ID")
	server, client := ca.configs(fatalTB{}, id)
	ln, err := net.Listen("tcp", env("CALNET_TEST_RAFT"))
	if err != nil {
		return err
	}
	s, err := OpenRaft(RaftConfig{Dir: env("CALNET_TEST_DIR"), ID: id, Listener: ln, ServerTLS: server, ClientTLS: client,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	var servers []RaftServer
	for _, p := range strings.Split(env("CALNET_TEST_PEERS"), ",") {
		pid, addr, _ := strings.Cut(p, "=")
		servers = append(servers, RaftServer{ID: pid, Address: addr, Voter: true})
	}
	if err := s.Bootstrap(servers); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /k/{key}", func(w http.ResponseWriter, r *http.Request) {
		if err := put(r.Context(), s, "k", r.PathValue("key"), "v"); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, s.Status().State)
	})
	api, err := net.Listen("tcp", env("CALNET_TEST_HTTP"))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	return http.Serve(api, mux)
}

// fatalTB lets a server process use the test helpers that take a
// testing.TB; a failure ends the process.
type fatalTB struct{ testing.TB }

func (fatalTB) Helper() {}
func (fatalTB) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(1)
}

func (ca *testCA) pem(t testing.TB) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	must(t, err)
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
}

func parseTestCA(b []byte) (*testCA, error) {
	cb, rest := pem.Decode(b)
	kb, _ := pem.Decode(rest)
	if cb == nil || kb == nil {
		return nil, errors.New("bad CA file")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: k.(ed25519.PrivateKey), pool: pool}, nil
}

type serverProc struct {
	id, dir, raft, http string
	cmd                 *exec.Cmd
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func TestStoreFailoverProcesses(t *testing.T) {
	trials, _ := strconv.Atoi(os.Getenv("CALNET_FAILOVER_TRIALS"))
	if trials <= 0 {
		t.Skip("a measurement, not a test: set CALNET_FAILOVER_TRIALS to run it")
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	must(t, os.WriteFile(caFile, newTestCA(t, "failover").pem(t), 0o600))
	var procs []*serverProc
	var peers []string
	for i := range 3 {
		p := &serverProc{id: fmt.Sprintf("s%d", i), dir: filepath.Join(dir, fmt.Sprint(i)), raft: freeAddr(t), http: freeAddr(t)}
		procs = append(procs, p)
		peers = append(peers, p.id+"="+p.raft)
	}
	self, err := os.Executable()
	must(t, err)
	start := func(p *serverProc) {
		p.cmd = exec.Command(self, "-test.run=^$")
		p.cmd.Env = append(os.Environ(), "CALNET_STORE_SERVER=1", "CALNET_TEST_CA="+caFile, "CALNET_TEST_ID="+p.id,
			"CALNET_TEST_DIR="+p.dir, "CALNET_TEST_RAFT="+p.raft, "CALNET_TEST_HTTP="+p.http, "CALNET_TEST_PEERS="+strings.Join(peers, ","))
		p.cmd.Stderr = os.Stderr
		out, err := p.cmd.StdoutPipe()
		must(t, err)
		must(t, p.cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("server %s: %q, %v", p.id, line, err)
		}
	}
	for _, p := range procs {
		start(p)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Wait()
			}
		}
	})
	hc := &http.Client{Timeout: 10 * time.Second}
	state := func(p *serverProc) string {
		r, err := hc.Get("http://" + p.http + "/status")
		if err != nil {
			return err.Error()
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return string(b)
	}
	write := func(p *serverProc, key string) error {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPut, "http://"+p.http+"/k/"+key, nil)
		r, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer r.Body.Close()
		if r.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(r.Body)
			return errors.New(string(b))
		}
		return nil
	}
	leader := func() *serverProc {
		var l *serverProc
		eventually(t, "a leader that writes", func() error {
			for _, p := range procs {
				if state(p) == "Leader" {
					l = p
					return write(p, "probe")
				}
			}
			return errors.New("no leader")
		})
		return l
	}
	var took []time.Duration
	for trial := range trials {
		l := leader()
		// Every server follows before the kill: a restarted one has
		// caught up.
		eventually(t, "all servers up", func() error {
			for _, p := range procs {
				if s := state(p); s != "Leader" && s != "Follower" {
					return fmt.Errorf("%s: %s", p.id, s)
				}
			}
			return nil
		})
		must(t, l.cmd.Process.Signal(syscall.SIGKILL))
		killed := time.Now()
		_ = l.cmd.Wait()
		var d time.Duration
		eventually(t, "a write after the kill", func() error {
			for _, p := range procs {
				if p != l && write(p, fmt.Sprintf("t%d", trial)) == nil {
					d = time.Since(killed)
					return nil
				}
			}
			return errors.New("no server acknowledges")
		})
		took = append(took, d)
		t.Logf("trial %d: killed %s, a write acknowledged %v later", trial, l.id, d.Round(time.Millisecond))
		start(l)
	}
	slices.Sort(took)
	pct := func(q float64) time.Duration { return took[min(len(took)-1, int(q*float64(len(took))))] }
	t.Logf("failover over %d trials: p50 %v, p99 %v, max %v", len(took), pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}
