package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/soulfra/calnet/client"
)

// floodLimit is the RLIMIT_NOFILE the control plane runs under in the
// flood test: small, so that a few thousand connections would exhaust it.
const floodLimit = 4096

// holdIdle opens n connections to addr and leaves them idle: one in eight
// sends nothing, one in eight half a request's headers, the others finish
// one unauthenticated request and stay kept alive (which no timeout
// closed). It stops early (and says how far it got) when connecting
// fails.
func holdIdle(t *testing.T, addr, path string, n int) int {
	t.Helper()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Logf("connection %d to %s: %v", i, addr, err)
			return i
		}
		conns = append(conns, c)
		switch i % 8 {
		case 0:
		case 1:
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n", path) // and never the end of the headers
		default:
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Logf("connection %d to %s: no answer: the server stopped serving", i, addr)
					return i
				}
				continue // closed to make room, or refused: the server is serving
			}
			// A body cut short is a connection closed to make room, as
			// above: the server is serving.
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			c.SetReadDeadline(time.Time{})
		}
	}
	return n
}

// openFDs counts a process's open file descriptors.
func openFDs(pid int) int {
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents)
}

// TestAPIAnswersUnderConnectionFlood (security finding 5): thousands of
// idle, unauthenticated connections to the API and the router exhausted
// the control plane's file descriptors and the API stopped answering.
// Now every listener is bounded (in total, per client, and by one budget
// below RLIMIT_NOFILE less a reserve) and closes its oldest idle
// connections to admit new ones: the API keeps answering, and the
// process stays under its descriptor limit.
func TestAPIAnswersUnderConnectionFlood(t *testing.T) {
	needRoot(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is needed to start the control plane with a small descriptor limit")
	}
	n := &network{t: t, data: filepath.Join(t.TempDir(), "data"), addr: freeAddr(t), dns: freeAddr(t), router: freeAddr(t),
		wrap: []string{prlimit, fmt.Sprintf("--nofile=%d:%d", floodLimit, floodLimit), "--"}}
	n.start()
	t.Cleanup(func() { n.stop(syscall.SIGTERM) })
	pid := n.cmd.Process.Pid
	tok := readToken(t, n.data)

	const apiFlood, routerFlood = floodLimit + 1000, 2000
	gotAPI := holdIdle(t, n.addr, "/healthz", apiFlood)
	gotRouter := holdIdle(t, n.router, "/nowhere/", routerFlood)
	t.Logf("opened %d idle connections; the control plane has %d descriptors open (limit %d)", gotAPI+gotRouter, openFDs(pid), floodLimit)
	if gotAPI < apiFlood || gotRouter < routerFlood {
		t.Fatalf("the control plane stopped serving after %d API and %d router connections (%d descriptors open, limit %d)", gotAPI, gotRouter, openFDs(pid), floodLimit)
	}

	// Fresh clients, each on a new connection, still get answers.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for i := range 20 {
		c := client.New(n.addr, tok).WithHTTPClient(fresh)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err != nil || st.Cals["running"] < 1 {
			t.Fatalf("status %d under the flood: %v (control plane holds %d descriptors)", i, err, openFDs(pid))
		}
	}
	resp, err := fresh.Get("http://" + n.router + "/nowhere/")
	if err != nil {
		t.Fatalf("router under the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("router under the flood: %d, want 404", resp.StatusCode)
	}
	if fds := openFDs(pid); fds >= floodLimit-minFree {
		t.Fatalf("the control plane holds %d descriptors, within %d of its limit %d", fds, minFree, floodLimit)
	}
	// A spawn (a new Cal: processes, pipes, files) still works.
	c := client.New(n.addr, tok).WithHTTPClient(fresh)
	sp, err := c.Spawn(context.Background(), client.SpawnRequest{Permissions: []string{"read"}}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("spawn under the flood: %+v %v", sp, err)
	}
}

// minFree is the descriptors the flood must leave the control plane.
const minFree = 512

// TestEventStreamsPerPrincipal (security finding 5): one credential opened
// 3,000 event WebSockets. Now a credential holds at most 32 streams
// (events, console, followed logs); the next gets 429 with Retry-After,
// another credential is not affected, and closing one frees its place.
func TestEventStreamsPerPrincipal(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	tok := readToken(t, n.data)
	ctx := context.Background()
	dial := func(token string) (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(ctx, "ws://"+n.addr+"/v1/events", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	}
	const limit = 32
	var open []*websocket.Conn
	defer func() {
		for _, c := range open {
			c.CloseNow()
		}
	}()
	for i := range limit {
		c, _, err := dial(tok)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		open = append(open, c)
	}
	_, resp, err := dial(tok)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("stream %d: %v %+v, want 429 with Retry-After", limit+1, err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "32") {
		t.Fatalf("refusal %s does not name the limit", body)
	}
	// Followed logs count too.
	req, _ := http.NewRequest("GET", "http://"+n.addr+"/v1/cals/"+n.master()+"/logs?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("followed logs over the limit: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Another credential has its own streams.
	dev, _, err := n.c.CreateToken(ctx, "watcher", n.master(), []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := dial(dev)
	if err != nil {
		t.Fatalf("another credential's stream: %v", err)
	}
	open = append(open, c)
	// Closing one frees its place.
	open[0].Close(websocket.StatusNormalClosure, "")
	open = open[1:]
	waitFor(t, "a freed stream", 10*time.Second, func() bool {
		c, _, err := dial(tok)
		if err != nil {
			return false
		}
		open = append(open, c)
		return true
	})
}
