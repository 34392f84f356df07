// Package kubetest starts a real etcd and kube-apiserver for tests, from
// the binaries scripts/k8s/build.sh builds and caches. There is no kubelet,
// scheduler or controller-manager: pods are stored and watched but never
// run, and nothing garbage-collects owned objects.
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// Version is the Kubernetes version the binaries are built at (and the
// client-go version calnet requires: v0.37.2).
const Version = "v1.37.2"

// BinDir is where the binaries are: $CALNET_K8S_BIN, which
// scripts/k8s/build.sh prints (by default ~/.cache/calnet/k8s/<Version>/bin).
// Unset, the tests that need a cluster skip.
func BinDir() string { return os.Getenv("CALNET_K8S_BIN") }

// Missing names the binaries that are not built, or is empty.
func Missing() []string {
	if BinDir() == "" {
		return []string{"etcd", "kube-apiserver"}
	}
	var out []string
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if fi, err := os.Stat(filepath.Join(BinDir(), b)); err != nil || fi.Mode()&0o111 == 0 {
			out = append(out, b)
		}
	}
	return out
}

// Users the API server knows, by static token. Admin is in system:masters;
// the others have no rights until a test binds them a role.
var Users = []string{"admin", "driver", "nobody"}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// URL of the API server (https://127.0.0.1:port).
	URL string
	// CAFile is the PEM of the CA the API server's certificate chains to.
	CAFile string
	dir    string
	tokens map[string]string
	procs  []*exec.Cmd
	logs   []*os.File
	once   sync.Once
}

// Start runs etcd and kube-apiserver with their state in dir and returns
// once the API server is ready, or ctx ends.
func Start(ctx context.Context, dir string) (c *Cluster, err error) {
	if m := Missing(); len(m) > 0 {
		return nil, fmt.Errorf("kubetest: %s not built in %s: run scripts/k8s/build.sh", strings.Join(m, ", "), BinDir())
	}
	c = &Cluster{dir: dir, tokens: map[string]string{}}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, err
	}
	if err := writePKI(pki); err != nil {
		return nil, err
	}
	c.CAFile = filepath.Join(pki, "ca.crt")
	var lines []string
	for i, u := range Users {
		tok := randHex(16)
		c.tokens[u] = tok
		line := fmt.Sprintf("%s,%s,%d", tok, u, 1000+i)
		if u == "admin" {
			line += `,"system:masters"`
		}
		lines = append(lines, line)
	}
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.run("etcd", filepath.Join(BinDir(), "etcd"),
		"--data-dir", filepath.Join(dir, "etcd"), "--name", "kubetest",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "kubetest="+peerURL, "--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return nil, err
	}
	c.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	if err := c.run("kube-apiserver", filepath.Join(BinDir(), "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--etcd-prefix=/kubetest",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[2]), "--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none", "--cert-dir="+filepath.Join(dir, "certs"),
		"--tls-cert-file="+filepath.Join(pki, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(pki, "apiserver.key"),
		"--client-ca-file="+c.CAFile, "--token-auth-file="+filepath.Join(pki, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24"); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Config is a client configuration for one of Users.
func (c *Cluster) Config(user string) *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     c.tokens[user],
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile},
		QPS:             200, Burst: 400,
	}
}

// Kubeconfig writes a kubeconfig file for user and returns its path.
func (c *Cluster) Kubeconfig(user string) (string, error) {
	p := filepath.Join(c.dir, user+".kubeconfig")
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: kubetest, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: %s, user: {token: %q}}]
contexts: [{name: kubetest, context: {cluster: kubetest, user: %s}}]
current-context: kubetest
`, c.URL, c.CAFile, user, c.tokens[user], user)
	return p, os.WriteFile(p, []byte(body), 0o600)
}

// Stop kills the API server and etcd.
func (c *Cluster) Stop() {
	c.once.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			p := c.procs[i]
			_ = p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = p.Process.Kill()
				<-done
			}
		}
		for _, f := range c.logs {
			f.Close()
		}
	})
}

// Log returns the tail of a component's log ("etcd", "kube-apiserver").
func (c *Cluster) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (c *Cluster) run(name, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	c.logs = append(c.logs, logf)
	return nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.tokens["admin"])
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		for _, p := range c.procs {
			if p.ProcessState != nil {
				return fmt.Errorf("kubetest: %s exited", p.Path)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: API server not ready (%s): %w\n%s", last, ctx.Err(), c.Log("kube-apiserver"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// writePKI writes a CA, the API server's serving certificate for
// 127.0.0.1 and the service-account signing key pair.
func writePKI(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	files := map[string][]byte{}
	files["ca.crt"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files["apiserver.crt"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER})
	for name, k := range map[string]*ecdsa.PrivateKey{"apiserver.key": srvKey, "sa.key": saKey} {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return err
		}
		files[name] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	files["sa.pub"] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
