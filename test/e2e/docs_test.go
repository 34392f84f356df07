package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsWalkthroughMarked checks, without a network, what
// scripts/walkthrough.sh needs of README.md and docs/guide.md: every sh
// block marked as a walkthrough or as not run (with why), every file block
// equal to the file it names, no default port in a walkthrough. The test
// command then runs the walkthroughs (scripts/test.sh).
func TestDocsWalkthroughMarked(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(repo, "scripts", "walkthrough.sh"), "--check")
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/walkthrough.sh --check: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "README.md:") || !strings.Contains(string(out), "docs/guide.md:") {
		t.Fatalf("scripts/walkthrough.sh --check checked nothing:\n%s", out)
	}
}
