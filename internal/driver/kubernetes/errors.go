package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// apiError says what the driver was doing and why the API server refused
// or could not answer: RBAC denial (naming the verb and resource), an API
// server that cannot be reached, or one too slow to answer.
func apiError(verb, resource, name string, err error) error {
	what := verb + " " + resource
	if name != "" {
		what += " " + name
	}
	return fmt.Errorf("kubernetes: %s: %w", what, classifyVerb(verb, resource, err))
}

// classifyVerb wraps err with its reason, keeping it for errors.Is/As.
func classifyVerb(verb, resource string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("RBAC denies %s on %s: %w", verb, resource, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server does not accept the driver's credentials: %w", err)
	}
	return classify(err)
}

// classify names the reason of an error that is not the API server's
// answer: it is unreachable or too slow.
func classify(err error) error {
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) ||
		(errors.As(err, &ne) && ne.Timeout()):
		return fmt.Errorf("the API server did not answer in time: %w", err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("RBAC denies it: %w", err)
	case errors.As(err, &ue) || isConnError(err):
		return fmt.Errorf("the API server is unreachable: %w", err)
	}
	return err
}

func isConnError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

func isNotFound(err error) bool      { return apierrors.IsNotFound(err) }
func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }
func isConflict(err error) bool      { return apierrors.IsConflict(err) }
