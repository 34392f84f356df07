package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/soulfra/calnet/client"
)

var calnetBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "calnet-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	calnetBin = filepath.Join(dir, "calnet")
	build := exec.Command("go", "build", "-o", calnetBin, "github.com/soulfra/calnet/cmd/calnet")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as shipped: smaller Cals
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build calnet:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// calnet runs the binary in dir with args.
func calnet(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(calnetBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CALNET_PASSPHRASE=", "CALNET_DIR=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// ok runs calnet and fails the test unless it exits 0.
func ok(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := calnet(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("calnet %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// okJSON runs calnet -o json and decodes stdout.
func okJSON(t *testing.T, dir string, v any, args ...string) {
	t.Helper()
	out := ok(t, dir, append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("calnet %v: stdout is not JSON: %v\n%s", args, err, out)
	}
}

// watch streams the network's events after seq to fn until the test
// ends, and fails the test if the stream ends with an error: a watch that
// never ran would make every "not seen" check pass.
func watch(t *testing.T, c *client.Client, after uint64, fn func(client.Event)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, after, fn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("event stream: %v", err)
		}
	})
}

// killPID SIGKILLs a Cal's process, as a crash would. A PID that is not
// one fails the test: 0 would signal the test's own process group.
func killPID(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no process to kill (pid %d)", pid)
	}
	must(t, syscall.Kill(pid, syscall.SIGKILL))
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
