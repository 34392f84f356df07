package kubernetes

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// The labels every Cal pod carries. A network's pods are selected by
// LabelNetwork; a Cal's by LabelCal; a subtree's by the lineage label of its
// root, which the root and every descendant carry.
const (
	LabelNetwork   = "calnet.dev/network"
	LabelCal       = "calnet.dev/cal"
	LabelParent    = "calnet.dev/parent"
	LabelDepth     = "calnet.dev/depth"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LineagePrefix + an ID labels a pod whose Cal is that Cal or one of
	// its descendants.
	LineagePrefix = "lineage.calnet.dev/"
	// AnnotationFeatures lists the isolation features the pod was asked for.
	AnnotationFeatures = "calnet.dev/features"
	// AnnotationStarted is when the driver created the pod, to the
	// nanosecond: a pod's creationTimestamp has whole seconds, too coarse
	// to tell two starts of one Cal apart.
	AnnotationStarted = "calnet.dev/started"
	managedBy         = "calnet"
	genesisParent     = "genesis"
)

// Where the Cal finds its writable directories and the token it presents to
// fetch its key (see handoff.go).
const (
	DataDir          = "/data"
	TmpDir           = "/tmp"
	HandoffTokenDir  = "/var/run/calnet/handoff"
	HandoffTokenFile = HandoffTokenDir + "/token"
	containerName    = "cal"
	tmpSize          = 16 << 20
)

// Features beyond sandbox.AllFeatures that a pod has and calnet show
// reports.
const (
	// NoCapabilities: every Linux capability dropped.
	NoCapabilities sandbox.Feature = "no-capabilities"
	// NetworkPolicy: a default-deny NetworkPolicy selects the pod. It is
	// in force only where the cluster's network plugin enforces policies.
	NetworkPolicy sandbox.Feature = "network-policy"
)

// available is what a pod spec can express. cgroup-pids is missing: a pod
// has no PIDs limit of its own (the kubelet's podPidsLimit is one value for
// the whole node), so asking for it fails rather than silently downgrading.
// disk-quota is the container's ephemeral-storage limit and the /data
// volume's size limit, which the kubelet enforces by evicting the pod (not
// by refusing the write, as the process driver's quota does).
var available = []sandbox.Feature{
	sandbox.PIDNamespace, sandbox.MountNamespace, sandbox.IPCNamespace, sandbox.UTSNamespace, sandbox.NetNamespace,
	sandbox.ReadOnlyRoot, sandbox.OwnUID, sandbox.NoNewPrivs, sandbox.Seccomp, sandbox.CgroupMemory, sandbox.CgroupCPU,
	sandbox.DiskQuota,
}

// checkSpec refuses what a pod cannot carry, naming the field.
func checkSpec(spec driver.Spec) error {
	if err := checkID("CalID", spec.CalID); err != nil {
		return err
	}
	if err := checkID("Network", spec.Network); err != nil {
		return err
	}
	for i, a := range spec.Lineage {
		if err := checkID(fmt.Sprintf("Lineage[%d]", i), a); err != nil {
			return err
		}
	}
	if spec.UID <= 0 || spec.GID <= 0 {
		return fmt.Errorf("kubernetes: UID %d, GID %d: a Cal runs as its own non-root uid and gid (above 0)", spec.UID, spec.GID)
	}
	for _, f := range spec.Features {
		if !slices.Contains(available, f) {
			return fmt.Errorf("kubernetes: feature %q cannot be expressed in a pod (available: %v)", f, available)
		}
	}
	l := spec.Limits
	if l.CPUMillis < 0 || l.MemoryBytes < 0 || l.PIDs < 0 || l.DiskBytes < 0 {
		return fmt.Errorf("kubernetes: negative limit in %+v", l)
	}
	for _, e := range spec.Env {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("kubernetes: Env entry %q is not NAME=value", e)
		}
	}
	return nil
}

// checkID accepts a Cal or network ID: it becomes a label value and part of
// a label key and of the pod's name.
func checkID(field, v string) error {
	if v == "" {
		return fmt.Errorf("kubernetes: %s is empty", field)
	}
	if len(v) > 40 {
		return fmt.Errorf("kubernetes: %s %q is longer than 40 characters", field, v)
	}
	if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
		return fmt.Errorf("kubernetes: %s %q: %s", field, v, strings.Join(errs, "; "))
	}
	return nil
}

// labels are a Cal pod's labels.
func labels(spec driver.Spec) map[string]string {
	parent := genesisParent
	if n := len(spec.Lineage); n > 0 {
		parent = spec.Lineage[n-1]
	}
	l := map[string]string{
		LabelNetwork: spec.Network, LabelCal: spec.CalID, LabelParent: parent,
		LabelDepth: strconv.Itoa(len(spec.Lineage)), LabelManagedBy: managedBy,
		LineagePrefix + spec.CalID: "",
	}
	for _, a := range spec.Lineage {
		l[LineagePrefix+a] = ""
	}
	return l
}

// podFor is the pod that runs a Cal. The Cal's secret is not in it: the Cal
// fetches it with the pod's bound token (handoff.go).
func (d *Driver) podFor(spec driver.Spec) *corev1.Pod {
	env := []corev1.EnvVar{}
	for _, e := range spec.Env {
		k, v, _ := strings.Cut(e, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	env = append(env,
		corev1.EnvVar{Name: "CALNET_CAL_ID", Value: spec.CalID},
		corev1.EnvVar{Name: "CALNET_NETWORK", Value: spec.Network},
		corev1.EnvVar{Name: "CALNET_DATA_DIR", Value: DataDir},
		corev1.EnvVar{Name: "CALNET_KEY_HANDOFF_TOKEN", Value: HandoffTokenFile},
	)
	feats := make([]string, len(spec.Features))
	for i, f := range spec.Features {
		feats[i] = string(f)
	}
	uid, gid := int64(spec.UID), int64(spec.GID)
	grace := int64(5)
	tokenTTL := int64(600)
	data := corev1.EmptyDirVolumeSource{}
	if spec.Limits.DiskBytes > 0 {
		data.SizeLimit = resource.NewQuantity(spec.Limits.DiskBytes, resource.BinarySI)
	}
	cmd := append(slices.Clone(d.cfg.Command), spec.Args...)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "cal-" + spec.CalID + "-",
			Namespace:    d.cfg.Namespace,
			Labels:       labels(spec),
			Annotations:  map[string]string{AnnotationFeatures: strings.Join(feats, ","), AnnotationStarted: time.Now().UTC().Format(time.RFC3339Nano)},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever, // the supervisor heals, with its own policy
			ServiceAccountName:            d.cfg.ServiceAccount,
			AutomountServiceAccountToken:  new(false),
			EnableServiceLinks:            new(false),
			TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser: &uid, RunAsGroup: &gid, RunAsNonRoot: new(true), FSGroup: &gid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: containerName, Image: d.cfg.Image, ImagePullPolicy: d.cfg.PullPolicy,
				Command: cmd, Env: env,
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: &uid, RunAsGroup: &gid, RunAsNonRoot: new(true),
					ReadOnlyRootFilesystem: new(true), AllowPrivilegeEscalation: new(false), Privileged: new(false),
					Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				Resources: resources(spec.Limits),
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: DataDir},
					{Name: "tmp", MountPath: TmpDir},
					{Name: "handoff", MountPath: HandoffTokenDir, ReadOnly: true},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &data}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
					Medium: corev1.StorageMediumMemory, SizeLimit: resource.NewQuantity(tmpSize, resource.BinarySI)}}},
				// A token the kubelet mints for this pod alone (bound to its
				// name and UID, for the handoff audience only, expiring): it
				// is never stored in the API, and it stops verifying when the
				// pod is deleted.
				{Name: "handoff", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
						Audience: d.audience(), ExpirationSeconds: &tokenTTL, Path: "token",
					}}},
				}}},
			},
		},
	}
}

// resources are the container's limits from the blessing's quota. Memory
// is requested at its limit (the scheduler must not overcommit it); CPU at a
// tenth of it, as an idle Cal uses almost none.
func resources(l driver.Limits) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{}}
	if l.CPUMillis > 0 {
		r.Limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(l.CPUMillis, resource.DecimalSI)
		r.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(max(l.CPUMillis/10, 1), resource.DecimalSI)
	}
	if l.MemoryBytes > 0 {
		r.Limits[corev1.ResourceMemory] = *resource.NewQuantity(l.MemoryBytes, resource.BinarySI)
		r.Requests[corev1.ResourceMemory] = *resource.NewQuantity(l.MemoryBytes, resource.BinarySI)
	}
	if l.DiskBytes > 0 {
		// The /tmp volume is memory-backed and counts as memory, not here.
		r.Limits[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(l.DiskBytes, resource.BinarySI)
		r.Requests[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(l.DiskBytes, resource.BinarySI)
	}
	return r
}

// policyFor is the Cal's default-deny NetworkPolicy: no ingress and no
// egress except, when the driver is told where the control plane runs, to
// and from it. It is named as the pod and owned by it.
func (d *Driver) policyFor(pod *corev1.Pod) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace,
			Labels: map[string]string{
				LabelNetwork: pod.Labels[LabelNetwork], LabelCal: pod.Labels[LabelCal], LabelManagedBy: managedBy,
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
			}},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{
				LabelNetwork: pod.Labels[LabelNetwork], LabelCal: pod.Labels[LabelCal],
			}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
	for k, v := range pod.Labels {
		if strings.HasPrefix(k, LineagePrefix) {
			np.Labels[k] = v
		}
	}
	if len(d.cfg.ControlPlaneSelector) > 0 {
		peer := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: d.cfg.ControlPlaneSelector}}}
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: peer}}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: peer}}
	}
	return np
}

// inForce reads, from a pod as the API server stored it (after admission,
// which may have changed it), which isolation features it carries. What the
// kubelet does with them is checked on a real node (see the real-node test).
func inForce(pod *corev1.Pod, wantUID int64, policy bool) map[sandbox.Feature]bool {
	m := map[sandbox.Feature]bool{}
	for _, f := range append(slices.Clone(available), sandbox.CgroupPIDs, NoCapabilities, NetworkPolicy) {
		m[f] = false
	}
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == containerName {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return m
	}
	ps := pod.Spec.SecurityContext
	if ps == nil {
		ps = &corev1.PodSecurityContext{}
	}
	cs := c.SecurityContext
	if cs == nil {
		cs = &corev1.SecurityContext{}
	}
	m[sandbox.PIDNamespace] = !pod.Spec.HostPID && !isTrue(pod.Spec.ShareProcessNamespace)
	m[sandbox.IPCNamespace] = !pod.Spec.HostIPC
	m[sandbox.NetNamespace] = !pod.Spec.HostNetwork
	m[sandbox.UTSNamespace] = !pod.Spec.HostNetwork
	m[sandbox.MountNamespace] = true // every container has its own
	m[sandbox.ReadOnlyRoot] = isTrue(cs.ReadOnlyRootFilesystem)
	uid := cs.RunAsUser
	if uid == nil {
		uid = ps.RunAsUser
	}
	m[sandbox.OwnUID] = uid != nil && *uid == wantUID && *uid != 0
	m[sandbox.NoNewPrivs] = cs.AllowPrivilegeEscalation != nil && !*cs.AllowPrivilegeEscalation && !isTrue(cs.Privileged)
	seccomp := cs.SeccompProfile
	if seccomp == nil {
		seccomp = ps.SeccompProfile
	}
	m[sandbox.Seccomp] = seccomp != nil && (seccomp.Type == corev1.SeccompProfileTypeRuntimeDefault || seccomp.Type == corev1.SeccompProfileTypeLocalhost)
	_, m[sandbox.CgroupMemory] = c.Resources.Limits[corev1.ResourceMemory]
	_, m[sandbox.CgroupCPU] = c.Resources.Limits[corev1.ResourceCPU]
	_, m[sandbox.DiskQuota] = c.Resources.Limits[corev1.ResourceEphemeralStorage]
	m[NoCapabilities] = cs.Capabilities != nil && slices.Contains(cs.Capabilities.Drop, "ALL") && len(cs.Capabilities.Add) == 0
	m[NetworkPolicy] = policy
	return m
}

func isTrue(b *bool) bool { return b != nil && *b }

// startedAt is when the driver created p (AnnotationStarted), or its
// creationTimestamp for a pod without the annotation.
func startedAt(p *corev1.Pod) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, p.Annotations[AnnotationStarted]); err == nil {
		return t
	}
	return p.CreationTimestamp.Time
}
