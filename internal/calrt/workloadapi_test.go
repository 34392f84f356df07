package calrt

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/spiffeca"
)

// workloadFixture is the Workload API of a Cal on a real unix socket,
// with SVIDs issued by a real authority.
type workloadFixture struct {
	rt   *Runtime
	ca   *spiffeca.Authority
	cal  identity.ID
	addr string
}

func newWorkloadFixture(t testing.TB) *workloadFixture {
	genesis, err := identity.FromSeed(bytes.Repeat([]byte{1}, 64))
	if err != nil {
		t.Fatal(err)
	}
	calKey, err := identity.FromSeed(bytes.Repeat([]byte{2}, 64))
	if err != nil {
		t.Fatal(err)
	}
	n := genesis.Public().NetworkID()
	ca, err := spiffeca.New(spiffeca.Config{Network: n, Born: time.Now().Add(-time.Hour), Root: genesis.TLSSigner()})
	if err != nil {
		t.Fatal(err)
	}
	rt := &Runtime{network: n, svids: newSVIDState()}
	sock := filepath.Join(t.TempDir(), WorkloadSocket)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, &workloadAPI{rt: rt})
	go func() { _ = srv.Serve(ln) }() // ends when the test stops it
	t.Cleanup(srv.Stop)
	f := &workloadFixture{rt: rt, ca: ca, cal: calKey.Public().ID(), addr: "unix://" + sock}
	f.renew(t)
	return f
}

// renew issues the workload a new SVID and publishes it, as the Cal's
// renewal loop does.
func (f *workloadFixture) renew(t testing.TB) *spiffeca.SVID {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.ca.Issue(spiffeca.Request{Cal: f.cal, Workload: true, Key: &k.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := x509.MarshalPKCS8PrivateKey(k)
	f.rt.svids.set(&workloadSVID{id: s.ID.String(), chain: s.Raw(), key: pk, bundle: [][]byte{f.ca.Root().Raw}})
	return s
}

// TestWorkloadAPIWithGoSPIFFE: go-spiffe's own client fetches the SVID
// and the bundle, and its X509Source follows a renewal pushed to it.
func TestWorkloadAPIWithGoSPIFFE(t *testing.T) {
	f := newWorkloadFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.Path() != spiffeca.CalPath(f.cal, true) {
		t.Fatalf("id %s", svid.ID)
	}
	bundles, err := workloadapi.FetchX509Bundles(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundles.GetX509BundleForTrustDomain(f.ca.TrustDomain())
	if err != nil || !b.HasX509Authority(f.ca.Root()) {
		t.Fatalf("bundle: %v", err)
	}
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(f.addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	next := f.renew(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cur, err := src.GetX509SVID()
		if err == nil && cur.Certificates[0].SerialNumber.Cmp(next.Leaf().SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewal never reached the X509Source")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkloadAPIRequiresTheSecurityHeader refuses a client without the
// workload.spiffe.io header, as SPIRE does.
func TestWorkloadAPIRequiresTheSecurityHeader(t *testing.T) {
	f := newWorkloadFixture(t)
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("without the header: %v, want InvalidArgument", err)
	}
}

// BenchmarkWorkloadAPIFetch is a known workload fetching its X.509-SVID
// with go-spiffe: dial the socket, fetch, close (as SPIRE's agent is
// measured).
func BenchmarkWorkloadAPIFetch(b *testing.B) {
	f := newWorkloadFixture(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(f.addr)); err != nil {
			b.Fatal(err)
		}
	}
}
