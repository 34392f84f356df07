package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/store"
)

// faultStore is the real state store with writes refused on demand: an
// Update whose transaction puts a value refuse matches fails, and nothing
// of it is committed (the real store rolls it back).
type faultStore struct {
	store.Store
	mu     sync.Mutex
	refuse func(bucket, key string, value []byte) bool
	failed int
}

var errInjected = errors.New("injected write failure")

func (f *faultStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	return f.Store.Update(ctx, func(tx store.Tx) error { return fn(faultTx{tx, f}) })
}

type faultTx struct {
	store.Tx
	f *faultStore
}

func (t faultTx) Put(bucket, key string, value []byte) error {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.f.refuse != nil && t.f.refuse(bucket, key, value) {
		t.f.failed++
		return errInjected
	}
	return t.Tx.Put(bucket, key, value)
}

// unstoredServer opens a real control plane (network, ledger, state
// store; not run: no Cal is started) whose Master counts as running, with
// the store wrapped in a faultStore.
func unstoredServer(t *testing.T) (*Server, *faultStore) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.store.Close(); err != nil {
			t.Error(err)
		}
		if err := s.lg.Close(); err != nil {
			t.Error(err)
		}
	})
	s.ctx = ctx
	// The host's CPU pressure is not what these tests are about: a loaded
	// test machine must not refuse their spawns with a 429.
	s.cfg.Limits.MaxCPUPressure = 101
	close(s.recovered) // as Run does once it has recovered the Cals
	if _, err := s.updateCal(ctx, s.net.Info.Master.String(), func(c *CalRecord) { c.State, c.Healthy = StateRunning, true }); err != nil {
		t.Fatal(err)
	}
	if err := s.rebuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	f := &faultStore{Store: s.store}
	s.store = f
	return s, f
}

// TestSpawnAdmissionUnstoredIs5xx (issue 11, finding R8): a spawn whose
// admission the state store refuses to record is answered with a 5xx
// that says so, keeps no reservation and deploys nothing. The write's
// error used to be dropped: the API answered 202 admitted and deployed a
// Cal whose spawn record still said requested (seen failing before the
// fix: status 202).
func TestSpawnAdmissionUnstoredIs5xx(t *testing.T) {
	s, f := unstoredServer(t)
	f.refuse = func(bucket, _ string, value []byte) bool {
		return bucket == bucketSpawn && bytes.Contains(value, []byte(`"state":"`+SpawnAdmitted+`"`))
	}
	h := s.apiHandler()
	req := httptest.NewRequest("POST", "/v1/cals", strings.NewReader(`{"name":"unstored","permissions":["read"]}`))
	req.Header.Set("Authorization", "Bearer "+s.token)
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if rr.Code/100 != 5 {
		t.Fatalf("spawn with its admission unstored: status %d, want 5xx; body %s", rr.Code, rr.Body)
	}
	var body struct{ Error string }
	if err := json.Unmarshal(rr.Body.Bytes(), &body); err != nil {
		t.Fatalf("answer %q: %v", rr.Body, err)
	}
	if !strings.Contains(body.Error, "could not be stored") {
		t.Errorf("error %q does not say what was not stored", body.Error)
	}
	if f.failed == 0 {
		t.Fatal("the store was never asked to record the admission")
	}
	s.wg.Wait() // a deploy, had one started
	s.book.mu.Lock()
	held := len(s.book.pending)
	s.book.mu.Unlock()
	if held != 0 {
		t.Errorf("%d reservations held after the refused spawn", held)
	}
	recs, err := s.listCals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Errorf("%d cals in the registry, want only the Master", len(recs))
	}
	sps, err := s.listSpawns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range sps {
		if sp.State != SpawnRequested && sp.State != SpawnRejected {
			t.Errorf("spawn %s is %s on disk, want requested or rejected", sp.ID, sp.State)
		}
	}
}

// TestApprovalVoteUnstoredIs5xx (issue 11, finding R8): a vote the state
// store refuses to record is answered with a 5xx, and the request stays
// as stored. The write's error used to be dropped: the API answered 200
// with the vote (or the rejection, or the expiry) that the disk did not
// have, and a vote on an expired request counted (seen failing before
// the fix: status 200 in each case).
func TestApprovalVoteUnstoredIs5xx(t *testing.T) {
	for _, tc := range []struct {
		name    string
		path    string
		expired bool
	}{
		{"approve", "approve", false},
		{"reject", "reject", false},
		{"expired", "approve", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := unstoredServer(t)
			ctx := context.Background()
			now := s.now()
			a := &api.Approval{ID: newID("apr_"), Operation: "revoke", Cal: s.net.Info.Master.String(), Actor: "token:tok_test",
				Policy: "two-admins", Required: 2, Approvals: []api.Vote{}, State: api.ApprovalPending,
				CreatedAt: now, ExpiresAt: now.Add(ApprovalTTL), UpdatedAt: now}
			if tc.expired {
				a.CreatedAt, a.ExpiresAt = now.Add(-2*ApprovalTTL), now.Add(-ApprovalTTL)
			}
			if err := s.putApproval(ctx, a); err != nil {
				t.Fatal(err)
			}
			f.refuse = func(bucket, _ string, _ []byte) bool { return bucket == bucketApprovals }
			req := httptest.NewRequest("POST", "/v1/approvals/"+a.ID+"/"+tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+s.token)
			rr := httptest.NewRecorder()
			s.apiHandler().ServeHTTP(rr, req)
			if rr.Code/100 != 5 {
				t.Fatalf("vote with its record refused: status %d, want 5xx; body %s", rr.Code, rr.Body)
			}
			if f.failed == 0 {
				t.Fatal("the store was never asked to record the vote")
			}
			got, err := s.getApproval(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != api.ApprovalPending || len(got.Approvals) != 0 || got.Rejection != nil {
				t.Errorf("stored request changed: state %s, %d approvals, rejection %v", got.State, len(got.Approvals), got.Rejection)
			}
		})
	}
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
