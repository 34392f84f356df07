package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
)

// Local talks to a Cal's local API from inside the Cal: its workload finds
// the socket in $CALNET_LOCAL_API. Spawned children are blessed by this
// Cal; revocations are signed by it. An error answer is an *Error; a 429
// or 503 carries the control plane's Retry-After in Error.RetryAfter.
type Local struct {
	hc *http.Client
}

// NewLocal returns a client for the local API on socket.
func NewLocal(socket string) *Local {
	return &Local{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}}
}

// Self describes the Cal the local API belongs to.
type Self struct {
	ID          string   `json:"id"`
	Network     string   `json:"network"`
	Depth       int      `json:"depth"`
	Parent      string   `json:"parent"`
	Permissions []string `json:"permissions"`
}

// LocalSpawn asks for a child of this Cal.
type LocalSpawn struct {
	Name           string   `json:"name,omitempty"`
	Permissions    []string `json:"permissions"`
	CPUMillis      int64    `json:"cpu_millis,omitempty"`
	MemoryBytes    int64    `json:"memory_bytes,omitempty"`
	DiskBytes      int64    `json:"disk_bytes,omitempty"`
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
}

func (l *Local) do(ctx context.Context, method, path string, in, out any) error {
	err := roundTrip(ctx, l.hc, method, "http://cal"+path, "", in, out)
	var e *Error
	if err != nil && !errors.As(err, &e) {
		return fmt.Errorf("local API: %w", err)
	}
	return err
}

// Self returns who this Cal is.
func (l *Local) Self(ctx context.Context) (*Self, error) {
	var s Self
	return &s, l.do(ctx, http.MethodGet, "/v1/self", nil, &s)
}

// Spawn creates a child of this Cal and waits until it is operational.
func (l *Local) Spawn(ctx context.Context, req LocalSpawn) (*Spawn, error) {
	var s Spawn
	return &s, l.do(ctx, http.MethodPost, "/v1/children", req, &s)
}

// Children lists this Cal's children.
func (l *Local) Children(ctx context.Context) ([]Cal, error) {
	var out []Cal
	return out, l.do(ctx, http.MethodGet, "/v1/children", nil, &out)
}

// Revoke revokes a descendant (needs the revoke permission). When an
// admission policy holds the revocation for administrators' approval it
// has not happened yet: Revoke returns a *HeldError with the request.
func (l *Local) Revoke(ctx context.Context, id, reason string) error {
	var out Revoked
	if err := l.do(ctx, http.MethodDelete, "/v1/children/"+url.PathEscape(id)+"?reason="+url.QueryEscape(reason), nil, &out); err != nil {
		return err
	}
	if out.Approval != nil {
		return &HeldError{Approval: out.Approval}
	}
	return nil
}

// HeldError says a request was held by a require_approval policy: it is
// carried out once administrators approve it.
type HeldError struct{ Approval *Approval }

func (e *HeldError) Error() string {
	return fmt.Sprintf("held for approval %s: policy %s: %s (%d administrator approval(s) needed)", e.Approval.ID, e.Approval.Policy, e.Approval.Message, e.Approval.Required)
}

// Reflect appends to this Cal's reflection log.
func (l *Local) Reflect(ctx context.Context, kind, text string, data any) (*Reflection, error) {
	var raw json.RawMessage
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	var r Reflection
	return &r, l.do(ctx, http.MethodPost, "/v1/reflections", map[string]any{"kind": kind, "text": text, "data": raw}, &r)
}

// Reflections reads this Cal's reflections from seq on.
func (l *Local) Reflections(ctx context.Context, from uint64) ([]Reflection, error) {
	var out []Reflection
	return out, l.do(ctx, http.MethodGet, "/v1/reflections?from="+strconv.FormatUint(from, 10), nil, &out)
}

// Report sends workload gauges and counters (queue depth, request rate,
// ...) to the control plane's metric series for this Cal.
func (l *Local) Report(ctx context.Context, values map[string]float64) error {
	return l.do(ctx, http.MethodPost, "/v1/metrics", values, nil)
}
