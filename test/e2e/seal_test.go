package e2e

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/seal"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/internal/vault"
)

// unseal runs `calnet unseal --data D --passphrase-fd 3` with secret on
// descriptor 3.
func unseal(t *testing.T, data, secret string) result {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = io.WriteString(w, secret+"\n") // the command's result says whether it arrived
		w.Close()
	}()
	cmd := exec.Command(calnetBin, "unseal", "--data", data, "--passphrase-fd", "3")
	cmd.ExtraFiles = []*os.File{r}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	r.Close()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return result{code, out.String(), errb.String()}
}

// sealedUp starts `calnet up` sealed on data and waits until it answers
// "sealed".
func sealedUp(t *testing.T, data string, extra ...string) *network {
	t.Helper()
	n := &network{t: t, data: data, addr: freeAddr(t), dns: freeAddr(t), router: freeAddr(t), flags: extra, sealed: true}
	n.start()
	t.Cleanup(func() {
		n.stop(syscall.SIGTERM)
		n.reap()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(filepath.Dir(data), filepath.Base(data)+".log"))
			t.Logf("calnet up's log:\n%s", b)
		}
	})
	waitFor(t, "the sealed API", 30*time.Second, func() bool {
		code, body := sealedGet(n, "/v1/cals")
		return code == 503 && strings.Contains(body, `"sealed":true`)
	})
	return n
}

func sealedGet(n *network, path string) (int, string) {
	resp, err := http.Get("http://" + n.addr + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// clearAgeSecrets lists the regular files under dir (the Cal filesystem
// mounted on dir/cals included, its image skipped) that hold an age
// secret key in clear.
func clearAgeSecrets(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsPermission(err) || os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() || d.Name() == "cals.img" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // a file that went away meanwhile
		}
		if bytes.Contains(b, []byte("AGE-SECRET-KEY")) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestSealedStartAndUnseal: `calnet up --seal passphrase` starts sealed
// (every API route answers 503 "sealed", no key is loaded), is unsealed
// by `calnet unseal` through the root-only socket, refuses a wrong
// passphrase by name while staying sealed, and keeps no key-encryption key
// in clear anywhere in the data directory (the Cals' /data included). At
// rest, whoever holds the passphrase (and so the control plane once
// unsealed) can read every Cal's vault; the data directory alone cannot.
func TestSealedStartAndUnseal(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	const pass = "correct horse battery staple"
	n := sealedUp(t, data, "--seal", "passphrase")
	if r := n.cliAs("calnet_admin_"+strings.Repeat("0", 64), "status"); r.code == 0 || !strings.Contains(r.stderr, "sealed") {
		t.Fatalf("status while sealed: %+v", r)
	}
	if code, body := sealedGet(n, "/v1/seal-status"); code != 200 || !strings.Contains(body, `"seal":"passphrase"`) {
		t.Fatalf("seal-status: %d %s", code, body)
	}
	if st, err := os.Stat(filepath.Join(data, "unseal.sock")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("unseal socket: %v %v", st, err)
	}
	if r := unseal(t, data, "short"); r.code == 0 || !strings.Contains(r.stderr, "minimum") {
		t.Fatalf("a short new passphrase: %+v", r)
	}
	if r := unseal(t, data, pass); r.code != 0 || !strings.Contains(r.stdout, "unsealed") {
		t.Fatalf("unseal: %+v", r)
	}
	n.waitUp()
	master := n.master()
	if _, err := n.c.Reflect(ctx, master, "observation", "the vault's secret thought", nil); err != nil {
		t.Fatal(err)
	}
	if found := clearAgeSecrets(t, data); len(found) > 0 {
		t.Fatalf("age secret keys in clear: %v", found)
	}
	if _, err := os.Stat(filepath.Join(data, "network", seal.RootFile)); !os.IsNotExist(err) {
		t.Fatalf("a passphrase network has seal.key: %v", err)
	}
	// Copies of the Master's key file and vault, read at rest below.
	atRest := t.TempDir()
	for _, f := range []string{"identity.key", "vault/reflections.log", "vault/reflections.head"} {
		b, err := os.ReadFile(filepath.Join(data, "cals", master, f))
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.MkdirAll(filepath.Join(atRest, filepath.Dir(f)), 0o700))
		must(t, os.WriteFile(filepath.Join(atRest, f), b, 0o600))
	}
	n.stop(syscall.SIGTERM)

	// At rest: the passphrase opens the root, the root the Master's
	// key-encryption identity, that its key and vault.
	net, err := netdir.Load(filepath.Join(data, "network"), netdir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seal.Unseal(ctx, net.Dir, net.Info.Network.String(), &seal.Passphrase{Secret: []byte("wrong horse battery staple")}); err == nil {
		t.Fatal("a wrong passphrase unsealed the root")
	}
	root, err := seal.Unseal(ctx, net.Dir, net.Info.Network.String(), &seal.Passphrase{Secret: []byte(pass)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(filepath.Join(data, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	var sealedKEK []byte
	must(t, st.View(ctx, func(tx store.Tx) (err error) { sealedKEK, err = tx.Get("keks", master); return err }))
	must(t, st.Close())
	plain, err := root.Open("cal-kek:"+master, sealedKEK)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := age.ParseHybridIdentity(string(plain))
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.LoadKeyFile(filepath.Join(atRest, "identity.key"), kek)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(atRest, "vault", "reflections.log"))
	if err != nil || bytes.Contains(raw, []byte("secret thought")) {
		t.Fatalf("the vault file: %v (or in clear)", err)
	}
	if !vaultHolds(t, filepath.Join(atRest, "vault"), kek, key, "the vault's secret thought") {
		t.Fatal("the root did not open the Master's vault")
	}
	other, _ := age.GenerateHybridIdentity()
	if vaultHolds(t, filepath.Join(atRest, "vault"), other, key, "the vault's secret thought") {
		t.Fatal("another identity opened the vault")
	}

	// Restarted without --seal: sealed again (the mode is the network's);
	// a wrong passphrase is refused by name and it stays sealed.
	n = sealedUp(t, data)
	if r := unseal(t, data, "wrong horse battery staple"); r.code == 0 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Fatalf("wrong passphrase: %+v", r)
	}
	if code, _ := sealedGet(n, "/v1/cals"); code != 503 {
		t.Fatalf("after a wrong passphrase the API answers %d, want 503", code)
	}
	if r := unseal(t, data, pass); r.code != 0 {
		t.Fatalf("unseal: %+v", r)
	}
	n.waitUp()
	if n.master() != master {
		t.Fatal("another Master after the restart")
	}
	rs, err := n.c.Reflections(ctx, master, 0)
	if err != nil || len(rs) == 0 || rs[len(rs)-1].Text != "the vault's secret thought" {
		t.Fatalf("reflections after the restart: %+v %v", rs, err)
	}
}

// vaultHolds reports whether the vault in dir, opened with id (and the
// Cal's key, which checks its signed head), has an entry whose text is
// want.
func vaultHolds(t *testing.T, dir string, id *age.HybridIdentity, key *identity.PrivateKey, want string) bool {
	t.Helper()
	l, err := vault.Open(dir, id, key, nil)
	if err != nil {
		return false
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	entries, err := l.Read(0)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Text == want {
			return true
		}
	}
	return false
}

// calnetFDs runs the CLI in dir with secrets on descriptors 3, 4, ...
func calnetFDs(t *testing.T, dir string, env []string, secrets []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(calnetBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CALNET_PASSPHRASE=", "CALNET_DIR="), env...)
	for _, s := range secrets {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, _ = io.WriteString(w, s+"\n") // the command's result says whether it arrived
			w.Close()
		}()
		defer r.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return result{code, out.String(), errb.String()}
}

// TestSealChange moves a network's root from the default file mode to a
// passphrase and back: seal.key is removed while the passphrase protects
// it, the keys need the passphrase then, a wrong current passphrase
// changes nothing, and every key stays usable.
func TestSealChange(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "data"), 0o700))
	ok(t, dir, "init", "--dir", "data/network")
	ok(t, dir, "keygen", "--dir", "data/network", "--out", "a")
	const pass = "correct horse battery staple"
	if r := calnetFDs(t, dir, nil, []string{pass}, "seal", "change", "--data", "data", "--to", "passphrase", "--new-passphrase-fd", "3"); r.code != 0 {
		t.Fatalf("to passphrase: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "network", seal.RootFile)); !os.IsNotExist(err) {
		t.Fatalf("seal.key kept: %v", err)
	}
	if r := calnet(t, dir, "bless", "--dir", "data/network", "--parent", "data/network/master", "--child", "a", "--perm", "read"); r.code == 0 || !strings.Contains(r.stderr, "passphrase") {
		t.Fatalf("bless without the passphrase: %+v", r)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "data", "network", seal.ConfigFile))
	if r := calnetFDs(t, dir, nil, []string{"wrong horse battery staple"}, "seal", "change", "--data", "data", "--to", "file", "--passphrase-fd", "3"); r.code == 0 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Fatalf("a wrong current passphrase: %+v", r)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "data", "network", seal.ConfigFile)); !bytes.Equal(before, after) {
		t.Fatal("a refused change rewrote seal.json")
	}
	if r := calnetFDs(t, dir, []string{"CALNET_PASSPHRASE=" + pass}, nil, "bless", "--dir", "data/network", "--parent", "data/network/master", "--child", "a", "--perm", "read"); r.code != 0 {
		t.Fatalf("bless with the passphrase: %+v", r)
	}
	if r := calnetFDs(t, dir, nil, []string{pass}, "seal", "change", "--data", "data", "--to", "file", "--passphrase-fd", "3"); r.code != 0 {
		t.Fatalf("back to file: %+v", r)
	}
	ok(t, dir, "keygen", "--dir", "data/network", "--out", "b")
	ok(t, dir, "bless", "--dir", "data/network", "--parent", "data/network/master", "--child", "b", "--perm", "read")
}

// TestSealedStartWithSoftHSM: `calnet up --seal pkcs11` on a real SoftHSM2
// token (made here, own SOFTHSM2_CONF) starts sealed, refuses a wrong PIN
// by name and stays sealed, unseals with the right one through `calnet
// unseal` (the token driven by the calnet-pkcs11 helper next to calnet),
// keeps no root and no key-encryption key in clear, and comes back sealed
// by the token after a restart.
func TestSealedStartWithSoftHSM(t *testing.T) {
	needRoot(t)
	const module = "/usr/lib/softhsm/libsofthsm2.so"
	if _, err := os.Stat(module); err != nil {
		t.Skipf("SoftHSM2 is not installed (%v): apt-get install softhsm2 (scripts/test.sh does)", err)
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no C compiler: calnet-pkcs11 needs cgo")
	}
	hsmDir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(hsmDir, "tokens"), 0o700))
	conf := filepath.Join(hsmDir, "softhsm2.conf")
	must(t, os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(hsmDir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600))
	t.Setenv("SOFTHSM2_CONF", conf) // calnet up and its helper inherit it
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "calnet", "--pin", "1234", "--so-pin", "5678").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	helper := filepath.Join(filepath.Dir(calnetBin), "calnet-pkcs11")
	build := exec.Command("go", "build", "-o", helper, "github.com/soulfra/calnet/cmd/calnet-pkcs11")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build calnet-pkcs11: %v\n%s", err, out)
	}

	data := filepath.Join(t.TempDir(), "data")
	n := sealedUp(t, data, "--seal", "pkcs11", "--pkcs11-module", module, "--pkcs11-token", "calnet")
	if r := unseal(t, data, "9999"); r.code == 0 || !strings.Contains(r.stderr, "wrong PIN") {
		t.Fatalf("wrong PIN: %+v", r)
	}
	if code, _ := sealedGet(n, "/v1/cals"); code != 503 {
		t.Fatalf("after a wrong PIN the API answers %d", code)
	}
	if r := unseal(t, data, "1234"); r.code != 0 {
		t.Fatalf("unseal: %+v", r)
	}
	n.waitUp()
	master := n.master()
	cfg, err := seal.ReadConfig(filepath.Join(data, "network"))
	if err != nil || cfg.Mode != seal.ModePKCS11 || cfg.PKCS11.Token != "calnet" {
		t.Fatalf("seal.json: %+v %v", cfg, err)
	}
	if _, err := os.Stat(filepath.Join(data, "network", seal.RootFile)); !os.IsNotExist(err) {
		t.Fatalf("an HSM network has seal.key: %v", err)
	}
	if found := clearAgeSecrets(t, data); len(found) > 0 {
		t.Fatalf("age secret keys in clear: %v", found)
	}
	n.stop(syscall.SIGTERM)

	n = sealedUp(t, data)
	if code, body := sealedGet(n, "/v1/seal-status"); code != 200 || !strings.Contains(body, `"seal":"pkcs11"`) {
		t.Fatalf("seal-status: %d %s", code, body)
	}
	if r := unseal(t, data, "0000"); r.code == 0 || !strings.Contains(r.stderr, "wrong PIN") {
		t.Fatalf("wrong PIN after restart: %+v", r)
	}
	if r := unseal(t, data, "1234"); r.code != 0 {
		t.Fatalf("unseal: %+v", r)
	}
	n.waitUp()
	if n.master() != master {
		t.Fatal("another Master after the restart")
	}
}
