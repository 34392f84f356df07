// Package discovery publishes the registry of Cals over DNS: A, SRV and TXT
// records for <namespace>.<domain>, where a Cal's namespace nests along its
// lineage (<child>.<parent>...<master>) and the TXT records carry its
// identity, state, health and capabilities. Consul users will find it
// familiar; any resolver (dig, the system stub) can query it.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Record is what DNS publishes about one Cal.
type Record struct {
	ID           string
	Namespace    string // e.g. "helper.worker.master"
	State        string
	Healthy      bool
	Depth        int
	Parent       string
	Capabilities []string // permissions, tiers, ...
}

// Lookup finds a Cal by namespace (lowercase, without the domain). It must
// be safe for concurrent use and fast: it runs on every query.
type Lookup func(namespace string) (*Record, bool)

// Config configures a Server.
type Config struct {
	// Domain is the zone served, e.g. "calnet." (default).
	Domain string
	// Addr is where to listen, UDP and TCP (default 127.0.0.1:8600).
	Addr string
	// Target is the address of the Infinity Router, which A and SRV
	// answers point to.
	Target *net.TCPAddr
	Lookup Lookup
	Logger *slog.Logger
	// TTL of answers (default 5s: the registry changes).
	TTL uint32
	// LimitTCP, when set, wraps the TCP listener (connection limits).
	LimitTCP func(net.Listener) net.Listener
}

// Server is a DNS server for the registry.
type Server struct {
	cfg Config
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.Domain == "" {
		cfg.Domain = "calnet."
	}
	cfg.Domain = dns.Fqdn(strings.ToLower(cfg.Domain))
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8600"
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg}
}

// Run serves UDP and TCP until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	pc, err := net.ListenPacket("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("dns: %w", err)
	}
	if s.cfg.LimitTCP != nil {
		ln = s.cfg.LimitTCP(ln)
	}
	udp := &dns.Server{PacketConn: pc, Handler: s}
	// A TCP client has tcpTimeout to send each query and to take each
	// answer, and a connection idle for tcpIdle closes.
	tcp := &dns.Server{Listener: ln, Handler: s, ReadTimeout: tcpTimeout, WriteTimeout: tcpTimeout,
		IdleTimeout: func() time.Duration { return tcpIdle }, MaxTCPQueries: maxTCPQueries}
	errc := make(chan error, 2)
	go func() { errc <- udp.ActivateAndServe() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	select {
	case <-ctx.Done():
		udp.Shutdown()
		tcp.Shutdown()
		return nil
	case err := <-errc:
		udp.Shutdown()
		tcp.Shutdown()
		return err
	}
}

// Limits of DNS over TCP.
const (
	tcpTimeout    = 5 * time.Second
	tcpIdle       = 8 * time.Second
	maxTCPQueries = 128 // per connection
)

// maxQuestions bounds the questions handled in one message.
const maxQuestions = 1

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.Compress = true
	if len(req.Question) != maxQuestions || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeNotImplemented
		w.WriteMsg(m)
		return
	}
	if !dns.IsSubDomain(s.cfg.Domain, name) {
		m.Rcode = dns.RcodeRefused // not our zone; we are not a recursor
		m.Authoritative = false
		w.WriteMsg(m)
		return
	}
	ns := strings.TrimSuffix(strings.TrimSuffix(name, s.cfg.Domain), ".")
	ns = strings.TrimPrefix(ns, "_calnet._tcp.") // SRV service form
	if ns == "" {
		m.Rcode = dns.RcodeSuccess // the zone apex: nothing but SOA here
		m.Ns = []dns.RR{s.soa()}
		w.WriteMsg(m)
		return
	}
	rec, ok := s.cfg.Lookup(ns)
	if !ok || rec.State == "revoked" {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa()}
		w.WriteMsg(m)
		return
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: s.cfg.TTL}
	}
	target := dns.Fqdn(rec.Namespace + "." + strings.TrimSuffix(s.cfg.Domain, "."))
	switch q.Qtype {
	case dns.TypeA, dns.TypeANY:
		if ip := s.cfg.Target.IP.To4(); ip != nil {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip})
		}
		if q.Qtype != dns.TypeANY {
			break
		}
		fallthrough
	case dns.TypeTXT:
		m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: txt(rec)})
		if q.Qtype != dns.TypeANY {
			break
		}
		fallthrough
	case dns.TypeSRV:
		m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: 1, Weight: 1, Port: uint16(s.cfg.Target.Port), Target: target})
		if ip := s.cfg.Target.IP.To4(); ip != nil && q.Qtype == dns.TypeSRV {
			m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: s.cfg.TTL}, A: ip})
		}
	case dns.TypeAAAA:
		if ip := s.cfg.Target.IP; ip.To4() == nil && ip.To16() != nil {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
		}
	default:
		// The name exists, with no record of that type.
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{s.soa()}
	}
	w.WriteMsg(m)
}

// txt renders a record's TXT strings, each under 255 bytes.
func txt(r *Record) []string {
	out := []string{
		"id=" + r.ID, "state=" + r.State, "healthy=" + strconv.FormatBool(r.Healthy),
		"depth=" + strconv.Itoa(r.Depth), "parent=" + r.Parent,
	}
	caps := "capabilities="
	for i, c := range r.Capabilities {
		if len(caps)+len(c)+1 > 250 {
			out = append(out, caps)
			caps = "capabilities="
		} else if i > 0 && caps != "capabilities=" {
			caps += ","
		}
		caps += c
	}
	return append(out, caps)
}

func (s *Server) soa() dns.RR {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: s.cfg.Domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.cfg.TTL},
		Ns:  "ns." + s.cfg.Domain, Mbox: "hostmaster." + s.cfg.Domain,
		Serial: uint32(time.Now().Unix()), Refresh: 60, Retry: 30, Expire: 600, Minttl: s.cfg.TTL,
	}
}

// ErrBadLabel reports a name that cannot be a DNS label.
var ErrBadLabel = errors.New("not a DNS label")

// Label turns a Cal's name (or ID prefix) into a DNS label: lowercase
// letters, digits and hyphens, 1..63 characters, not starting or ending
// with a hyphen.
func Label(s string) (string, error) {
	s = strings.ToLower(s)
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return "", fmt.Errorf("%w: %q", ErrBadLabel, s)
	}
	for _, r := range s {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return "", fmt.Errorf("%w: %q", ErrBadLabel, s)
		}
	}
	return s, nil
}
