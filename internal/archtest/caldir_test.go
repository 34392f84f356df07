package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const mod = "github.com/soulfra/calnet/"

// eachCall parses the non-test Go files of every package and calls fn
// with each call expression and where it is.
func eachCall(t *testing.T, fn func(pkg, pos string, call *ast.CallExpr)) {
	t.Helper()
	for _, p := range listPackages(t) {
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if call, ok := n.(*ast.CallExpr); ok {
					fn(p.ImportPath, fset.Position(call.Pos()).String(), call)
				}
				return true
			})
		}
	}
}

// callee is the name a call is made by: "Join" for filepath.Join(...),
// "DialContext" for d.DialContext(...).
func callee(call *ast.CallExpr) string {
	switch f := call.Fun.(type) {
	case *ast.SelectorExpr:
		return f.Sel.Name
	case *ast.Ident:
		return f.Name
	}
	return ""
}

func literal(e ast.Expr) (string, bool) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(b.Value)
	return s, err == nil
}

// TestOnlyCaldirTouchesCalDirectories keeps DESIGN.md section 7's last
// boundary: the control plane (root) never opens, dials or follows a path
// a Cal can write. Every path of a Cal's directories comes from
// internal/caldir, which opens nothing through a link and checks the peer
// of every socket it dials; so, outside it:
//
//   - no code builds a path under the data directory's cals/ or host/;
//   - only the control plane takes a sandbox's MountSource (to hand the
//     driver what it mounts as /data), and the sandbox builds nothing
//     below the Cal's directory (Config.Dir), before or after the pivot;
//   - no code dials a unix socket but the Cal's own side (internal/calrt,
//     dialing the control plane's root-owned socket; the client SDK, which
//     a workload uses for its local socket inside the Cal; internal/sealgate,
//     `calnet unseal` dialing <data>/unseal.sock, which is in no Cal's
//     directory, and checking that its peer runs as the caller's uid).
func TestOnlyCaldirTouchesCalDirectories(t *testing.T) {
	mayDialUnix := map[string]bool{mod + "internal/caldir": true, mod + "internal/calrt": true, mod + "client": true, mod + "internal/sealgate": true}
	eachCall(t, func(pkg, pos string, call *ast.CallExpr) {
		if pkg == mod+"internal/caldir" {
			return
		}
		name := callee(call)
		switch {
		case name == "Join":
			for i, a := range call.Args {
				if s, ok := literal(a); ok && (s == "cals" || s == "host" || strings.HasPrefix(s, "cals/") || strings.HasPrefix(s, "host/")) {
					t.Errorf("%s: builds a path under %s/: a Cal's directories are named by internal/caldir only", pos, s)
				}
				if sel, ok := a.(*ast.SelectorExpr); ok && i == 0 && sel.Sel.Name == "Dir" &&
					(pkg == mod+"internal/sandbox" || strings.HasPrefix(pkg, mod+"internal/driver")) {
					t.Errorf("%s: builds a path below the Cal's directory (.Dir), which the Cal can rewrite; use a root-owned one (caldir.Host)", pos)
				}
			}
		case name == "MountSource" && pkg != mod+"internal/controlplane":
			t.Errorf("%s: takes a Cal's sandbox path; only the control plane hands it to the driver", pos)
		case strings.HasPrefix(name, "Dial") && !mayDialUnix[pkg]:
			for _, a := range call.Args {
				if s, ok := literal(a); ok && strings.HasPrefix(s, "unix") {
					t.Errorf("%s: dials a unix socket; dial a Cal's through caldir.Socket.Dial, which checks its peer", pos)
				}
			}
		}
	})
}
