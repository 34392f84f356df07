package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// Instance is one Cal's pod, as the driver's watch last saw it.
type Instance struct {
	d       *Driver
	name    string
	ns      string
	uid     types.UID
	wantUID int64
	adopted bool

	mu       sync.Mutex
	pod      *corev1.Pod
	seen     chan struct{} // closed once the watch has the pod
	done     chan struct{} // closed once the pod ended or is gone
	changed  chan struct{} // closed and replaced at each change
	reason   error
	stopping bool
}

var _ driver.Instance = (*Instance)(nil)

// ErrDeletedBehindBack is Wait's answer when the pod was deleted by
// someone other than the driver.
var ErrDeletedBehindBack = errors.New("pod deleted behind calnet's back")

// ErrNoUsage is Usage's answer: reading a pod's usage needs the metrics API.
var ErrNoUsage = errors.New("kubernetes: a pod's usage needs the metrics API (not read by this driver yet)")

func (d *Driver) newInstance(pod *corev1.Pod, wantUID int64) *Instance {
	in := &Instance{
		d: d, name: pod.Name, ns: pod.Namespace, uid: pod.UID, wantUID: wantUID, pod: pod,
		seen: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}),
	}
	d.mu.Lock()
	d.insts[string(pod.UID)] = in
	d.mu.Unlock()
	// The watch may have delivered the pod before the instance was
	// registered: take what the cache holds now.
	if p, err := d.pods.Pods(pod.Namespace).Get(pod.Name); err == nil && p.UID == pod.UID {
		in.observe(p, false)
	}
	return in
}

// observe records what the watch says of the pod.
func (in *Instance) observe(pod *corev1.Pod, deleted bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	select {
	case <-in.done:
		return
	default:
	}
	in.pod = pod
	select {
	case <-in.seen:
	default:
		close(in.seen)
	}
	switch {
	case deleted && in.stopping:
		in.reason = nil
		close(in.done)
	case deleted:
		in.reason = fmt.Errorf("kubernetes: pod %s: %w", pod.Name, ErrDeletedBehindBack)
		close(in.done)
	case ended(pod):
		in.reason = exitReason(pod)
		close(in.done)
	}
	close(in.changed)
	in.changed = make(chan struct{})
}

// exitReason describes how an ended pod ended: nil when its container
// exited 0.
func exitReason(pod *corev1.Pod) error {
	if pod.Status.Phase == corev1.PodSucceeded {
		return nil
	}
	var parts []string
	if pod.Status.Reason != "" {
		parts = append(parts, pod.Status.Reason)
	}
	if pod.Status.Message != "" {
		parts = append(parts, pod.Status.Message)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("container %s exited %d", cs.Name, t.ExitCode))
			if t.Reason != "" {
				parts = append(parts, t.Reason)
			}
			if t.Message != "" {
				parts = append(parts, t.Message)
			}
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no reason given")
	}
	return fmt.Errorf("kubernetes: pod %s failed: %s", pod.Name, strings.Join(parts, ": "))
}

// waitSeen returns once the driver's watch holds the pod.
func (in *Instance) waitSeen(ctx context.Context) error {
	select {
	case <-in.seen:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kubernetes: pod %s created but not seen by the watch: %w", in.name, classify(ctx.Err()))
	}
}

// Name is the pod's name.
func (in *Instance) Name() string { return in.name }

// Pod is a copy of the pod as the watch last saw it.
func (in *Instance) Pod() *corev1.Pod {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.pod.DeepCopy()
}

// WaitFor blocks until cond holds for the pod as the watch sees it, the
// pod ends, or ctx ends.
func (in *Instance) WaitFor(ctx context.Context, cond func(*corev1.Pod) bool) error {
	for {
		in.mu.Lock()
		pod, changed, done := in.pod, in.changed, in.done
		in.mu.Unlock()
		if cond(pod) {
			return nil
		}
		select {
		case <-done:
			in.mu.Lock()
			pod = in.pod
			in.mu.Unlock()
			if cond(pod) {
				return nil
			}
			return fmt.Errorf("kubernetes: pod %s ended (phase %s) before the awaited state", in.name, pod.Status.Phase)
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("kubernetes: pod %s: %w", in.name, ctx.Err())
		}
	}
}

// PID implements driver.Instance: a pod's process has no PID on the
// control plane's host.
func (in *Instance) PID() int { return 0 }

// Wait implements driver.Instance: it returns when the pod ended (nil if
// its container exited 0, else the pod's reason and exit code) or was
// deleted (ErrDeletedBehindBack unless by Stop), then removes the pod and
// its NetworkPolicy.
func (in *Instance) Wait() error {
	<-in.done
	in.mu.Lock()
	reason := in.reason
	pod := in.pod
	in.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = in.d.remove(ctx, pod, 0) // logged by remove; the Cal's end is the news
	in.d.mu.Lock()
	delete(in.d.insts, string(in.uid))
	in.d.mu.Unlock()
	return reason
}

// Stop implements driver.Instance: it deletes the pod with grace and waits
// until the watch sees it gone; a pod still there after grace and
// stopTimeout (a node that does not answer) is deleted without grace.
func (in *Instance) Stop(ctx context.Context, grace time.Duration) error {
	in.mu.Lock()
	in.stopping = true
	pod := in.pod
	in.mu.Unlock()
	secs := int64(grace / time.Second)
	if err := in.d.remove(ctx, pod, secs); err != nil {
		return err
	}
	t := time.NewTimer(grace + stopTimeout)
	defer t.Stop()
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kubernetes: stopping pod %s: %w", in.name, classify(ctx.Err()))
	case <-t.C:
	}
	if err := in.d.remove(ctx, pod, 0); err != nil {
		return err
	}
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kubernetes: pod %s still there after a delete without grace: %w", in.name, classify(ctx.Err()))
	}
}

// Isolation implements driver.Instance: the features the pod carries as
// the API server stored it, and whether its NetworkPolicy exists.
func (in *Instance) Isolation() (map[sandbox.Feature]bool, error) {
	pod := in.Pod()
	return inForce(pod, in.wantUID, in.d.policyOf(pod)), nil
}

// Usage implements driver.Instance.
func (in *Instance) Usage() (driver.Usage, error) { return driver.Usage{}, ErrNoUsage }
