package spiffeca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/soulfra/calnet/identity"
)

// Reason names why an SVID was refused.
type Reason string

// The reasons Verify refuses an SVID.
const (
	ReasonMalformed        Reason = "malformed"
	ReasonExpired          Reason = "expired"
	ReasonNotYetValid      Reason = "not-yet-valid"
	ReasonWrongTrustDomain Reason = "wrong-trust-domain"
	ReasonUnknownAuthority Reason = "unknown-authority"
	ReasonRevoked          Reason = "revoked"
)

// Error is a refused SVID: the reason, and what about it.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return "svid refused (" + string(e.Reason) + "): " + e.Msg }

// Is makes errors.Is(err, &Error{Reason: r}) match on the reason.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Reason == e.Reason
}

func refuse(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason of a refusal, or "" for another error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Revoked tells whether a Cal is out of the network, and through which
// revoked Cal (itself or an ancestor). A nil Revoked consults nobody.
type Revoked func(identity.ID) (by identity.ID, revoked bool)

// Verified is an SVID that passed Verify.
type Verified struct {
	ID spiffeid.ID
	// Cal is the Cal the SVID names (its own or its workload's).
	Cal identity.ID
	// Workload is set for a workload's SVID.
	Workload bool
}

// Verify checks a presented chain (DER, leaf first) against bundle at now
// with go-spiffe's x509svid.Verify, names the reason when it fails, and
// asks revoked (when not nil) whether the Cal it names is still in the
// network.
func Verify(raw [][]byte, bundle *x509bundle.Bundle, now time.Time, revoked Revoked) (*Verified, error) {
	if len(raw) == 0 || len(raw) > MaxChain {
		return nil, refuse(ReasonMalformed, "chain of %d certificates, want 1..%d", len(raw), MaxChain)
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, refuse(ReasonMalformed, "certificate %d: %v", i, err)
		}
		certs[i] = c
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, refuse(ReasonMalformed, "leaf: %v", err)
	}
	if id.TrustDomain() != bundle.TrustDomain() {
		return nil, refuse(ReasonWrongTrustDomain, "%s is in trust domain %q, want %q", id, id.TrustDomain(), bundle.TrustDomain())
	}
	for i, c := range certs {
		what := "leaf"
		if i > 0 {
			what = fmt.Sprintf("issuer %d", i)
		}
		if now.After(c.NotAfter) {
			return nil, refuse(ReasonExpired, "%s of %s expired at %s", what, id, c.NotAfter.UTC().Format(time.RFC3339))
		}
		if now.Before(c.NotBefore) {
			return nil, refuse(ReasonNotYetValid, "%s of %s is valid from %s", what, id, c.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	if _, _, err := x509svid.Verify(certs, bundle, x509svid.WithTime(now)); err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return nil, refuse(ReasonUnknownAuthority, "%s: %v", id, err)
		}
		return nil, refuse(ReasonMalformed, "%s: %v", id, err)
	}
	v, err := calOf(id)
	if err != nil {
		return nil, err
	}
	if revoked != nil {
		if by, ok := revoked(v.Cal); ok {
			if by == v.Cal {
				return nil, refuse(ReasonRevoked, "cal %s was revoked", v.Cal)
			}
			return nil, refuse(ReasonRevoked, "cal %s is below revoked cal %s", v.Cal, by)
		}
	}
	return v, nil
}

// calOf reads the Cal an SVID's ID names.
func calOf(id spiffeid.ID) (*Verified, error) {
	rest, ok := strings.CutPrefix(id.Path(), "/cal/")
	if !ok {
		return nil, refuse(ReasonMalformed, "%s does not name a cal", id)
	}
	v := &Verified{ID: id}
	rest, v.Workload = strings.CutSuffix(rest, WorkloadSuffix)
	cal, err := identity.ParseID(rest)
	if err != nil {
		return nil, refuse(ReasonMalformed, "%s: %v", id, err)
	}
	v.Cal = cal
	return v, nil
}
