package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"filippo.io/age"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// How a Cal in a pod gets its secret without the secret ever being stored
// in the Kubernetes API (where anyone who may read pods, secrets or etcd
// would find it):
//
//  1. The driver creates the pod with no key material, only a projected
//     service-account token volume: the kubelet mints a token for this pod
//     alone (bound to its name and UID, for the audience
//     "calnet-handoff/<network>", expiring in 10 minutes) and writes it
//     into the pod's memory; the token is not stored in the API, and it
//     stops verifying once the pod is deleted.
//  2. The Cal makes a fresh hybrid ML-KEM-768 + X25519 key pair in memory
//     and sends the control plane its token and the public half.
//  3. The control plane (Handoff) has the API server review the token
//     (TokenReview), checks that it names a live pod of this network that
//     the driver started and that has not fetched its secret yet, and
//     answers with the secret sealed to the Cal's public key (age).
//
// So the secret exists in clear only in the control plane's memory and in
// the Cal's; a second request for the same pod is refused (the Cal holds
// it already: a second asker is someone else), and an adopted pod has had
// its secret since it started.

// HandoffRequest is a Cal's request for its secret.
type HandoffRequest struct {
	// Token is the content of HandoffTokenFile in the pod.
	Token string `json:"token"`
	// Recipient is the public half ("age1pq1...") of the hybrid key the
	// Cal made in memory.
	Recipient string `json:"recipient"`
}

// ErrHandoffRefused wraps every refused handoff.
var ErrHandoffRefused = errors.New("key handoff refused")

// maxHandoffToken bounds the token a Cal presents (a bound token is about
// 1 KB).
const maxHandoffToken = 16 << 10

// Handoff checks a Cal pod's request and returns its secret sealed to the
// request's recipient, once per pod.
func (d *Driver) Handoff(ctx context.Context, req HandoffRequest) ([]byte, error) {
	refuse := func(format string, a ...any) error {
		return fmt.Errorf("kubernetes: %w: %s", ErrHandoffRefused, fmt.Sprintf(format, a...))
	}
	if req.Token == "" || len(req.Token) > maxHandoffToken {
		return nil, refuse("token: %d bytes (want 1 to %d)", len(req.Token), maxHandoffToken)
	}
	rcpt, err := age.ParseHybridRecipient(req.Recipient)
	if err != nil {
		return nil, refuse("recipient: %v", err)
	}
	tr, err := d.cfg.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: req.Token, Audiences: []string{d.audience()}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, apiError("create", "tokenreviews", "", err)
	}
	st := tr.Status
	if !st.Authenticated {
		return nil, refuse("the API server does not accept the token: %s", st.Error)
	}
	if !slices.Contains(st.Audiences, d.audience()) {
		return nil, refuse("token audiences %v lack %q", st.Audiences, d.audience())
	}
	if want := "system:serviceaccount:" + d.cfg.Namespace + ":" + d.cfg.ServiceAccount; st.User.Username != want {
		return nil, refuse("token of %q, not of %q", st.User.Username, want)
	}
	podName := first(st.User.Extra["authentication.kubernetes.io/pod-name"])
	podUID := first(st.User.Extra["authentication.kubernetes.io/pod-uid"])
	if podName == "" || podUID == "" {
		return nil, refuse("token is not bound to a pod")
	}
	pod, err := d.pods.Pods(d.cfg.Namespace).Get(podName)
	if err != nil {
		return nil, refuse("pod %s is not a pod of network %s: %v", podName, d.cfg.Network, err)
	}
	if string(pod.UID) != podUID {
		return nil, refuse("pod %s has UID %s, the token names %s (an earlier pod of that name)", podName, pod.UID, podUID)
	}
	if pod.DeletionTimestamp != nil || ended(pod) {
		return nil, refuse("pod %s is ending", podName)
	}
	d.mu.Lock()
	secret, ok := d.secrets[podUID]
	delete(d.secrets, podUID)
	d.mu.Unlock()
	if !ok {
		return nil, refuse("pod %s has no secret to fetch (fetched already, or not started by this control plane)", podName)
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, rcpt)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write([]byte(secret)); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	d.log.Info("handed a cal its secret", "pod", podName, "cal", pod.Labels[LabelCal])
	return out.Bytes(), nil
}

func first(v authenticationv1.ExtraValue) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
