// Command spiffe-mtls is an unmodified go-spiffe program, an example
// workload for a Cal: it fetches its X.509-SVID and the network's bundle
// from the SPIFFE Workload API its Cal serves (SPIFFE_ENDPOINT_SOCKET),
// and talks mutual TLS to another Cal's workload, each side authorizing
// the other by SPIFFE ID, with the SVIDs renewed underneath.
//
// As a server (ROLE=server) it listens on LISTEN and answers the clients
// whose SPIFFE IDs are listed, one a line, in ALLOW_FILE (read at every
// handshake). As a client (ROLE=client) it calls TARGET (https://...)
// every INTERVAL (default 50ms) on a fresh connection, accepting only the
// server SERVER_ID, and keeps counts of its requests in STATS_FILE.
//
//	CGO_ENABLED=0 go build -o calnet-data/programs/spiffe-mtls ./examples/spiffe-mtls
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The Workload API's address comes from SPIFFE_ENDPOINT_SOCKET.
	src, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		log.Fatalf("workload api: %v", err)
	}
	defer func() { _ = src.Close() }()
	svid, err := src.GetX509SVID()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("my SPIFFE ID is %s", svid.ID)
	switch os.Getenv("ROLE") {
	case "server":
		err = serve(ctx, src)
	case "client":
		err = call(ctx, src)
	default:
		err = errors.New("ROLE must be server or client")
	}
	if err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// allowed authorizes the client IDs listed in ALLOW_FILE.
func allowed(file string) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("allow list: %w", err)
		}
		for _, line := range strings.Fields(string(b)) {
			if line == id.String() {
				return nil
			}
		}
		return fmt.Errorf("%s is not allowed", id)
	}
}

func serve(ctx context.Context, src *workloadapi.X509Source) error {
	cfg := tlsconfig.MTLSServerConfig(src, src, allowed(os.Getenv("ALLOW_FILE")))
	srv := &http.Server{Addr: os.Getenv("LISTEN"), TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			me, _ := src.GetX509SVID()
			fmt.Fprintf(w, "%s serial %s answers %s\n", me.ID, me.Certificates[0].SerialNumber, r.TLS.PeerCertificates[0].URIs[0])
		})}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// stats is what the client keeps in STATS_FILE.
type stats struct {
	OK          int      `json:"ok"`
	Failed      int      `json:"failed"`
	LastError   string   `json:"last_error,omitempty"`
	MySerials   []string `json:"my_serials"`   // of the client's SVIDs, in the order used
	PeerSerials []string `json:"peer_serials"` // of the server's SVIDs seen
	LastAnswer  string   `json:"last_answer"`  // the server's last answer
	SVIDPEM     string   `json:"svid_pem"`     // the client's current chain
}

func call(ctx context.Context, src *workloadapi.X509Source) error {
	server, err := spiffeid.FromString(os.Getenv("SERVER_ID"))
	if err != nil {
		return fmt.Errorf("SERVER_ID: %w", err)
	}
	interval, err := time.ParseDuration(envOr("INTERVAL", "50ms"))
	if err != nil {
		return err
	}
	var st stats
	var peerSerial string
	cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(server))
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		peerSerial = cs.PeerCertificates[0].SerialNumber.String()
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		// A fresh connection each time: every request is a handshake
		// with the SVIDs of the moment.
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
		resp, err := hc.Get(os.Getenv("TARGET"))
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %s", resp.Status)
			}
			st.LastAnswer = string(b)
		}
		if err != nil {
			st.Failed++
			st.LastError = err.Error()
		} else {
			st.OK++
		}
		if me, err := src.GetX509SVID(); err == nil {
			st.MySerials = appendNew(st.MySerials, me.Certificates[0].SerialNumber.String())
			var pemOut strings.Builder
			for _, c := range me.Certificates {
				_ = pem.Encode(&pemOut, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // a strings.Builder does not fail
			}
			st.SVIDPEM = pemOut.String()
		}
		if peerSerial != "" {
			st.PeerSerials = appendNew(st.PeerSerials, peerSerial)
		}
		if f := os.Getenv("STATS_FILE"); f != "" {
			b, _ := json.Marshal(st)
			if err := os.WriteFile(f+".tmp", b, 0o644); err == nil {
				if err := os.Rename(f+".tmp", f); err != nil {
					log.Printf("stats: %v", err)
				}
			}
		}
	}
}

func appendNew(list []string, s string) []string {
	if len(list) > 0 && list[len(list)-1] == s {
		return list
	}
	return append(list, s)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
