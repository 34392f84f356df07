package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStream is Raft's stream layer over mutual TLS: every connection
// between servers, in both directions, is authenticated by the
// configurations the caller gives (each server proves its place in the
// network with its certificate chain; the key exchange is the caller's
// choice, X25519MLKEM768 in calnet).
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

func newTLSStream(ln net.Listener, advertise string, server, client *tls.Config) (*tlsStream, error) {
	if server == nil || client == nil {
		return nil, errors.New("store: raft: server and client TLS configurations are required (servers talk only over mutual TLS)")
	}
	if server.ClientAuth != tls.RequireAndVerifyClientCert && server.VerifyPeerCertificate == nil && server.VerifyConnection == nil {
		return nil, errors.New("store: raft: the server TLS configuration must authenticate the client (RequireAndVerifyClientCert or a verification callback)")
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("store: raft advertise address %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("store: raft advertise address %q: must be an address the other servers can dial, not unspecified", advertise)
	}
	return &tlsStream{Listener: tls.NewListener(ln, server), advertise: adv, client: client}, nil
}

// Addr implements net.Listener: the address the other servers dial.
func (s *tlsStream) Addr() net.Addr { return s.advertise }

// Dial implements raft.StreamLayer. The handshake happens here, so a peer
// that refuses this server's chain (or whose chain this server refuses)
// fails the dial with TLS's reason.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.client}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft connection to %s: %w", address, err)
	}
	return c, nil
}
