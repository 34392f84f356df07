package archtest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Dir        string
	Name       string
	Doc        string
	GoFiles    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "github.com/soulfra/calnet/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Doc == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

// TestCoreDependencies pins what the trust core may link: the crypto and
// log libraries it is built on, nothing of the CLI, the state store, or
// Kubernetes. Every Cal links these packages, so each dependency costs
// start-up time.
func TestCoreDependencies(t *testing.T) {
	forbidden := []string{"github.com/spf13/", "go.etcd.io/bbolt", "k8s.io/", "github.com/soulfra/calnet/internal/cli", "net/http"}
	core := map[string]bool{
		"github.com/soulfra/calnet/identity": true,
		"github.com/soulfra/calnet/trust":    true,
		"github.com/soulfra/calnet/ledger":   true,
	}
	for _, p := range listPackages(t) {
		if !core[p.ImportPath] {
			continue
		}
		for _, d := range p.Deps {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s", p.ImportPath, d)
				}
			}
		}
	}
}

type imports struct {
	ImportPath string
	Imports    []string
}

// TestOnlyStoreTouchesBolt keeps bbolt and Raft behind the store
// interface: one package owns durability and replication.
func TestOnlyStoreTouchesBolt(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "github.com/soulfra/calnet/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p imports
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		for _, imp := range p.Imports {
			owned := imp == "go.etcd.io/bbolt" || strings.HasPrefix(imp, "github.com/hashicorp/raft")
			if owned && p.ImportPath != "github.com/soulfra/calnet/internal/store" {
				t.Errorf("%s imports %s; go through internal/store", p.ImportPath, imp)
			}
		}
	}
}

// TestBinaryDependencies keeps test-only and future heavy dependencies out
// of the calnet binary, whose every Cal pays for what it links.
func TestBinaryDependencies(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.ImportPath != "github.com/soulfra/calnet/cmd/calnet" {
			continue
		}
		for _, d := range p.Deps {
			// PKCS#11 is cgo: it lives in the calnet-pkcs11 helper (internal/hsm).
			for _, f := range []string{"github.com/getkin/kin-openapi", "github.com/makiuchi-d/gozxing", "k8s.io/", "github.com/miekg/pkcs11", "github.com/ThalesGroup/crypto11"} {
				if strings.HasPrefix(d, f) {
					t.Errorf("the calnet binary links %s", d)
				}
			}
		}
	}
}

func TestOnlyMainExits(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Name == "main" {
			continue
		}
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "os" && sel.Sel.Name == "Exit" {
						t.Errorf("%s calls os.Exit; only main may", path)
					}
				}
				return true
			})
		}
	}
}

// strictJSONAllowed are the files that may call encoding/json's decoders
// directly, and why: everything else decodes through internal/strictjson
// (case-exact keys, no duplicate, no unknown field, nothing after the
// document, a size limit).
var strictJSONAllowed = map[string]string{
	"internal/strictjson/strictjson.go": "the strict decoder itself",
	"client/client.go":                  "the Go SDK reads the answers of the server it was pointed at, leniently so that a newer server's extra fields do not break an older SDK",
	"internal/store/store.go":           "the control plane's own state, written by this code (the Disk principal in SECURITY.md)",
	"internal/controlplane/docs.go":     "the OpenAPI document embedded at build time",
}

// TestUntrustedJSONIsDecodedStrictly forbids json.Unmarshal and
// json.NewDecoder outside internal/strictjson and the few files above:
// encoding/json matches keys case-insensitively and accepts duplicated
// keys, unknown fields and (Decoder) trailing data.
func TestUntrustedJSONIsDecodedStrictly(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range listPackages(t) {
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			rel, _ := filepath.Rel(root, path)
			if _, ok := strictJSONAllowed[filepath.ToSlash(rel)]; ok {
				continue
			}
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			name := ""
			for _, imp := range file.Imports {
				if imp.Path.Value == `"encoding/json"` {
					name = "json"
					if imp.Name != nil {
						name = imp.Name.Name
					}
				}
			}
			if name == "" {
				continue
			}
			ast.Inspect(file, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == name && (sel.Sel.Name == "Unmarshal" || sel.Sel.Name == "NewDecoder") {
					t.Errorf("%s: json.%s: decode through internal/strictjson (or add the file to strictJSONAllowed with the reason)", fset.Position(sel.Pos()), sel.Sel.Name)
				}
				return true
			})
		}
	}
}

// TestRoutesOnlyThroughTheAuthorizationTable: no package but internal/authz
// makes a ServeMux or registers on the default one, so every route of
// every server is built by authz.Mux, which refuses a route the
// authorization table does not name. (Examples are user programs.)
func TestRoutesOnlyThroughTheAuthorizationTable(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.ImportPath == "github.com/soulfra/calnet/internal/authz" || strings.Contains(p.ImportPath, "/examples/") {
			continue
		}
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "http" {
						switch sel.Sel.Name {
						case "NewServeMux", "ServeMux", "Handle", "HandleFunc", "DefaultServeMux":
							t.Errorf("%s uses http.%s; build routes with authz.NewMux (every route needs an entry in internal/authz/table.go)", path, sel.Sel.Name)
						}
					}
				}
				return true
			})
		}
	}
}
