package caltls_test

import (
	"testing"
	"time"

	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/caltls/caltlstest"
	"github.com/soulfra/calnet/trust"
)

// FuzzVerifyServer: a peer's certificate (its DER and the soul chain in it)
// is untrusted input; verifying it never panics, and nothing but a real
// server certificate of the network passes.
func FuzzVerifyServer(f *testing.F) {
	now := time.Now()
	n, err := caltlstest.New(now)
	if err != nil {
		f.Fatal(err)
	}
	id, err := n.Bless(trust.PermissionsOf(trust.PermAdmin))
	if err != nil {
		f.Fatal(err)
	}
	srv, _, err := caltls.ServerTLS(id, n.Verifier, nil, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	cert, err := srv.GetCertificate(nil)
	if err != nil {
		f.Fatal(err)
	}
	valid := cert.Certificate[0]
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Fuzz(func(t *testing.T, der []byte) {
		ver, err := caltls.VerifyServer([][]byte{der}, n.Verifier, nil, now)
		if err == nil && ver.Cal != id.Chain.Leaf().Child() {
			t.Fatalf("accepted a certificate of %s", ver.Cal)
		}
	})
}
