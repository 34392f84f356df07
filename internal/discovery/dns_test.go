package discovery

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var records = map[string]*Record{
	"master":             {ID: "aaaa", Namespace: "master", State: "running", Healthy: true, Depth: 1, Parent: "genesis", Capabilities: []string{"spawn", "read"}},
	"worker.master":      {ID: "bbbb", Namespace: "worker.master", State: "running", Healthy: true, Depth: 2, Parent: "aaaa", Capabilities: []string{"read"}},
	"gone.worker.master": {ID: "cccc", Namespace: "gone.worker.master", State: "revoked", Depth: 3, Parent: "bbbb"},
}

func startDNS(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	s := New(Config{Addr: addr, Target: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7070},
		Lookup: func(ns string) (*Record, bool) { r, ok := records[ns]; return r, ok }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	c := new(dns.Client)
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := new(dns.Msg)
		m.SetQuestion("master.calnet.", dns.TypeA)
		if _, _, err := c.Exchange(m, addr); err == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatal("dns server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDNS(t *testing.T) {
	addr := startDNS(t)
	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
		check func(t *testing.T, m *dns.Msg)
	}{
		{"A", "worker.master.calnet.", dns.TypeA, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
				t.Fatalf("answer %v", m.Answer)
			}
		}},
		{"case-insensitive", "WORKER.Master.CALNET.", dns.TypeA, dns.RcodeSuccess, nil},
		{"TXT", "worker.master.calnet.", dns.TypeTXT, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			txt := strings.Join(m.Answer[0].(*dns.TXT).Txt, " ")
			if !strings.Contains(txt, "id=bbbb") || !strings.Contains(txt, "capabilities=read") || !strings.Contains(txt, "healthy=true") {
				t.Fatalf("txt %q", txt)
			}
		}},
		{"SRV", "_calnet._tcp.master.calnet.", dns.TypeSRV, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			srv := m.Answer[0].(*dns.SRV)
			if srv.Port != 7070 || srv.Target != "master.calnet." || len(m.Extra) != 1 {
				t.Fatalf("srv %v extra %v", srv, m.Extra)
			}
		}},
		{"unknown", "nobody.calnet.", dns.TypeA, dns.RcodeNameError, nil},
		{"revoked", "gone.worker.master.calnet.", dns.TypeA, dns.RcodeNameError, nil},
		{"other zone", "example.com.", dns.TypeA, dns.RcodeRefused, nil},
		{"no such type", "master.calnet.", dns.TypeMX, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			if len(m.Answer) != 0 || len(m.Ns) != 1 {
				t.Fatalf("NODATA expected, got %v", m)
			}
		}},
	}
	c := new(dns.Client)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tt.qname, tt.qtype)
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
	// Two questions in one message: a format error, not a crash.
	m := new(dns.Msg)
	m.SetQuestion("master.calnet.", dns.TypeA)
	m.Question = append(m.Question, m.Question[0])
	r, _, err := c.Exchange(m, addr)
	if err != nil || r.Rcode != dns.RcodeFormatError {
		t.Fatalf("two questions: %v %v", r, err)
	}
}

// TestDig asks with a real client, Debian's dig.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (scripts/test.sh installs dnsutils)")
	}
	addr := startDNS(t)
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(dig, "@"+host, "-p", port, "+short", "worker.master.calnet", "TXT").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "id=bbbb") {
		t.Fatalf("dig TXT: %s %v", out, err)
	}
	out, _ = exec.Command(dig, "@"+host, "-p", port, "+short", "master.calnet", "A").CombinedOutput()
	if strings.TrimSpace(string(out)) != "127.0.0.1" {
		t.Fatalf("dig A: %q", out)
	}
	out, _ = exec.Command(dig, "@"+host, "-p", port, "nobody.calnet", "A").CombinedOutput()
	if !strings.Contains(string(out), "NXDOMAIN") {
		t.Fatalf("dig unknown: %s", out)
	}
}

func TestLabel(t *testing.T) {
	for in, ok := range map[string]bool{"worker": true, "Worker-2": true, "": false, "-x": false, "a_b": false, strings.Repeat("a", 64): false} {
		if _, err := Label(in); (err == nil) != ok {
			t.Errorf("Label(%q) = %v", in, err)
		}
	}
}

// nullWriter is a dns.ResponseWriter that drops the answer.
type nullWriter struct{ dns.ResponseWriter }

func (nullWriter) WriteMsg(*dns.Msg) error { return nil }
func (nullWriter) RemoteAddr() net.Addr    { return &net.UDPAddr{} }

func FuzzServeDNS(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("worker.master.calnet.", dns.TypeTXT)
	b, _ := m.Pack()
	f.Add(b)
	s := New(Config{Target: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Lookup: func(ns string) (*Record, bool) { r, ok := records[ns]; return r, ok }})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m dns.Msg
		if m.Unpack(data) != nil {
			return
		}
		s.ServeDNS(nullWriter{}, &m)
	})
}

// BenchmarkDNSQueries measures queries per second over UDP from 16
// concurrent clients.
func BenchmarkDNSQueries(b *testing.B) {
	addr := startDNS(b)
	var n atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	per := b.N/16 + 1
	for range 16 {
		wg.Go(func() {
			conn, err := net.Dial("udp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			m := new(dns.Msg)
			m.SetQuestion("worker.master.calnet.", dns.TypeA)
			q, _ := m.Pack()
			buf := make([]byte, 512)
			for range per {
				if _, err := conn.Write(q); err != nil {
					b.Error(err)
					return
				}
				conn.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := conn.Read(buf); err == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "queries/s")
}
