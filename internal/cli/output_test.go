package cli

import (
	"bytes"
	"context"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// apiFake answers API requests with recorded answers from testdata/api
// and records the credential of each request.
type apiFake struct {
	mu    sync.Mutex
	auth  []string
	paths []string
}

// serve starts the fake with routes: "METHOD /path?query" to a file under
// testdata/api, or to "" for an empty 204.
func (f *apiFake) serve(t *testing.T, routes map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.paths = append(f.paths, r.Method+" "+r.URL.RequestURI())
		f.mu.Unlock()
		file, ok := routes[r.Method+" "+r.URL.RequestURI()]
		if !ok {
			file, ok = routes[r.Method+" "+r.URL.Path]
		}
		if !ok {
			http.Error(w, `{"error":"the fake has no answer for `+r.Method+" "+r.URL.RequestURI()+`"}`, http.StatusNotImplemented)
			return
		}
		if file == "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		b, err := os.ReadFile(filepath.Join("testdata", "api", file))
		if err != nil {
			t.Errorf("fixture: %v", err)
			return
		}
		if strings.HasSuffix(file, ".json") {
			w.Header().Set("Content-Type", "application/json")
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// run runs the CLI with args against addr and returns its exit code,
// stdout and stderr.
func run(t *testing.T, addr string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"--addr", addr}, args...), Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

// golden compares got with testdata/golden/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./internal/cli -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

const testToken = "calnet-test-credential-0123456789abcdef"

// TestOutputGolden runs commands against recorded API answers and compares
// what they print, in text and in -o json, with testdata/golden.
func TestOutputGolden(t *testing.T) {
	tmp := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		routes map[string]string
	}{
		{"ls-tree.txt", []string{"ls", "--tree"}, map[string]string{"GET /v1/cals": "cals.json"}},
		{"ls-tree.json", []string{"-o", "json", "ls", "--tree"}, map[string]string{"GET /v1/cals": "cals.json"}},
		// A developer token lists its Cal's subtree: the tree is rooted there.
		{"ls-tree-token.txt", []string{"ls", "--tree"}, map[string]string{"GET /v1/cals": "cals-token.json"}},
		{"ls.txt", []string{"ls"}, map[string]string{"GET /v1/cals": "cals.json"}},
		{"show-revoked-name.txt", []string{"show", "worker"}, map[string]string{"GET /v1/cals/worker": "cal-worker-revoked.json"}},
		{"show-live-name.txt", []string{"show", "worker"}, map[string]string{"GET /v1/cals/worker": "cal-worker.json"}},
		{"logs-id.jsonl", []string{"-o", "json", "logs", "worker"}, map[string]string{"GET /v1/logs?cals=worker": "logs-worker.json"}},
		{"logs-all.txt", []string{"logs", "--cal", "worker"}, map[string]string{"GET /v1/logs?cals=worker": "logs-worker.json"}},
		{"audit.txt", []string{"audit", "--type", "cal.", "--limit", "2"}, map[string]string{"GET /v1/audit?limit=2&type=cal.": "audit.json"}},
		{"audit.jsonl", []string{"-o", "json", "audit", "--type", "cal.", "--limit", "2", "--since", "2026-12-01T09:00:00Z"},
			map[string]string{"GET /v1/audit?limit=2&since=2026-12-01T09%3A00%3A00Z&type=cal.": "audit.json"}},
		{"admin-rm.json", []string{"-o", "json", "admin", "rm", "alice"}, map[string]string{"DELETE /v1/admins/alice": ""}},
		{"admin-rm.txt", []string{"admin", "rm", "alice"}, map[string]string{"DELETE /v1/admins/alice": ""}},
		{"show-template.txt", []string{"-o", "go-template={{.id}} {{.state}}", "show", "worker"}, map[string]string{"GET /v1/cals/worker": "cal-worker-revoked.json"}},
		{"ls-template.txt", []string{"-o", "go-template={{range .}}{{.name}}={{.state}}\n{{end}}", "ls"}, map[string]string{"GET /v1/cals": "cals.json"}},
		{"logs-template.txt", []string{"-o", "go-template={{.level}} {{.name}}\n", "logs", "worker"}, map[string]string{"GET /v1/logs?cals=worker": "logs-worker.json"}},
		{"pprof-out.json", []string{"-o", "json", "pprof", "worker", "heap", "--out", filepath.Join(tmp, "heap.pb.gz")},
			map[string]string{"GET /v1/cals/worker/pprof/heap": "heap.pprof"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f apiFake
			addr := f.serve(t, tt.routes)
			code, out, errs := run(t, addr, map[string]string{"CALNET_TOKEN": testToken}, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			golden(t, tt.name, strings.ReplaceAll(out, tmp, "$TMP"))
		})
	}
}

// TestOutputFlagRefused: a bad -o is refused, for every command (bench
// has its own pre-run hook) and before anything is asked of the API.
func TestOutputFlagRefused(t *testing.T) {
	for _, args := range [][]string{
		{"-o", "yaml", "ls"},
		{"-o", "go-template={{.id", "ls"},
		{"-o", "yaml", "bench", "heal", "--n", "1"},
	} {
		var f apiFake
		addr := f.serve(t, map[string]string{"GET /v1/cals": "cals.json"})
		code, _, errs := run(t, addr, map[string]string{"CALNET_TOKEN": testToken}, args...)
		if code == 0 || !strings.Contains(errs, "-o") || len(f.paths) != 0 {
			t.Errorf("%v: exit %d, stderr %q, requests %v: want an error naming -o", args, code, errs, f.paths)
		}
	}
}

// TestJSONLinesStreams checks that a stream in -o json prints one compact
// object per line.
func TestJSONLinesStreams(t *testing.T) {
	var f apiFake
	addr := f.serve(t, map[string]string{"GET /v1/logs?cals=worker": "logs-worker.json"})
	_, out, _ := run(t, addr, map[string]string{"CALNET_TOKEN": testToken}, "-o", "json", "logs", "worker")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 JSON lines, got %d:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") || !strings.HasSuffix(l, "}") {
			t.Fatalf("not one object per line: %q", l)
		}
	}
}

// TestCredentialPrecedence: a --token-file given on the command line wins
// over CALNET_TOKEN, which wins over the default token file.
func TestCredentialPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "alice.token")
	const fileTok, envTok = "calnet-file-credential-0123456789abcdef", "calnet-env-credential-0123456789abcdef"
	if err := os.WriteFile(file, []byte(fileTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"flag wins over env", envTok, []string{"--token-file", file}, fileTok},
		{"flag alone", "", []string{"--token-file", file}, fileTok},
		{"env without flag", envTok, nil, envTok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f apiFake
			addr := f.serve(t, map[string]string{"GET /v1/cals": "cals.json"})
			code, _, errs := run(t, addr, map[string]string{"CALNET_TOKEN": tt.env}, append(tt.args, "ls")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if len(f.auth) != 1 || f.auth[0] != "Bearer "+tt.want {
				t.Fatalf("sent %q, want the credential %q", f.auth, tt.want)
			}
		})
	}
	// A --token-file given that cannot be read is an error naming the flag,
	// never a silent fall back to CALNET_TOKEN.
	var f apiFake
	addr := f.serve(t, map[string]string{"GET /v1/cals": "cals.json"})
	code, _, errs := run(t, addr, map[string]string{"CALNET_TOKEN": envTok}, "--token-file", filepath.Join(dir, "missing"), "ls")
	if code == 0 || !strings.Contains(errs, "--token-file") || len(f.auth) != 0 {
		t.Fatalf("exit %d, stderr %q, requests %v: want a --token-file error and no request", code, errs, f.paths)
	}
}

// TestSplitConsole splits a console transcript by command, for
// `console -c ... -o json`.
func TestSplitConsole(t *testing.T) {
	id := "b2c3d4e5f60718293a4b5c6d7e8f90a1"
	transcript := "calnet console of cal " + id + " (type help)\n" +
		"cal b2c3-d4e5> cal " + id + " depth 1 parent master permissions read\nplatform: every tier ready\n" +
		"cal b2c3-d4e5>   -10  identity   builtin  ready\n" +
		"cal b2c3-d4e5> bye\n"
	s, err := splitConsole(transcript, []string{"status", "tiers"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Cal != id || len(s.Commands) != 2 || s.Commands[0].Command != "status" ||
		s.Commands[0].Output != "cal "+id+" depth 1 parent master permissions read\nplatform: every tier ready\n" ||
		s.Commands[1].Output != "  -10  identity   builtin  ready\n" {
		t.Fatalf("split: %+v", s)
	}
	if _, err := splitConsole("calnet console of cal "+id+" (type help)\ncal b2c3-d4e5> ", []string{"status", "tiers"}); err == nil {
		t.Fatal("a session that ended early split without an error")
	}
	if _, err := splitConsole("hello\n", nil); err == nil {
		t.Fatal("a transcript without the greeting split without an error")
	}
}

// TestStdoutOnlyThroughPrinters keeps -o json from being ignored: outside
// cli.go, no code in this package writes to standard output except
// through print (one result), emit (a stream, JSON Lines) or textStream
// (raw text, refused in -o json mode).
func TestStdoutOnlyThroughPrinters(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") || file == "cli.go" {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Stdout" {
				return true
			}
			if x, ok := sel.X.(*ast.SelectorExpr); ok && x.Sel.Name == "env" {
				t.Errorf("%s: writes to env.Stdout directly; use a.print, a.emit or a.textStream", fset.Position(sel.Pos()))
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "os" {
				t.Errorf("%s: writes to os.Stdout; use a.print, a.emit or a.textStream", fset.Position(sel.Pos()))
			}
			return true
		})
	}
}

// brokenPipe is standard output whose reader has gone.
type brokenPipe struct{}

func (brokenPipe) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestOutputFailureExitsNonZero (issue 11, finding R8): a command whose
// standard output cannot be written (a closed pipe, a full disk) exits
// non-zero and says why, in every kind of output: text through fmt,
// tables through a tabwriter, raw bytes, a text stream, JSON. Text output
// used to drop the write errors and exit 0 (seen failing before the fix
// for the text, table and raw cases).
func TestOutputFailureExitsNonZero(t *testing.T) {
	routes := map[string]string{
		"GET /v1/cals":                          "cals.json",
		"GET /v1/approvals?state=":              "approvals.json",
		"GET /v1/cals/worker/logs?follow=false": "worker.log",
	}
	for _, args := range [][]string{
		{"ls"},
		{"ls", "--tree"},
		{"approvals"},
		{"template", "show", "default"},
		{"logs", "worker"},
		{"-o", "json", "ls"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var f apiFake
			addr := f.serve(t, routes)
			var errb bytes.Buffer
			env := map[string]string{"CALNET_TOKEN": testToken}
			code := Main(context.Background(), append([]string{"--addr", addr}, args...),
				Env{Stdout: brokenPipe{}, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
			if code == 0 {
				t.Fatalf("exit 0 with its output lost; stderr %q", errb.String())
			}
			if !strings.Contains(errb.String(), syscall.EPIPE.Error()) {
				t.Errorf("stderr %q does not say why", errb.String())
			}
		})
	}
}
