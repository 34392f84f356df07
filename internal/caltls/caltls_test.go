package caltls

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/spiffeca"
)

func key(t *testing.T, b byte) *identity.PrivateKey {
	k, err := identity.FromSeed(bytes.Repeat([]byte{b}, 64))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMutualTLS(t *testing.T) {
	net1 := key(t, 1).Public().NetworkID()
	srvKey, cliKey, stranger := key(t, 2), key(t, 3), key(t, 4)
	srvSrc, err := NewSource(srvKey, net1, "/cal/"+srvKey.Public().ID().String(), []byte("digest"), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	known := map[identity.ID]ed25519.PublicKey{srvKey.Public().ID(): srvKey.Public().Ed25519(), cliKey.Public().ID(): cliKey.Public().Ed25519()}
	resolve := func(p *Peer) error {
		k, ok := known[p.Cal]
		if !ok || !k.Equal(p.Key) {
			return errors.New("unknown cal")
		}
		return nil
	}
	tests := []struct {
		name    string
		client  *identity.PrivateKey
		network identity.NetworkID
		wantErr bool
	}{
		{"known cal", cliKey, net1, false},
		{"stranger", stranger, net1, true},
		{"other trust domain", cliKey, key(t, 9).Public().NetworkID(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cliSrc, err := NewSource(tt.client, tt.network, "/cal/"+tt.client.Public().ID().String(), nil, time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, b := socketPair(t)
			srv := tls.Server(a, Config(srvSrc, resolve, true))
			cli := tls.Client(b, Config(cliSrc, resolve, false))
			errc := make(chan error, 1)
			go func() { errc <- srv.Handshake(); a.Close() }()
			cerr := cli.Handshake()
			serr := <-errc
			b.Close()
			if tt.wantErr {
				if serr == nil {
					t.Fatal("server accepted the client")
				}
				return
			}
			if cerr != nil || serr != nil {
				t.Fatalf("handshake: client %v, server %v", cerr, serr)
			}
			cs := cli.ConnectionState()
			if cs.CurveID != tls.X25519MLKEM768 {
				t.Errorf("key exchange %v, want X25519MLKEM768", cs.CurveID)
			}
			p, err := PeerOf(&cs, net1)
			if err != nil || p.Cal != srvKey.Public().ID() || string(p.BlessingDigest) != "digest" {
				t.Fatalf("peer %+v %v", p, err)
			}
		})
	}
}

func TestParsePeerRejects(t *testing.T) {
	k := key(t, 5)
	n := k.Public().NetworkID()
	good, _ := Certificate(k, n, "/cal/"+k.Public().ID().String(), nil, time.Hour, time.Now())
	bad, _ := Certificate(k, n, "/elsewhere", nil, time.Hour, time.Now())
	expired, _ := Certificate(k, n, "/cal/"+k.Public().ID().String(), nil, time.Minute, time.Now().Add(-time.Hour))
	tests := []struct {
		name  string
		certs [][]byte
		want  string
	}{
		{"none", nil, "want 1..4 certificates"},
		{"garbage", [][]byte{[]byte("x")}, "caltls"},
		{"unknown path", bad.Certificate, "unknown SPIFFE path"},
		{"expired", expired.Certificate, "validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParsePeer(tt.certs, n, time.Now(), nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := ParsePeer(good.Certificate, n, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
}

// FuzzParsePeer feeds arbitrary certificates, alone (self-signed) and as
// a leaf with an issuer (an issued chain checked against the network's
// root), to ParsePeer: it never panics, and a chain it accepts names a
// key the authority certified.
func FuzzParsePeer(f *testing.F) {
	g, _ := identity.FromSeed(bytes.Repeat([]byte{1}, 64))
	k, _ := identity.FromSeed(bytes.Repeat([]byte{6}, 64))
	n := g.Public().NetworkID()
	c, _ := Certificate(k, n, "/cal/"+k.Public().ID().String(), []byte("d"), time.Hour, time.Now())
	ca, err := spiffeca.New(spiffeca.Config{Network: n, Born: time.Now().Add(-time.Hour), Root: g.TLSSigner()})
	if err != nil {
		f.Fatal(err)
	}
	svid, err := ca.Issue(spiffeca.Request{Cal: k.Public().ID(), Key: k.Public().Ed25519(), BlessingDigest: []byte("d")})
	if err != nil {
		f.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	f.Add(c.Certificate[0], []byte(nil))
	f.Add(svid.Chain[0].Raw, svid.Chain[1].Raw)
	f.Fuzz(func(t *testing.T, leaf, issuer []byte) {
		raw := [][]byte{leaf}
		if issuer != nil {
			raw = append(raw, issuer)
		}
		p, err := ParsePeer(raw, n, time.Now(), roots)
		if err == nil && issuer != nil && (p.Cal != k.Public().ID() || !k.Public().Ed25519().Equal(p.Key)) {
			t.Fatalf("accepted a chain the authority did not issue: %s", p.Cal)
		}
	})
}

// socketPair returns two ends of a real (buffered) unix stream socket.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	b, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return <-ch, b
}
