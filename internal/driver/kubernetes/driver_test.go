package kubernetes

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// Without a kubelet no pod ever runs here: these tests check what the API
// server stores and what the driver's watch makes of it, and play the
// kubelet's part (status updates, bound tokens) with the admin's rights.

func TestStartCreatesAHardenedLabelledPod(t *testing.T) {
	e := newEnv(t)
	d := e.driver(t)
	root, parent, id := randID(), randID(), randID()
	spec := e.spec(id, root, parent)
	inst := start(t, d, spec)

	pod, err := e.admin.CoreV1().Pods(e.ns).Get(t.Context(), inst.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{LabelNetwork: e.net, LabelCal: id, LabelParent: parent, LabelDepth: "2",
		LineagePrefix + root: "", LineagePrefix + parent: "", LineagePrefix + id: ""} {
		if got, ok := pod.Labels[k]; !ok || got != want {
			t.Errorf("label %s = %q (present %v), want %q", k, got, ok, want)
		}
	}
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	if *sc.RunAsUser != 20001 || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container security context as stored: %+v", sc)
	}
	if *pod.Spec.AutomountServiceAccountToken || pod.Spec.ServiceAccountName != "calnet-cal" || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod spec: automount %v, service account %q, restart %q", *pod.Spec.AutomountServiceAccountToken, pod.Spec.ServiceAccountName, pod.Spec.RestartPolicy)
	}
	lim := c.Resources.Limits
	if lim.Cpu().MilliValue() != 100 || lim.Memory().Value() != 64<<20 || lim.StorageEphemeral().Value() != 32<<20 {
		t.Errorf("limits as stored: %v", lim)
	}

	np, err := e.admin.NetworkingV1().NetworkPolicies(e.ns).Get(t.Context(), inst.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Cal's NetworkPolicy: %v", err)
	}
	if len(np.Spec.Ingress) != 0 || len(np.Spec.Egress) != 0 || len(np.Spec.PolicyTypes) != 2 ||
		np.Spec.PodSelector.MatchLabels[LabelCal] != id || np.OwnerReferences[0].UID != pod.UID {
		t.Errorf("NetworkPolicy is not the Cal's default deny: %+v", np)
	}

	iso, err := inst.Isolation()
	if err != nil {
		t.Fatal(err)
	}
	for f, on := range iso {
		want := f != sandbox.CgroupPIDs
		if on != want {
			t.Errorf("Isolation()[%s] = %v, want %v", f, on, want)
		}
	}
	if ids, err := d.Recorded(); err != nil || !slices.Equal(ids, []string{id}) {
		t.Errorf("Recorded() = %v, %v; want [%s]", ids, err, id)
	}
}

// TestNoKeyMaterialInTheAPI lists every object of every listable resource
// the API server has, in the test's namespace and cluster-wide, after a Cal
// was started and fetched its secret, and finds the secret nowhere (nor in
// base64).
func TestNoKeyMaterialInTheAPI(t *testing.T) {
	e := newEnv(t)
	d := e.driver(t)
	spec := e.spec(randID())
	inst := start(t, d, spec)

	got := handoff(t, e, d, inst.Pod())
	if got != spec.Secret {
		t.Fatalf("handoff gave %q, want the Cal's secret", got)
	}

	needles := [][]byte{[]byte(spec.Secret), []byte(base64.StdEncoding.EncodeToString([]byte(spec.Secret))),
		[]byte(base64.StdEncoding.EncodeToString([]byte(spec.Secret))[:24])}
	cfg := e.c.Config("admin")
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := e.admin.Discovery().ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	objects := 0
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if !slices.Contains(r.Verbs, "list") {
				continue
			}
			res := dyn.Resource(gv.WithResource(r.Name))
			var ul any
			if r.Namespaced {
				ul, err = res.Namespace(e.ns).List(t.Context(), metav1.ListOptions{})
			} else {
				ul, err = res.List(t.Context(), metav1.ListOptions{})
			}
			if err != nil {
				t.Fatalf("list %s: %v", r.Name, err)
			}
			b, err := json.Marshal(ul)
			if err != nil {
				t.Fatal(err)
			}
			objects += bytes.Count(b, []byte(`"resourceVersion"`))
			for _, n := range needles {
				if bytes.Contains(b, n) {
					t.Errorf("%s holds the Cal's secret", r.Name)
				}
			}
		}
	}
	if objects < 10 {
		t.Fatalf("read only %d objects: the check read nothing", objects)
	}
	t.Logf("read %d objects of every listable resource: no key material", objects)
}

// handoff plays the Cal in its pod: a token bound to the pod (as the
// kubelet mints for its projected volume), a key made in memory, the
// secret fetched and opened.
func handoff(t *testing.T, e *env, d *Driver, pod *corev1.Pod) string {
	t.Helper()
	tok := boundToken(t, e, pod, d.audience())
	k, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := d.Handoff(t.Context(), HandoffRequest{Token: tok, Recipient: k.Recipient().String()})
	if err != nil {
		t.Fatalf("Handoff: %v", err)
	}
	r, err := age.Decrypt(bytes.NewReader(sealed), k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func boundToken(t *testing.T, e *env, pod *corev1.Pod, audience string) string {
	t.Helper()
	exp := int64(600)
	tr, err := e.admin.CoreV1().ServiceAccounts(e.ns).CreateToken(t.Context(), pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &exp,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest bound to pod %s: %v", pod.Name, err)
	}
	return tr.Status.Token
}

func TestHandoffRefusesAllButTheCalsPodOnce(t *testing.T) {
	e := newEnv(t)
	d := e.driver(t)
	a := start(t, d, e.spec(randID()))
	b := start(t, d, e.spec(randID()))
	k, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	rcpt := k.Recipient().String()

	// A pod of the namespace that the driver did not start.
	other, err := e.admin.CoreV1().Pods(e.ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "intruder", Labels: map[string]string{LabelNetwork: e.net, LabelCal: randID()}},
		Spec: corev1.PodSpec{ServiceAccountName: "calnet-cal", AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{Name: "x", Image: "x"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watch sees the intruder", func() bool { _, err := d.pods.Pods(e.ns).Get("intruder"); return err == nil })

	cases := []struct {
		name string
		req  func() HandoffRequest
		want string
	}{
		{"empty token", func() HandoffRequest { return HandoffRequest{Recipient: rcpt} }, "token: 0 bytes"},
		{"oversized token", func() HandoffRequest {
			return HandoffRequest{Token: strings.Repeat("a", maxHandoffToken+1), Recipient: rcpt}
		}, "token: 16385 bytes"},
		{"bad recipient", func() HandoffRequest { return HandoffRequest{Token: "x", Recipient: "age1notakey"} }, "recipient:"},
		{"forged token", func() HandoffRequest { return HandoffRequest{Token: "eyJhbGciOi.forged.token", Recipient: rcpt} }, "does not accept the token"},
		{"wrong audience", func() HandoffRequest {
			return HandoffRequest{Token: boundToken(t, e, a.Pod(), "https://kubernetes.default.svc"), Recipient: rcpt}
		}, "does not accept the token"},
		{"pod not started by the driver", func() HandoffRequest {
			return HandoffRequest{Token: boundToken(t, e, other, d.audience()), Recipient: rcpt}
		}, "no secret to fetch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Handoff(t.Context(), tc.req())
			if !errors.Is(err, ErrHandoffRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Handoff: %v; want ErrHandoffRefused with %q", err, tc.want)
			}
		})
	}

	if got := handoff(t, e, d, a.Pod()); got == "" {
		t.Fatal("empty secret")
	}
	_, err = d.Handoff(t.Context(), HandoffRequest{Token: boundToken(t, e, a.Pod(), d.audience()), Recipient: rcpt})
	if !errors.Is(err, ErrHandoffRefused) || !strings.Contains(err.Error(), "fetched already") {
		t.Fatalf("second handoff for one pod: %v", err)
	}

	// A token of a deleted pod no longer verifies.
	tok := boundToken(t, e, b.Pod(), d.audience())
	if err := b.Stop(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	_, err = d.Handoff(t.Context(), HandoffRequest{Token: tok, Recipient: rcpt})
	if !errors.Is(err, ErrHandoffRefused) {
		t.Fatalf("handoff for a deleted pod: %v", err)
	}
	t.Logf("deleted pod's token: %v", err)
}

// TestWatchSeesStatusAndFailure plays the kubelet: the pod runs, then its
// container is OOM-killed. The instance learns both from the watch; Wait
// reports the reason and removes the pod and its policy.
func TestWatchSeesStatusAndFailure(t *testing.T) {
	e := newEnv(t)
	d := e.driver(t)
	inst := start(t, d, e.spec(randID()))

	setStatus(t, e, inst.Name(), corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
		Name: containerName, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := inst.WaitFor(ctx, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
		t.Fatal(err)
	}

	setStatus(t, e, inst.Name(), corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
		Name: containerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}})
	err := waitReturns(t, inst)
	if err == nil || !strings.Contains(err.Error(), "exited 137") || !strings.Contains(err.Error(), "OOMKilled") {
		t.Fatalf("Wait = %v; want the exit code and OOMKilled", err)
	}
	if !e.podGone(t, inst.Name()) || !e.policyGone(t, inst.Name()) {
		t.Fatal("Wait left the ended pod or its NetworkPolicy")
	}
}

func setStatus(t *testing.T, e *env, name string, st corev1.PodStatus) {
	t.Helper()
	pod, err := e.admin.CoreV1().Pods(e.ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = st
	if _, err := e.admin.CoreV1().Pods(e.ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("status update as the kubelet would: %v", err)
	}
}

// TestPodDeletedBehindTheDriversBack: Wait reports the deletion, and a new
// Start (the supervisor's healing) brings the Cal back as one pod.
func TestPodDeletedBehindTheDriversBack(t *testing.T) {
	e := newEnv(t)
	d := e.driver(t)
	spec := e.spec(randID())
	inst := start(t, d, spec)
	if err := e.admin.CoreV1().Pods(e.ns).Delete(t.Context(), inst.Name(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := waitReturns(t, inst)
	if !errors.Is(err, ErrDeletedBehindBack) {
		t.Fatalf("Wait = %v; want ErrDeletedBehindBack", err)
	}
	if !e.policyGone(t, inst.Name()) {
		t.Fatal("the deleted pod's NetworkPolicy is left")
	}
	again := start(t, d, spec)
	pods, err := e.admin.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{LabelSelector: LabelCal + "=" + spec.CalID})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Name != again.Name() {
		t.Fatalf("after healing, the Cal has %d pods", len(pods.Items))
	}
}

func TestStopDeletesThePodAndPolicy(t *testing.T) {
	e := newEnv(t)
	d := e.driver(t)
	inst := start(t, d, e.spec(randID()))
	if err := inst.Stop(t.Context(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := waitReturns(t, inst); err != nil {
		t.Fatalf("Wait after Stop = %v, want nil", err)
	}
	if !e.podGone(t, inst.Name()) || !e.policyGone(t, inst.Name()) {
		t.Fatal("Stop left the pod or its NetworkPolicy")
	}
}

// TestAdoptAfterControlPlaneRestart: a second driver (a restarted control
// plane) finds the running Cals by their labels and adopts them; an ended
// pod is removed and reported not running; of two live pods of one Cal the
// newer is kept.
func TestAdoptAfterControlPlaneRestart(t *testing.T) {
	e := newEnv(t)
	d1 := e.driver(t)
	a, b, c := e.spec(randID()), e.spec(randID()), e.spec(randID())
	ia, ib := start(t, d1, a), start(t, d1, b)
	ic := start(t, d1, c)
	dupOld := ib
	dupNew := start(t, d1, b) // a crash between two starts left two pods
	setStatus(t, e, ic.Name(), corev1.PodStatus{Phase: corev1.PodFailed})
	d1.Close()

	d2 := e.driver(t)
	ids, err := d2.Recorded()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{a.CalID, b.CalID, c.CalID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("Recorded() = %v, want %v", ids, want)
	}
	got, err := d2.Adopt(t.Context(), a.CalID)
	if err != nil || got.(*Instance).Name() != ia.Name() {
		t.Fatalf("Adopt(a) = %v, %v; want pod %s", got, err, ia.Name())
	}
	got, err = d2.Adopt(t.Context(), b.CalID)
	if err != nil || got.(*Instance).Name() != dupNew.Name() {
		t.Fatalf("Adopt(b) = %v, %v; want the newer pod %s", got, err, dupNew.Name())
	}
	eventually(t, "the older duplicate removed", func() bool { return e.podGone(t, dupOld.Name()) })
	if _, err := d2.Adopt(t.Context(), c.CalID); !errors.Is(err, driver.ErrNotRunning) {
		t.Fatalf("Adopt(ended) = %v, want ErrNotRunning", err)
	}
	if !e.podGone(t, ic.Name()) {
		t.Fatal("the ended pod was not removed")
	}
	if _, err := d2.Adopt(t.Context(), randID()); !errors.Is(err, driver.ErrNotRunning) {
		t.Fatalf("Adopt(unknown) = %v, want ErrNotRunning", err)
	}
	// The adopted instance is watched: its deletion is news.
	adopted, _ := d2.Adopt(t.Context(), a.CalID)
	if err := e.admin.CoreV1().Pods(e.ns).Delete(t.Context(), ia.Name(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitReturns(t, adopted.(*Instance)); !errors.Is(err, ErrDeletedBehindBack) {
		t.Fatalf("Wait of an adopted pod = %v", err)
	}
}

// TestRevocationDeletesTheSubtreesPods: root -> a -> b, root -> c;
// revoking a deletes the pods and policies of a and b only.
func TestRevocationDeletesTheSubtreesPods(t *testing.T) {
	e := newEnv(t)
	d := e.driver(t)
	root, a, b, c := randID(), randID(), randID(), randID()
	ir := start(t, d, e.spec(root))
	ia := start(t, d, e.spec(a, root))
	ib := start(t, d, e.spec(b, root, a))
	ic := start(t, d, e.spec(c, root))
	if err := d.DeleteSubtree(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*Instance{ia, ib} {
		if err := waitReturns(t, in); err == nil {
			t.Errorf("Wait of revoked %s = nil", in.Name())
		}
		if !e.podGone(t, in.Name()) || !e.policyGone(t, in.Name()) {
			t.Errorf("revoked %s: pod or policy left", in.Name())
		}
	}
	for _, in := range []*Instance{ir, ic} {
		if e.podGone(t, in.Name()) || e.policyGone(t, in.Name()) {
			t.Errorf("%s outside the subtree was deleted", in.Name())
		}
	}
}

func TestAPIServerUnreachable(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg := e.c.Config("driver")
	cfg.Host = "https://" + addr
	c := e.config()
	c.Client = clientFor(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = New(ctx, c)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("New against a closed port = %v; want unreachable, connection refused", err)
	}
}

// TestAPIServerTooSlow: the API server stops answering (a proxy in front
// of it holds every connection); New and Start fail with the reason when
// their context ends.
func TestAPIServerTooSlow(t *testing.T) {
	e := newEnv(t)
	p := newStallProxy(t, strings.TrimPrefix(e.c.URL, "https://"))
	cfg := e.c.Config("driver")
	cfg.Host = "https://" + p.addr()
	cfg.TLSClientConfig.ServerName = "127.0.0.1"
	c := e.config()
	c.Client = clientFor(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	d, err := New(ctx, c)
	cancel()
	if err != nil {
		t.Fatalf("New through the proxy: %v", err)
	}
	defer d.Close()
	p.stall()
	ctx, cancel = context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = d.Start(ctx, e.spec(randID()))
	if err == nil || !strings.Contains(err.Error(), "did not answer in time") || !strings.Contains(err.Error(), "create pods") {
		t.Fatalf("Start against a stalled API server = %v; want create pods ... did not answer in time", err)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel2()
	_, err = New(ctx2, c)
	if err == nil || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("New against a stalled API server = %v", err)
	}
}

func TestRBACDeniedNamesVerbAndResource(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	c := e.config()
	c.Client = clientFor(t, e.c.Config("nobody"))
	_, err := New(ctx, c)
	var re *RBACError
	if !errors.As(err, &re) || !slices.Contains(re.Denied, "create pods") || !slices.Contains(re.Denied, "create tokenreviews") {
		t.Fatalf("New as a user with no rights = %v; want an RBACError naming create pods and create tokenreviews", err)
	}

	// One rule missing is named alone.
	e.grant(t, "nobody", Rules, "create networkpolicies")
	_, err = New(ctx, c)
	if !errors.As(err, &re) || !slices.Equal(re.Denied, []string{"create networkpolicies"}) {
		t.Fatalf("New without create networkpolicies = %v", err)
	}

	// A right withdrawn while the driver runs: Start says which.
	d := e.driver(t)
	e.grant(t, "driver", Rules, "create pods")
	eventually(t, "RBAC withdraws create pods", func() bool {
		_, err := d.Start(ctx, e.spec(randID()))
		if err == nil {
			return false
		}
		if !strings.Contains(err.Error(), "RBAC denies create on pods") {
			t.Fatalf("Start without create pods = %v", err)
		}
		return true
	})
}

func TestBadSpecNamesTheField(t *testing.T) {
	good := driver.Spec{CalID: randID(), Network: randID(), UID: 20001, GID: 20001}
	cases := []struct {
		name string
		mod  func(*driver.Spec)
		want string
	}{
		{"empty id", func(s *driver.Spec) { s.CalID = "" }, "CalID is empty"},
		{"id with a slash", func(s *driver.Spec) { s.CalID = "a/b" }, "CalID"},
		{"long id", func(s *driver.Spec) { s.CalID = strings.Repeat("a", 41) }, "longer than 40"},
		{"lineage", func(s *driver.Spec) { s.Lineage = []string{"UPPER"} }, "Lineage[0]"},
		{"root", func(s *driver.Spec) { s.UID = 0 }, "non-root uid"},
		{"pids feature", func(s *driver.Spec) { s.Features = []sandbox.Feature{sandbox.CgroupPIDs} }, `"cgroup-pids" cannot be expressed`},
		{"negative limit", func(s *driver.Spec) { s.Limits.MemoryBytes = -1 }, "negative limit"},
		{"env", func(s *driver.Spec) { s.Env = []string{"NOEQUALS"} }, `Env entry "NOEQUALS"`},
	}
	if err := checkSpec(good); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.mod(&s)
			if err := checkSpec(s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkSpec = %v; want %q", err, tc.want)
			}
		})
	}
}

// TestInForceReadsTheStoredPod: a setting that admission (or anyone) took
// away shows as not in force.
func TestInForceReadsTheStoredPod(t *testing.T) {
	d := &Driver{cfg: Config{Namespace: "n", Image: "i", Command: []string{"/calnet"}, ServiceAccount: "sa", Network: randID()}}
	spec := driver.Spec{CalID: randID(), UID: 20001, GID: 20001, Limits: driver.Limits{CPUMillis: 100, MemoryBytes: 1 << 26, DiskBytes: 1 << 26}}
	spec.Network = d.cfg.Network
	cases := []struct {
		name string
		mod  func(*corev1.Pod)
		off  sandbox.Feature
	}{
		{"host pid", func(p *corev1.Pod) { p.Spec.HostPID = true }, sandbox.PIDNamespace},
		{"shared pid", func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = new(true) }, sandbox.PIDNamespace},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, sandbox.NetNamespace},
		{"writable root", func(p *corev1.Pod) { p.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = new(false) }, sandbox.ReadOnlyRoot},
		{"other uid", func(p *corev1.Pod) { p.Spec.Containers[0].SecurityContext.RunAsUser = new(int64(1)) }, sandbox.OwnUID},
		{"escalation", func(p *corev1.Pod) { p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = new(true) }, sandbox.NoNewPrivs},
		{"privileged", func(p *corev1.Pod) { p.Spec.Containers[0].SecurityContext.Privileged = new(true) }, sandbox.NoNewPrivs},
		{"unconfined", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, sandbox.Seccomp},
		{"no memory limit", func(p *corev1.Pod) { delete(p.Spec.Containers[0].Resources.Limits, corev1.ResourceMemory) }, sandbox.CgroupMemory},
		{"a capability added", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, NoCapabilities},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := d.podFor(spec)
			if m := inForce(p, 20001, true); !m[tc.off] {
				t.Fatalf("%s not in force before the change", tc.off)
			}
			tc.mod(p)
			if m := inForce(p, 20001, true); m[tc.off] {
				t.Fatalf("%s still reported in force", tc.off)
			}
		})
	}
}
