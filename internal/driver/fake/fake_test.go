package fake

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// TestLifecycle walks one Cal through what a host does to it: each step
// acts on the driver and says what Wait of the instance returns and
// whether the Cal still runs.
func TestLifecycle(t *testing.T) {
	errBoom := errors.New("exit status 3")
	for _, tc := range []struct {
		name    string
		run     bool // the instance has a Run that waits for its context
		adopt   bool // act on an adopted handle
		act     func(d *Driver, i driver.Instance)
		wantErr error
	}{
		{name: "crash", act: func(d *Driver, _ driver.Instance) { d.Crash("c1") }, wantErr: ErrKilled},
		{name: "exit with status", act: func(d *Driver, _ driver.Instance) { d.Exit("c1", errBoom) }, wantErr: errBoom},
		{name: "clean exit", act: func(d *Driver, _ driver.Instance) { d.Exit("c1", nil) }, wantErr: nil},
		{name: "stop without run", act: func(_ *Driver, i driver.Instance) { _ = i.Stop(context.Background(), time.Second) }, wantErr: ErrTerminated},
		{name: "stop with run", run: true, act: func(_ *Driver, i driver.Instance) { _ = i.Stop(context.Background(), time.Minute) }, wantErr: ErrTerminated},
		{name: "adopted crash", adopt: true, act: func(d *Driver, _ driver.Instance) { d.Crash("c1") }, wantErr: driver.ErrExitUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New(sandbox.CgroupMemory)
			if tc.run {
				d.Run = func(ctx context.Context, _ driver.Spec) error { <-ctx.Done(); return nil }
			}
			inst, err := d.Start(t.Context(), driver.Spec{CalID: "c1", Features: []sandbox.Feature{sandbox.CgroupMemory}})
			if err != nil {
				t.Fatal(err)
			}
			if tc.adopt {
				if inst, err = d.Adopt(t.Context(), "c1"); err != nil {
					t.Fatal(err)
				}
			}
			if pid, ok := d.Running("c1"); !ok || pid != inst.PID() {
				t.Fatalf("running: pid %d %v, want %d", pid, ok, inst.PID())
			}
			tc.act(d, inst)
			if err := inst.Wait(); !errors.Is(err, tc.wantErr) {
				t.Errorf("wait: %v, want %v", err, tc.wantErr)
			}
			if _, ok := d.Running("c1"); ok {
				t.Error("still running after it ended")
			}
			if _, err := d.Adopt(t.Context(), "c1"); !errors.Is(err, driver.ErrNotRunning) {
				t.Errorf("adopt after the end: %v, want ErrNotRunning", err)
			}
		})
	}
}

func TestStartRefusesAndFails(t *testing.T) {
	d := New()
	if _, err := d.Start(t.Context(), driver.Spec{CalID: "c1", Features: []sandbox.Feature{sandbox.OwnUID}}); err == nil {
		t.Error("a feature the host lacks was accepted")
	}
	errNo := errors.New("no")
	d.FailStart("c1", errNo)
	if _, err := d.Start(t.Context(), driver.Spec{CalID: "c1"}); !errors.Is(err, errNo) {
		t.Errorf("queued failure: %v", err)
	}
	if _, err := d.Start(t.Context(), driver.Spec{CalID: "c1"}); err != nil {
		t.Errorf("after the queued failure: %v", err)
	}
	if got := d.Starts("c1"); got != 1 {
		t.Errorf("starts %d, want 1", got)
	}
}

// A second Start of a running Cal is what the host would do (two
// processes); the driver records it for the test to fail on.
func TestTwiceRecorded(t *testing.T) {
	d := New()
	for range 2 {
		if _, err := d.Start(t.Context(), driver.Spec{CalID: "c1"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.Twice(); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("twice %v", got)
	}
	if got, _ := d.Recorded(); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("recorded %v", got)
	}
	d.Crash("c1")
	if got := d.Live(); len(got) != 0 {
		t.Errorf("live after crash: %v", got)
	}
}

// A Run that ignores its context is killed when the grace runs out.
func TestStopKillsAfterGrace(t *testing.T) {
	d := New()
	release := make(chan struct{})
	defer close(release)
	d.Run = func(context.Context, driver.Spec) error { <-release; return nil }
	inst, err := d.Start(t.Context(), driver.Spec{CalID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.Stop(t.Context(), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := inst.Wait(); !errors.Is(err, ErrKilled) {
		t.Errorf("wait: %v, want ErrKilled", err)
	}
}

// Orphaned handles reach nothing; the instance runs on and is adopted.
func TestOrphanThenAdopt(t *testing.T) {
	d := New()
	inst, err := d.Start(t.Context(), driver.Spec{CalID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- inst.Wait() }()
	release := d.Orphan()
	if err := inst.Stop(t.Context(), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Running("c1"); !ok {
		t.Fatal("an orphaned handle stopped the instance")
	}
	release()
	if err := <-waited; !errors.Is(err, driver.ErrExitUnknown) {
		t.Errorf("orphaned wait: %v, want ErrExitUnknown", err)
	}
	adopted, err := d.Adopt(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if adopted.PID() != inst.PID() {
		t.Errorf("adopted pid %d, started %d", adopted.PID(), inst.PID())
	}
	if err := adopted.Stop(t.Context(), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Running("c1"); ok {
		t.Error("the adopted handle did not stop the instance")
	}
}
