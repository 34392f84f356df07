package controlplane

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestShortAdminTokenRefused: an empty or truncated admin.token (a crash
// while it was first written) stops the control plane from starting, with
// what to do; it never turns into "no credential needed".
func TestShortAdminTokenRefused(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"empty", ""},
		{"newline", "\n"},
		{"spaces", "   \n"},
		{"truncated", "calnet_admin_0123456789ab"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			if err := os.WriteFile(TokenFile(data), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(context.Background(), Config{DataDir: data})
			if err == nil {
				r := httptest.NewRequest("GET", "/v1/tokens", nil)
				_, admin := s.who(r)
				must(t, s.store.Close())
				t.Fatalf("Open accepted a %q admin.token (a request without a credential is admin: %v)", tt.content, admin)
			}
			for _, want := range []string{TokenFile(data), "at least 32", "remove"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestAdminTokenCreated: the first start writes a long credential, 0600,
// with no temporary file left beside it; the next start reads it back.
func TestAdminTokenCreated(t *testing.T) {
	data := t.TempDir()
	tok, err := loadOrCreateToken(TokenFile(data))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(TokenFile(data))
	if err != nil || st.Mode().Perm() != 0o600 || len(tok) < 32 {
		t.Fatalf("admin.token: %v %v, %d characters", st, err, len(tok))
	}
	ents, _ := os.ReadDir(data)
	if len(ents) != 1 {
		t.Fatalf("data dir holds %v, want only admin.token", ents)
	}
	again, err := loadOrCreateToken(TokenFile(data))
	if err != nil || again != tok {
		t.Fatalf("reloaded %q %v, want %q", again, err, tok)
	}
}

// TestEmptyCredentialNeverAuthenticates: whatever the server holds, an
// empty or missing credential is nobody.
func TestEmptyCredentialNeverAuthenticates(t *testing.T) {
	s := &Server{} // no admin credential loaded
	for _, h := range []string{"", "Bearer ", "Bearer  "} {
		r := httptest.NewRequest("GET", "/v1/status", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if p, ok := s.who(r); ok {
			t.Errorf("Authorization %q authenticated as %+v", h, p)
		}
	}
}
