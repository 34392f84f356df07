package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadTokenFileRefusesShort: an empty or truncated credential file is
// an error, never an empty credential sent as "nobody".
func TestReadTokenFileRefusesShort(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, content string
		ok            bool
	}{
		{"empty", "", false},
		{"blank", " \n", false},
		{"truncated", "calnet_admin_01", false},
		{"whole", "calnet_admin_" + strings.Repeat("ab", 32) + "\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			must(t, os.WriteFile(p, []byte(tt.content), 0o600))
			tok, err := ReadTokenFile(p)
			if tt.ok != (err == nil) {
				t.Fatalf("ReadTokenFile(%q) = %q, %v", tt.content, tok, err)
			}
			if err != nil && !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
			if tt.ok && tok != strings.TrimSpace(tt.content) {
				t.Errorf("got %q", tok)
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
