package controlplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/spiffeca"
	"github.com/soulfra/calnet/trust"
)

// svidHarness is a control plane serving its Cal API over mutual TLS on
// a unix socket (as run/cal.sock), and one Cal blessed by the Master.
type svidHarness struct {
	s      *Server
	sock   string
	cal    *identity.PrivateKey
	master *identity.PrivateKey
	src    *caltls.Source
	hc     *http.Client
}

func newSVIDHarness(t testing.TB) *svidHarness {
	ctx := context.Background()
	s, err := Open(ctx, Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.store.Close() })
	close(s.recovered)
	sock := filepath.Join(t.TempDir(), "cal.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.calHandler(), TLSConfig: caltls.Config(s.certs, s.resolveCal, true)}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { srv.Close() })
	masterKey, err := s.net.LoadKey(filepath.Join(s.networkDir(), "master"))
	if err != nil {
		t.Fatal(err)
	}
	key, src := blessTestCal(t, s, masterKey, 1, trust.PermissionsOf(trust.PermRead))
	controlPlane := func(p *caltls.Peer) error { return nil }
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: caltls.Config(src, controlPlane, false), MaxIdleConns: 2,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	return &svidHarness{s: s, sock: sock, cal: key, master: masterKey, src: src, hc: hc}
}

// ask posts an SVID request and returns the status and the reply.
func (h *svidHarness) ask(t testing.TB, csr []byte) (int, string, *calproto.SVIDReply) {
	body, _ := json.Marshal(calproto.SVIDRequest{CSR: csr})
	resp, err := h.hc.Post("https://control-plane"+calproto.PathSVID, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	var r calproto.SVIDReply
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, buf.String(), &r
}

func workloadCSR(t testing.TB) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func parseChain(t testing.TB, raw [][]byte) []*x509.Certificate {
	var out []*x509.Certificate
	for _, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// TestSVIDsOverTheCalAPI: a Cal gets its own SVID and its workload's over
// the Cal API, both verify with go-spiffe against the network's bundle,
// the Cal then authenticates with its SVID; a bad CSR is refused naming
// it; a revoked Cal gets no SVID and its SVIDs are refused as revoked.
func TestSVIDsOverTheCalAPI(t *testing.T) {
	h := newSVIDHarness(t)
	id := h.cal.Public().ID()
	code, msg, own := h.ask(t, nil)
	if code != 200 {
		t.Fatalf("the cal's own svid: %d %s", code, msg)
	}
	got, _, err := x509svid.Verify(parseChain(t, own.Chain), h.s.ca.Bundle())
	if err != nil || got.Path() != spiffeca.CalPath(id, false) {
		t.Fatalf("go-spiffe on the cal's svid: %v %v", got, err)
	}
	if err := spiffeca.RootMatches(parseChain(t, own.Bundle)[0], h.s.net.Info.RootKeys); err != nil {
		t.Fatal(err)
	}
	// From now on the Cal presents its SVID: the control plane checks the
	// chain against the root, then the key against the blessing.
	if err := h.src.SetIssued(own.Chain); err != nil {
		t.Fatal(err)
	}
	h.hc.CloseIdleConnections()
	code, msg, wl := h.ask(t, workloadCSR(t))
	if code != 200 {
		t.Fatalf("the workload's svid, asked with the cal's svid: %d %s", code, msg)
	}
	if got, _, err := x509svid.Verify(parseChain(t, wl.Chain), h.s.ca.Bundle()); err != nil || got.Path() != spiffeca.CalPath(id, true) {
		t.Fatalf("go-spiffe on the workload's svid: %v %v", got, err)
	}
	if v := h.s.verifySVID(wl.Chain); !v.Valid || v.Cal != id.String() || !v.Workload {
		t.Fatalf("verdict on the workload's svid: %+v", v)
	}
	for name, csr := range map[string][]byte{"garbage": []byte("x"), "too big": make([]byte, spiffeca.MaxCSR+1)} {
		if code, msg, _ := h.ask(t, csr); code != 400 || !strings.Contains(msg, "csr") {
			t.Errorf("%s csr: %d %s", name, code, msg)
		}
	}
	r, err := trust.Revoke(h.master, trust.RevokeRequest{Network: h.s.net.Info.Network, Target: id, Reason: "test", IssuedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	h.s.trustMu.Lock()
	err = h.s.state.Revocations.Add(r, h.s.state)
	h.s.trustMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if code, msg, _ := h.ask(t, nil); code != 403 || !strings.Contains(msg, "revoked") {
		t.Fatalf("a revoked cal asked for an svid: %d %s", code, msg)
	}
	for _, raw := range [][][]byte{own.Chain, wl.Chain} {
		if v := h.s.verifySVID(raw); v.Valid || v.Reason != string(spiffeca.ReasonRevoked) {
			t.Fatalf("verdict on a revoked cal's svid: %+v", v)
		}
	}
}

// BenchmarkSVIDRenewal is a Cal renewing an SVID over the Cal API as its
// runtime does (mutual TLS on a unix socket, a kept-alive connection):
// "cal" certifies its identity key, "workload" includes the new P-256
// key and CSR the Cal makes for its workload.
func BenchmarkSVIDRenewal(b *testing.B) {
	h := newSVIDHarness(b)
	for _, bc := range []struct {
		name string
		csr  func() []byte
	}{
		{"cal", func() []byte { return nil }},
		{"workload", func() []byte { return workloadCSR(b) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if code, msg, _ := h.ask(b, bc.csr()); code != 200 {
					b.Fatal(code, msg)
				}
			}
		})
	}
}

// TestBundleEndpointFederates: go-spiffe's federation client fetches the
// network's bundle from the bundle endpoint (https_spiffe profile),
// authenticating it by its SPIFFE ID against the bundle it holds; an
// endpoint ID it does not expect is refused.
func TestBundleEndpointFederates(t *testing.T) {
	h := newSVIDHarness(t)
	handler, tc, err := h.s.bundleEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, TLSConfig: tc}
	go func() { _ = srv.ServeTLS(ln, "", "") }() // ends when the test closes it
	defer srv.Close()
	td := h.s.ca.TrustDomain()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := "https://" + ln.Addr().String() + "/"
	got, err := federation.FetchBundle(ctx, td, url, federation.WithSPIFFEAuth(h.s.ca.Bundle(), spiffeid.RequireFromPath(td, spiffeca.BundleEndpointPath)))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(h.s.spiffeBundle()) || len(got.X509Authorities()) != 1 {
		t.Fatalf("fetched bundle differs: %d authorities", len(got.X509Authorities()))
	}
	if _, err := federation.FetchBundle(ctx, td, url, federation.WithSPIFFEAuth(h.s.ca.Bundle(), spiffeid.RequireFromPath(td, "/someone-else"))); err == nil {
		t.Fatal("an unexpected endpoint ID was accepted")
	}
}
