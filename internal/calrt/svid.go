package calrt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/spiffeca"
)

// workloadSVID is one X.509-SVID of the Cal's workload, as the Workload
// API hands it out.
type workloadSVID struct {
	id     string
	chain  [][]byte // leaf first
	key    []byte   // PKCS #8
	bundle [][]byte // the network's authorities
}

// svidState holds the workload's current SVID and wakes the Workload
// API's streams when it changes.
type svidState struct {
	mu      sync.Mutex
	cur     *workloadSVID
	version uint64
	changed chan struct{} // closed and replaced at every change
}

func newSVIDState() *svidState { return &svidState{changed: make(chan struct{})} }

// set publishes a new SVID to every watcher.
func (s *svidState) set(v *workloadSVID) {
	s.mu.Lock()
	s.cur = v
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// next waits for an SVID newer than version and returns it with its
// version.
func (s *svidState) next(ctx context.Context, version uint64) (*workloadSVID, uint64, error) {
	for {
		s.mu.Lock()
		cur, v, ch := s.cur, s.version, s.changed
		s.mu.Unlock()
		if cur != nil && v > version {
			return cur, v, nil
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-ch:
		}
	}
}

// fetchSVID asks the network's authority for an SVID (the Cal's own
// without a CSR) and checks the bundle it comes with is the network's:
// its root is the genesis key.
func (rt *Runtime) fetchSVID(ctx context.Context, csr []byte) (*calproto.SVIDReply, *x509.Certificate, error) {
	var reply calproto.SVIDReply
	if err := rt.call(ctx, http.MethodPost, calproto.PathSVID, calproto.SVIDRequest{CSR: csr}, &reply); err != nil {
		return nil, nil, err
	}
	if len(reply.Chain) == 0 || len(reply.Chain) > spiffeca.MaxChain || len(reply.Bundle) == 0 || len(reply.Bundle) > spiffeca.MaxChain {
		return nil, nil, fmt.Errorf("svid: %d certificates and %d authorities", len(reply.Chain), len(reply.Bundle))
	}
	for i, b := range reply.Bundle {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, nil, fmt.Errorf("svid: bundle authority %d: %w", i, err)
		}
		if err := spiffeca.RootMatches(c, rt.root); err != nil {
			return nil, nil, err
		}
	}
	v, err := spiffeca.Verify(reply.Chain, spiffeca.BundleOf(rt.network, reply.Bundle), time.Now(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("svid: the control plane's answer: %w", err)
	}
	if v.Cal != rt.ID() || v.Workload != (csr != nil) {
		return nil, nil, fmt.Errorf("svid: issued for %s", v.ID)
	}
	leaf, _ := x509.ParseCertificate(reply.Chain[0])
	return &reply, leaf, nil
}

// renewOwnSVID gets the Cal's own X.509-SVID from the network's
// authority and presents it from then on.
func (rt *Runtime) renewOwnSVID(ctx context.Context) (time.Time, error) {
	reply, leaf, err := rt.fetchSVID(ctx, nil)
	if err != nil {
		return time.Time{}, err
	}
	if err := rt.certs.SetIssued(reply.Chain); err != nil {
		return time.Time{}, err
	}
	return halfLife(leaf), nil
}

// renewWorkloadSVID makes a new key for the workload, has it certified
// and publishes it to the Workload API's streams.
func (rt *Runtime) renewWorkloadSVID(ctx context.Context) (time.Time, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return time.Time{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		return time.Time{}, err
	}
	reply, leaf, err := rt.fetchSVID(ctx, csr)
	if err != nil {
		return time.Time{}, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return time.Time{}, err
	}
	rt.svids.set(&workloadSVID{id: reply.SPIFFEID, chain: reply.Chain, key: pk, bundle: reply.Bundle})
	return halfLife(leaf), nil
}

// halfLife is when an SVID is renewed: half its life.
func halfLife(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

// keepRenewed runs renew now and again at the half life it returns,
// until ctx ends; failures are retried with backoff (the SVID in hand
// stays valid for the other half). A Cal the network refuses (revoked)
// stops asking.
func (rt *Runtime) keepRenewed(ctx context.Context, what string, renew func(context.Context) (time.Time, error)) {
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		next, err := renew(ctx)
		wait := time.Until(next)
		if err != nil {
			var ce *CPError
			if errors.As(err, &ce) && ce.Status == http.StatusForbidden {
				rt.log.Error("the network refuses this cal an svid", "svid", what, "err", err)
				return
			}
			if ctx.Err() == nil {
				rt.log.Warn("svid renewal failed; retrying", "svid", what, "err", err, "in", backoff)
			}
			wait, backoff = backoff, min(2*backoff, 30*time.Second)
		} else {
			backoff = 100 * time.Millisecond
			if first {
				rt.log.Info("x509-svid in use", "svid", what, "renew_at", next)
				first = false
			} else {
				rt.log.Debug("x509-svid renewed", "svid", what, "renew_at", next)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
