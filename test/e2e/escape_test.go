package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
)

const escapeTemplate = `name: escape
description: tries every known way out of the sandbox and reports
permissions: [read]
tiers:
  "-10": [{name: identity, builtin: identity}]
  "-9": [{name: vault, builtin: vault}]
  "-6": [{name: discovery, builtin: discovery}]
  "-5": [{name: mesh, builtin: mesh}]
  "-3":
    - name: escape
      command: [/opt/calnet/escape]
      restart: never
  "0": [{name: gateway, builtin: gateway}]
`

// TestEscapeCal is finding 7 of issue 10: a real Cal, spawned by a real
// `calnet up`, runs test/e2e/escape as its workload, which tries each way
// from its sandbox into more of the kernel: new user and network
// namespaces by unshare, clone, clone3 and Go's exec, io_uring, the
// 32-bit system call table, a packet socket, any capability left in any
// set, and any descriptor beyond 0, 1 and 2 that it was started with
// (calnet up itself is started with an open file it must not pass on). Every attempt must be refused; clone3 with ENOSYS, so that
// libcs fall back to clone, whose flags the filter reads.
func TestEscapeCal(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	must(t, os.MkdirAll(filepath.Join(data, "programs"), 0o755))
	build := exec.Command("go", "build", "-o", filepath.Join(data, "programs", "escape"), "github.com/soulfra/calnet/test/e2e/escape")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the escape program: %v\n%s", err, out)
	}
	// calnet up inherits an open file, as from a shell (`calnet up
	// 3<secret`) or a supervisor: no Cal and no workload may get it.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("the operator's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sf, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	// As descriptor 20: the driver's own descriptors (3 and up) would
	// overwrite a lower one in the Cal's process.
	inherit := make([]*os.File, 18)
	inherit[17] = sf
	n := upInheriting(t, data, inherit)
	sp, err := n.c.Spawn(context.Background(), client.SpawnRequest{Name: "escape", TemplateYAML: escapeTemplate}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("spawn the escape Cal: %+v %v", sp, err)
	}
	var report map[string]string
	waitFor(t, "the escape program's report in the Cal's log", 30*time.Second, func() bool {
		var logs bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.c.Logs(ctx, sp.Cal, false, &logs); err != nil {
			return false
		}
		for _, line := range strings.Split(logs.String(), "\n") {
			if _, js, ok := strings.Cut(line, "calnet-escape "); ok {
				return json.Unmarshal([]byte(js), &report) == nil
			}
		}
		return false
	})
	// Nor the Cal's runtime: no process but calnet up holds the file.
	if holders := holdersOf(t, secret, n.cmd.Process.Pid, os.Getpid()); len(holders) > 0 {
		t.Errorf("the file calnet up inherited is open in %v, want only in calnet up (pid %d)", holders, n.cmd.Process.Pid)
	}
	for _, name := range []string{"unshare-user", "clone-newuser", "exec-newuser", "clone3", "io-uring", "capabilities", "i386-unshare-user", "packet-socket", "inherited-fds"} {
		got, ok := report[name]
		switch {
		case !ok:
			t.Errorf("%s: not attempted (report %v)", name, report)
		case !strings.HasPrefix(got, "refused: "):
			t.Errorf("%s: %s, want refused", name, got)
		case name == "clone3" && !strings.Contains(got, "function not implemented"):
			t.Errorf("clone3: %s, want ENOSYS", got)
		default:
			t.Logf("%s: %s", name, got)
		}
	}
}

// holdersOf lists the processes, but those in except, that hold path
// open, as "pid command".
func holdersOf(t *testing.T, path string, except ...int) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		if pid, _ := strconv.Atoi(filepath.Base(p)); slices.Contains(except, pid) {
			continue
		}
		fds, _ := os.ReadDir(p + "/fd")
		for _, fd := range fds {
			if target, _ := os.Readlink(p + "/fd/" + fd.Name()); target == path {
				cmd, _ := os.ReadFile(p + "/cmdline")
				out = append(out, fmt.Sprintf("%s %s", filepath.Base(p), bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return out
}
