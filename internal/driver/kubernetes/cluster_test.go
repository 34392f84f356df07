package kubernetes

import (
	"context"
	"crypto/rand"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/driver/kubernetes/kubetest"
	"github.com/soulfra/calnet/internal/sandbox"
)

// One etcd and kube-apiserver serve every test of the package; each test
// works in its own namespace.
var (
	clusterOnce sync.Once
	theCluster  *kubetest.Cluster
	clusterErr  error
	clusterDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theCluster != nil {
		theCluster.Stop()
	}
	if clusterDir != "" {
		os.RemoveAll(clusterDir)
	}
	os.Exit(code)
}

// cluster returns the package's API server, starting it on first use; it
// skips the test, saying why, when the binaries are not built.
func cluster(t *testing.T) *kubetest.Cluster {
	t.Helper()
	if kubetest.BinDir() == "" {
		t.Skip("skipped, no kube-apiserver to test against: CALNET_K8S_BIN is not set (CALNET_K8S_BIN=$(scripts/k8s/build.sh | tail -1) builds etcd and kube-apiserver and names their directory)")
	}
	if m := kubetest.Missing(); len(m) > 0 {
		t.Skipf("skipped, no kube-apiserver to test against: %s not built in %q (CALNET_K8S_BIN=$(scripts/k8s/build.sh | tail -1) builds them)", strings.Join(m, ", "), kubetest.BinDir())
	}
	clusterOnce.Do(func() {
		clusterDir, clusterErr = os.MkdirTemp("", "calnet-kubetest-")
		if clusterErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		theCluster, clusterErr = kubetest.Start(ctx, clusterDir)
	})
	if clusterErr != nil {
		t.Fatalf("starting etcd and kube-apiserver: %v", clusterErr)
	}
	return theCluster
}

func clientFor(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// env is one test's namespace, with the driver's user granted Rules there.
type env struct {
	c     *kubetest.Cluster
	ns    string
	net   string
	admin kubernetes.Interface
	drv   kubernetes.Interface
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := cluster(t)
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	e := &env{c: c, ns: fmt.Sprintf("t-%08x-%s", h.Sum32(), randID()[:6]), net: randID(),
		admin: clientFor(t, c.Config("admin")), drv: clientFor(t, c.Config("driver"))}
	ctx := t.Context()
	if _, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.grant(t, "driver", Rules, "")
	return e
}

// grant gives user the rules in the test's namespace (the cluster-scoped
// ones cluster-wide), leaving out the verb on the resource named by omit
// ("verb resource").
func (e *env) grant(t *testing.T, user string, rules []Rule, omit string) {
	t.Helper()
	ctx := t.Context()
	var ns, cl []rbacv1.PolicyRule
	for _, r := range rules {
		var verbs []string
		for _, v := range r.Verbs {
			if v+" "+r.Resource != omit {
				verbs = append(verbs, v)
			}
		}
		pr := rbacv1.PolicyRule{APIGroups: []string{r.Group}, Resources: []string{r.Resource}, Verbs: verbs}
		if r.Namespaced {
			ns = append(ns, pr)
		} else {
			cl = append(cl, pr)
		}
	}
	name := "calnet-" + user
	subj := []rbacv1.Subject{{Kind: "User", Name: user, APIGroup: "rbac.authorization.k8s.io"}}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Rules: ns}
	if _, err := e.admin.RbacV1().Roles(e.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		if _, err := e.admin.RbacV1().Roles(e.ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Subjects: subj,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name}}
	if _, err := e.admin.RbacV1().RoleBindings(e.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !isAlreadyExists(err) {
		t.Fatal(err)
	}
	cname := "calnet-" + user + "-" + e.ns
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: cname}, Rules: cl}
	if _, err := e.admin.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil && !isAlreadyExists(err) {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: cname}, Subjects: subj,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cname}}
	if _, err := e.admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !isAlreadyExists(err) {
		t.Fatal(err)
	}
}

func (e *env) config() Config {
	return Config{Client: e.drv, Namespace: e.ns, Network: e.net, Image: "local/calnet:test"}
}

// driver starts a driver as the driver user; it is closed with the test.
func (e *env) driver(t *testing.T) *Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	d, err := New(ctx, e.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func randID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return identity.IDFromKeys(b, nil).String()
}

func (e *env) spec(id string, lineage ...string) driver.Spec {
	return driver.Spec{
		CalID: id, Network: e.net, Lineage: lineage, Args: []string{"cal"},
		Env: []string{"GOMAXPROCS=1"}, UID: 20001, GID: 20001,
		Features: []sandbox.Feature{sandbox.ReadOnlyRoot, sandbox.OwnUID, sandbox.NoNewPrivs, sandbox.Seccomp, sandbox.CgroupCPU, sandbox.CgroupMemory, sandbox.DiskQuota},
		Limits:   driver.Limits{CPUMillis: 100, MemoryBytes: 64 << 20, PIDs: 64, DiskBytes: 32 << 20},
		// A Cal's key-encryption identity, as the control plane passes it.
		Secret: "AGE-SECRET-KEY-PQ-1" + strings.ToUpper(randID()) + strings.ToUpper(randID()),
	}
}

func start(t *testing.T, d *Driver, spec driver.Spec) *Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inst, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start %s: %v", spec.CalID, err)
	}
	return inst.(*Instance)
}

// waitReturns runs inst.Wait and returns its answer, failing the test if
// it has not returned within a minute.
func waitReturns(t *testing.T, inst *Instance) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- inst.Wait() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("Wait of pod %s did not return", inst.Name())
		return nil
	}
}

// eventually polls cond until it holds or a minute passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) podGone(t *testing.T, name string) bool {
	_, err := e.admin.CoreV1().Pods(e.ns).Get(t.Context(), name, metav1.GetOptions{})
	return isNotFound(err)
}

func (e *env) policyGone(t *testing.T, name string) bool {
	_, err := e.admin.NetworkingV1().NetworkPolicies(e.ns).Get(t.Context(), name, metav1.GetOptions{})
	return isNotFound(err)
}

// stallProxy forwards TCP connections to target until stalled, after which
// it forwards nothing more on any connection, open or new, and closes none:
// an API server too slow to answer (not one that went away).
type stallProxy struct {
	l       net.Listener
	target  string
	stalled atomic.Bool
	done    chan struct{} // closed at cleanup: held copies end
	mu      sync.Mutex
	open    []net.Conn
}

// forward copies src to dst until either ends, or holds what it read once
// the proxy is stalled, until cleanup.
func (p *stallProxy) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.stalled.Load() {
				<-p.done
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{l: l, target: target, done: make(chan struct{})}
	var conns sync.WaitGroup
	mu := &p.mu
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			p.open = append(p.open, c)
			mu.Unlock()
			if p.stalled.Load() {
				continue // held open, never answered
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				up, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				mu.Lock()
				p.open = append(p.open, up)
				mu.Unlock()
				go func() { p.forward(up, c); up.Close() }()
				p.forward(c, up)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		close(p.done)
		mu.Lock()
		for _, c := range p.open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	return p
}

// stall makes every connection, open or new, hang without an answer.
func (p *stallProxy) stall() { p.stalled.Store(true) }

func (p *stallProxy) addr() string { return p.l.Addr().String() }
