package caltls_test

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/caltls"
	"github.com/soulfra/calnet/internal/caltls/caltlstest"
	"github.com/soulfra/calnet/trust"
)

type revokedSet map[identity.ID]bool

func (r revokedSet) IsRevoked(id identity.ID) bool { return r[id] }

// handshake connects a client (dialer) to a server (listener) over
// loopback TCP and returns both sides' errors and the client's state.
func handshake(t *testing.T, server, client *tls.Config) (cs tls.ConnectionState, srvErr, cliErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
		done <- tc.Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		// TLS 1.3: the server's verdict on the client arrives with the
		// first read.
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, cliErr = c.Read(make([]byte, 1))
		if errors.Is(cliErr, net.ErrClosed) || cliErr != nil && strings.Contains(cliErr.Error(), "EOF") {
			cliErr = nil
		}
		cs = c.ConnectionState()
		c.Close()
	} else {
		cliErr = err
	}
	return cs, <-done, cliErr
}

func TestServerTLS(t *testing.T) {
	now := time.Now()
	net1, err := caltlstest.New(now)
	if err != nil {
		t.Fatal(err)
	}
	net2, err := caltlstest.New(now)
	if err != nil {
		t.Fatal(err)
	}
	admin := trust.PermissionsOf(trust.PermAdmin, trust.PermRead)
	bless := func(n *caltlstest.Network, perms trust.Permissions) caltls.ServerIdentity {
		id, err := n.Bless(perms)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a, b := bless(net1, admin), bless(net1, admin)
	reader := bless(net1, trust.PermissionsOf(trust.PermRead))
	revokedServer := bless(net1, admin)
	foreign := bless(net2, admin)
	revoked := revokedSet{revokedServer.Chain.Leaf().Child(): true}
	rv := func() trust.RevocationView { return revoked }

	aSrv, _, err := caltls.ServerTLS(a, net1.Verifier, rv, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The reader and the revoked server make their configurations with a
	// verifier that does not know better, as an intruder would.
	cases := []struct {
		name string
		id   caltls.ServerIdentity
		v    *trust.Verifier
		want string // "" for a connection
	}{
		{"a server of the same network", b, net1.Verifier, ""},
		// The intruder's own verifier refuses our server first.
		{"a server of another network", foreign, net2.Verifier, "belongs to network " + net1.Verifier.Network().String()},
		{"a Cal without admin", reader, net1.Verifier, "not blessed as a server"},
		{"a revoked server", revokedServer, net1.Verifier, "revoked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, cli, err := caltls.ServerTLS(tc.id, tc.v, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			cs, srvErr, cliErr := handshake(t, aSrv, cli)
			if tc.want == "" {
				if srvErr != nil || cliErr != nil {
					t.Fatalf("server %v, client %v", srvErr, cliErr)
				}
				if cs.Version != tls.VersionTLS13 || cs.CurveID != tls.X25519MLKEM768 {
					t.Fatalf("version %x curve %v, want TLS 1.3 with X25519MLKEM768", cs.Version, cs.CurveID)
				}
				return
			}
			if srvErr == nil || cliErr == nil {
				t.Fatalf("connected: server %v, client %v", srvErr, cliErr)
			}
			if !strings.Contains(srvErr.Error(), tc.want) && !strings.Contains(cliErr.Error(), tc.want) {
				t.Fatalf("server %v, client %v: want an error saying %q", srvErr, cliErr, tc.want)
			}
		})
	}

	// And a client refuses a server of another network.
	_, aCli, err := caltls.ServerTLS(a, net1.Verifier, rv, nil)
	if err != nil {
		t.Fatal(err)
	}
	fSrv, _, err := caltls.ServerTLS(foreign, net2.Verifier, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, cliErr := handshake(t, fSrv, aCli); cliErr == nil || !strings.Contains(cliErr.Error(), "servers of another network are refused") {
		t.Fatalf("dialing a server of another network: %v", cliErr)
	}
	fc, err := fSrv.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := caltls.VerifyServer(fc.Certificate, net1.Verifier, nil, now); err == nil || !strings.Contains(err.Error(), "servers of another network are refused") {
		t.Fatalf("a certificate of another network: %v", err)
	}

	// A server refuses to start with a chain that is not its own, or that
	// its network does not accept.
	if _, _, err := caltls.ServerTLS(caltls.ServerIdentity{Key: b.Key, Chain: a.Chain}, net1.Verifier, nil, nil); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("someone else's chain: %v", err)
	}
	if _, _, err := caltls.ServerTLS(foreign, net1.Verifier, nil, nil); err == nil || !strings.Contains(err.Error(), "own chain") {
		t.Fatalf("a chain of another network: %v", err)
	}
}

// A Cal's certificate (spiffe://<network>/cal/<id>) is not a server's.
func TestVerifyServerRefusesCalCertificate(t *testing.T) {
	now := time.Now()
	n, err := caltlstest.New(now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := n.Bless(trust.PermissionsOf(trust.PermAdmin))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := caltls.Certificate(id.Key, n.Verifier.Network(), "/cal/"+id.Chain.Leaf().Child().String(), nil, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := caltls.VerifyServer(cert.Certificate, n.Verifier, nil, now); err == nil || !strings.Contains(err.Error(), "not a server's identity") {
		t.Fatalf("a Cal certificate as a server's: %v", err)
	}
}
