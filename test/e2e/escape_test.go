package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
// 32-bit system call table, a packet socket, and any capability left in
// any set. Every attempt must be refused; clone3 with ENOSYS, so that
// libcs fall back to clone, whose flags the filter reads.
func TestEscapeCal(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(data, "programs"), 0o755)
	build := exec.Command("go", "build", "-o", filepath.Join(data, "programs", "escape"), "github.com/soulfra/calnet/test/e2e/escape")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the escape program: %v\n%s", err, out)
	}
	n := up(t, data, noCPUAdmission...)
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
	for _, name := range []string{"unshare-user", "clone-newuser", "exec-newuser", "clone3", "io-uring", "capabilities", "i386-unshare-user", "packet-socket"} {
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
