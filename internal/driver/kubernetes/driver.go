// Package kubernetes is the Cal driver for clusters: each Cal is a Pod,
// labelled with its network, Cal ID, parent, depth and lineage, running
// `calnet cal` as its own non-root uid with a read-only root filesystem, no
// privilege escalation, every capability dropped, the runtime's default
// seccomp profile, the CPU, memory and ephemeral-storage limits of its
// blessing's quota, and a default-deny NetworkPolicy of its own.
//
// The driver watches its network's pods and policies through client-go
// informers (one list, then a watch): an instance learns that its pod ended,
// failed or was deleted behind the driver's back from the watch, never by
// polling. A later control plane adopts the running pods by their labels.
//
// A Cal's secret never goes into the Kubernetes API: the pod carries only a
// projected service-account token bound to itself, with which the Cal asks
// the control plane for its secret, sealed to a key the Cal made in memory
// (handoff.go).
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersnetworkingv1 "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// Config configures the driver.
type Config struct {
	// Client talks to the API server (see ClientFromKubeconfig).
	Client kubernetes.Interface
	// Namespace holds the network's pods; the driver needs no rights
	// outside it except creating TokenReviews (see Rules).
	Namespace string
	// Network is the network ID: the driver sees and adopts only the pods
	// labelled with it.
	Network string
	// Image runs `calnet cal`; Command is its entrypoint (default
	// ["/calnet"]), to which each Spec's Args are appended.
	Image      string
	Command    []string
	PullPolicy corev1.PullPolicy
	// ServiceAccount the Cal pods run as (default "calnet-cal"); created
	// when missing. Its token is never mounted: the pods get only their
	// bound handoff token.
	ServiceAccount string
	// ControlPlaneSelector, when set, labels the control plane's pods: the
	// Cals' NetworkPolicies allow traffic to and from them, and nothing else.
	ControlPlaneSelector map[string]string
	Log                  *slog.Logger
}

// Driver runs Cals as pods.
type Driver struct {
	cfg      Config
	log      *slog.Logger
	factory  informers.SharedInformerFactory
	pods     listerscorev1.PodLister
	policies listersnetworkingv1.NetworkPolicyLister
	stop     context.CancelFunc

	mu sync.Mutex
	// insts are the instances this driver handed out, by pod UID.
	insts map[string]*Instance
	// secrets are the Cals' secrets by pod UID, until their pod fetched
	// them once (handoff.go).
	secrets map[string]string
	// watchErr is the informers' last list or watch error, for New's
	// answer when the caches do not fill.
	watchErr error
}

var _ driver.Driver = (*Driver)(nil)

// Rules are the RBAC rules the driver needs, as verb on resource (group
// prefix for non-core groups). New checks them first, so that a denied one
// is named before anything is written.
var Rules = []Rule{
	{"pods", "", []string{"get", "list", "watch", "create", "delete", "deletecollection"}, true},
	{"pods/status", "", []string{"get"}, true},
	{"networkpolicies", "networking.k8s.io", []string{"get", "list", "watch", "create", "delete", "deletecollection"}, true},
	{"serviceaccounts", "", []string{"get", "create"}, true},
	{"tokenreviews", "authentication.k8s.io", []string{"create"}, false},
}

// Rule is one resource and the verbs the driver needs on it.
type Rule struct {
	Resource   string
	Group      string
	Verbs      []string
	Namespaced bool
}

// New checks the driver's rights, makes sure its service account exists,
// and starts its informers; it returns once their caches hold the cluster's
// state (or ctx ends: the error then says what the API server answered).
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubernetes: Config.Client is nil")
	}
	if err := checkID("Network", cfg.Network); err != nil {
		return nil, err
	}
	if cfg.Namespace == "" || cfg.Image == "" {
		return nil, errors.New("kubernetes: Config.Namespace and Config.Image are required")
	}
	if len(cfg.Command) == 0 {
		cfg.Command = []string{"/calnet"}
	}
	if cfg.PullPolicy == "" {
		cfg.PullPolicy = corev1.PullIfNotPresent
	}
	if cfg.ServiceAccount == "" {
		cfg.ServiceAccount = "calnet-cal"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	d := &Driver{cfg: cfg, log: cfg.Log.With("driver", "kubernetes"), insts: map[string]*Instance{}, secrets: map[string]string{}}
	if err := d.checkRights(ctx); err != nil {
		return nil, err
	}
	if err := d.ensureServiceAccount(ctx); err != nil {
		return nil, err
	}
	d.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelNetwork + "=" + cfg.Network }))
	podInf := d.factory.Core().V1().Pods()
	npInf := d.factory.Networking().V1().NetworkPolicies()
	for _, inf := range []cache.SharedIndexInformer{podInf.Informer(), npInf.Informer()} {
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			d.mu.Lock()
			d.watchErr = err
			d.mu.Unlock()
		}); err != nil {
			return nil, err
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { d.podChanged(obj, false) },
		UpdateFunc: func(_, obj any) { d.podChanged(obj, false) },
		DeleteFunc: func(obj any) { d.podChanged(obj, true) },
	}); err != nil {
		return nil, err
	}
	d.pods, d.policies = podInf.Lister(), npInf.Lister()
	runCtx, stop := context.WithCancel(context.Background())
	d.stop = stop
	d.factory.Start(runCtx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced, npInf.Informer().HasSynced) {
		d.Close()
		d.mu.Lock()
		werr := d.watchErr
		d.mu.Unlock()
		if werr != nil {
			return nil, fmt.Errorf("kubernetes: watching pods in namespace %s: %w", cfg.Namespace, classify(werr))
		}
		return nil, fmt.Errorf("kubernetes: watching pods in namespace %s: %w", cfg.Namespace, ctx.Err())
	}
	return d, nil
}

// Close stops the informers. Running pods are left alone: a later control
// plane adopts them.
func (d *Driver) Close() {
	if d.stop != nil {
		d.stop()
		d.factory.Shutdown()
	}
}

// checkRights asks the API server (SelfSubjectAccessReview) whether each of
// Rules is allowed, and names every denied verb and resource.
func (d *Driver) checkRights(ctx context.Context) error {
	var denied []string
	for _, r := range Rules {
		for _, v := range r.Verbs {
			ra := &authorizationv1.ResourceAttributes{Verb: v, Group: r.Group}
			ra.Resource, ra.Subresource, _ = strings.Cut(r.Resource, "/")
			if r.Namespaced {
				ra.Namespace = d.cfg.Namespace
			}
			rv, err := d.cfg.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
				&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: ra}},
				metav1.CreateOptions{})
			if err != nil {
				return apiError("create", "selfsubjectaccessreviews", "", err)
			}
			if !rv.Status.Allowed {
				denied = append(denied, v+" "+r.Resource)
			}
		}
	}
	if len(denied) > 0 {
		return &RBACError{Namespace: d.cfg.Namespace, Denied: denied}
	}
	return nil
}

// RBACError names what the driver's credentials may not do.
type RBACError struct {
	Namespace string
	// Denied lists "verb resource" pairs.
	Denied []string
}

func (e *RBACError) Error() string {
	return fmt.Sprintf("kubernetes: RBAC denies %s in namespace %s (the driver needs every rule in kubernetes.Rules)",
		strings.Join(e.Denied, ", "), e.Namespace)
}

func (d *Driver) ensureServiceAccount(ctx context.Context) error {
	sas := d.cfg.Client.CoreV1().ServiceAccounts(d.cfg.Namespace)
	_, err := sas.Get(ctx, d.cfg.ServiceAccount, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return apiError("get", "serviceaccounts", d.cfg.ServiceAccount, err)
	}
	_, err = sas.Create(ctx, &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: d.cfg.ServiceAccount, Labels: map[string]string{LabelManagedBy: managedBy}},
		AutomountServiceAccountToken: new(false),
	}, metav1.CreateOptions{})
	if err != nil && !isAlreadyExists(err) {
		return apiError("create", "serviceaccounts", d.cfg.ServiceAccount, err)
	}
	return nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "kubernetes" }

// Available implements driver.Driver.
func (d *Driver) Available() []sandbox.Feature { return slices.Clone(available) }

func (d *Driver) audience() string { return "calnet-handoff/" + d.cfg.Network }

// Start creates the Cal's pod and its NetworkPolicy and returns once the
// driver's watch holds the pod. Host-side fields of spec (Dir, RunDir,
// ProgramsDir, RootMount, Sockets, Binary, Log) do not apply to a pod; the
// secret is kept in memory for the pod's one handoff.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Instance, error) {
	if spec.Network == "" {
		spec.Network = d.cfg.Network
	}
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	if spec.Network != d.cfg.Network {
		return nil, fmt.Errorf("kubernetes: Network %q is not the driver's network %q", spec.Network, d.cfg.Network)
	}
	pod, err := d.cfg.Client.CoreV1().Pods(d.cfg.Namespace).Create(ctx, d.podFor(spec), metav1.CreateOptions{})
	if err != nil {
		return nil, apiError("create", "pods", "cal-"+spec.CalID+"-*", err)
	}
	inst := d.newInstance(pod, int64(spec.UID))
	d.mu.Lock()
	if spec.Secret != "" {
		d.secrets[string(pod.UID)] = spec.Secret
	}
	d.mu.Unlock()
	if _, err := d.cfg.Client.NetworkingV1().NetworkPolicies(d.cfg.Namespace).Create(ctx, d.policyFor(pod), metav1.CreateOptions{}); err != nil {
		err = apiError("create", "networkpolicies", pod.Name, err)
		_ = d.remove(context.WithoutCancel(ctx), pod, 0) // logged by remove; err is the news
		return nil, err
	}
	if err := inst.waitSeen(ctx); err != nil {
		_ = d.remove(context.WithoutCancel(ctx), pod, 0) // logged by remove; err is the news
		return nil, err
	}
	return inst, nil
}

// Adopt implements driver.Driver: it finds the Cal's pod by its labels in
// the driver's watch. A pod that ended is removed and ErrNotRunning
// returned; of several live pods for one Cal (a control plane that crashed
// between two starts) the newest is kept and the others removed.
func (d *Driver) Adopt(ctx context.Context, calID string) (driver.Instance, error) {
	if err := checkID("CalID", calID); err != nil {
		return nil, err
	}
	pods, err := d.pods.Pods(d.cfg.Namespace).List(klabels.SelectorFromSet(klabels.Set{LabelNetwork: d.cfg.Network, LabelCal: calID}))
	if err != nil {
		return nil, err
	}
	sort.Slice(pods, func(i, j int) bool { return startedAt(pods[i]).After(startedAt(pods[j])) })
	var keep *corev1.Pod
	for _, p := range pods {
		if keep == nil && !ended(p) && p.DeletionTimestamp == nil {
			keep = p
			continue
		}
		_ = d.remove(ctx, p, 0) // logged by remove: a leftover is removed at the next Adopt
	}
	if keep == nil {
		return nil, fmt.Errorf("kubernetes: cal %s: no live pod: %w", calID, driver.ErrNotRunning)
	}
	uid := int64(0)
	if sc := keep.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		uid = *sc.RunAsUser
	}
	inst := d.newInstance(keep, uid)
	inst.adopted = true
	return inst, nil
}

// Recorded implements driver.Driver: the Cals of the network that have a
// pod, live or ended and not yet removed.
func (d *Driver) Recorded() ([]string, error) {
	pods, err := d.pods.Pods(d.cfg.Namespace).List(klabels.Everything())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range pods {
		id := p.Labels[LabelCal]
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

// DeleteSubtree deletes the pods and NetworkPolicies of a Cal and of all its
// descendants, selected by their lineage label, in one call each: a
// revocation's sweep, which also reaches pods the control plane does not
// supervise.
func (d *Driver) DeleteSubtree(ctx context.Context, calID string) error {
	if err := checkID("CalID", calID); err != nil {
		return err
	}
	sel := metav1.ListOptions{LabelSelector: LabelNetwork + "=" + d.cfg.Network + "," + LineagePrefix + calID}
	now := int64(0)
	if err := d.cfg.Client.CoreV1().Pods(d.cfg.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &now}, sel); err != nil {
		return apiError("deletecollection", "pods", sel.LabelSelector, err)
	}
	if err := d.cfg.Client.NetworkingV1().NetworkPolicies(d.cfg.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
		return apiError("deletecollection", "networkpolicies", sel.LabelSelector, err)
	}
	return nil
}

// remove deletes a pod (with grace seconds) and its NetworkPolicy; a pod or
// policy already gone is not an error.
func (d *Driver) remove(ctx context.Context, pod *corev1.Pod, grace int64) error {
	var errs []error
	if err := d.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &grace, Preconditions: &metav1.Preconditions{UID: &pod.UID},
	}); err != nil && !isNotFound(err) && !isConflict(err) {
		errs = append(errs, apiError("delete", "pods", pod.Name, err))
	}
	if err := d.cfg.Client.NetworkingV1().NetworkPolicies(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil && !isNotFound(err) {
		errs = append(errs, apiError("delete", "networkpolicies", pod.Name, err))
	}
	d.mu.Lock()
	delete(d.secrets, string(pod.UID))
	d.mu.Unlock()
	err := errors.Join(errs...)
	if err != nil {
		d.log.Warn("removing a cal's pod", "pod", pod.Name, "err", err)
	}
	return err
}

// podChanged passes the watch's news to the pod's instance.
func (d *Driver) podChanged(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	d.mu.Lock()
	inst := d.insts[string(pod.UID)]
	d.mu.Unlock()
	if inst != nil {
		inst.observe(pod, deleted)
	}
}

// ended reports whether a pod's containers are done for good (its restart
// policy is Never).
func ended(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// policyOf reports whether the pod's NetworkPolicy exists.
func (d *Driver) policyOf(pod *corev1.Pod) bool {
	_, err := d.policies.NetworkPolicies(pod.Namespace).Get(pod.Name)
	return err == nil
}

// stopTimeout bounds how long Stop waits for a bound pod to go after its
// grace period before deleting it with no grace (a node that does not
// answer keeps it Terminating).
const stopTimeout = 5 * time.Second
