package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nobodyUID is the local unprivileged user of these tests.
const nobodyUID = 65534

// TestDataDirOfAnotherUserRefused: a local user who makes the data
// directory before the operator runs calnet up on it (in /tmp, say) owns
// it: before, calnet up ran there, and the user then renamed admin.token
// away, wrote one of their own, and was the root administrator after the
// next start (and could replace the programs every Cal runs, the state
// store or the Cal filesystem's image the same way). Now calnet up
// refuses such a directory, or one below a directory another user may
// write, or an admin.token another user owns, naming it, and writes
// nothing.
func TestDataDirOfAnotherUserRefused(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil { // like /tmp
		t.Fatal(err)
	}
	mine := func(name string) string {
		p := filepath.Join(tmp, name)
		if err := os.Mkdir(p, 0o711); err != nil {
			t.Fatal(err)
		}
		return p
	}
	theirs := func(p string, mode os.FileMode) string {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, nobodyUID, nobodyUID); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The data directory is the local user's.
	data := theirs(mine("data"), 0o777)
	if out := upRefused(t, data); !strings.Contains(out, "owned by uid 65534") {
		t.Errorf("calnet up on another user's directory: %s", out)
	}
	if _, err := os.Stat(filepath.Join(data, "admin.token")); err == nil {
		t.Errorf("calnet up wrote admin.token into another user's directory")
	}

	// A directory above it is the local user's.
	home := theirs(mine("home"), 0o755)
	below := filepath.Join(home, "data")
	if err := os.Mkdir(below, 0o711); err != nil {
		t.Fatal(err)
	}
	if out := upRefused(t, below); !strings.Contains(out, home+" is owned by uid 65534") {
		t.Errorf("calnet up below another user's directory: %s", out)
	}

	// The directory is root's, but it is world-writable.
	open := mine("open")
	must(t, os.Chmod(open, 0o777))
	if out := upRefused(t, open); !strings.Contains(out, "writable by its group or others") {
		t.Errorf("calnet up on a world-writable directory: %s", out)
	}

	// The directory is root's, but the local user planted admin.token
	// (while it was theirs, say): refused, naming the file.
	planted := mine("planted")
	tok := filepath.Join(planted, "admin.token")
	if err := os.WriteFile(tok, []byte("calnet_admin_"+strings.Repeat("a", 64)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	theirs(tok, 0o644)
	if out := upRefused(t, planted); !strings.Contains(out, "admin.token") || !strings.Contains(out, "owned by another user") {
		t.Errorf("calnet up with another user's admin.token: %s", out)
	}
}

// upRefused runs calnet up on data and returns its output; it must exit
// with an error, without serving.
func upRefused(t *testing.T, data string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, calnetBin, "up", "--data", data, "--addr", freeAddr(t), "--router", freeAddr(t), "--dns", freeAddr(t))
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("calnet up --data %s: %v, want a refusal\n%s", data, err, out)
	}
	return string(out)
}
