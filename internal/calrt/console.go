package calrt

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/soulfra/calnet/internal/authz"
	"github.com/soulfra/calnet/internal/calproto"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/trust"
)

// logRing keeps the Cal's recent log lines for its console.
type logRing struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func (r *logRing) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	if len(r.lines) > r.max {
		r.lines = r.lines[len(r.lines)-r.max:]
	}
}

func (r *logRing) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > len(r.lines) {
		n = len(r.lines)
	}
	return append([]string(nil), r.lines[len(r.lines)-n:]...)
}

// ringHandler tees log records into a logRing.
type ringHandler struct {
	slog.Handler
	ring *logRing
}

func (h ringHandler) Handle(ctx context.Context, r slog.Record) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s %s", r.Time.UTC().Format(time.RFC3339), r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&sb, " %s=%v", a.Key, a.Value)
		return true
	})
	h.ring.add(sb.String())
	return h.Handler.Handle(ctx, r)
}

func (h ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ringHandler{h.Handler.WithAttrs(as), h.ring}
}

func (h ringHandler) WithGroup(n string) slog.Handler {
	return ringHandler{h.Handler.WithGroup(n), h.ring}
}

// str prints a field of a record that may be absent as "".
func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// maxConsoleLine bounds one console command.
const maxConsoleLine = 4096

const consoleHelp = `commands:
  status                 who this Cal is and whether its platform is whole
  tiers                  every tier and its components
  logs [N]               the last N log lines (default 20)
  reflect TEXT           append a note to the reflection log
  reflections [N]        the last N reflections (default 10)
  spawn [PERM,...]       spawn a child blessed by this Cal (default: read)
  children               this Cal's children
  help                   this text
  exit                   end the session
`

// serveConsole runs the console (the Cal's CLI server) on a connection:
// a line per command, usable by a person at a terminal and by scripts.
func (rt *Runtime) serveConsole(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	w := bufio.NewWriter(conn)
	// Output goes through w; its Flush reports the client gone, which
	// ends the session (the buffered writer keeps the first error).
	prompt := func() error {
		fmt.Fprintf(w, "cal %s> ", rt.ID().Short())
		return w.Flush()
	}
	fmt.Fprintf(w, "calnet console of cal %s (type help)\n", rt.ID())
	if prompt() != nil {
		return
	}
	sc := bufio.NewScanner(idleReader{conn})
	sc.Buffer(make([]byte, maxConsoleLine), maxConsoleLine)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		cmd, arg, _ := strings.Cut(line, " ")
		arg = strings.TrimSpace(arg)
		if cmd == "quit" {
			cmd = "exit"
		}
		// Every command is in the authorization table: one the table does
		// not name is unknown, one the Cal's blessing does not allow is
		// refused before it runs.
		if rule, ok := authz.Lookup(authz.Console, cmd); !ok && cmd != "" {
			fmt.Fprintf(w, "error: unknown command %q (type help)\n", cmd)
			if prompt() != nil {
				return
			}
			continue
		} else if d := authz.Decide(rule, rt.workload()); ok && !d.Allowed() {
			fmt.Fprintf(w, "error: cal %s does not hold %s (its blessing grants %s)\n", rt.ID(), rule.Perm, rt.chain.Leaf().Permissions())
			if prompt() != nil {
				return
			}
			continue
		}
		switch cmd {
		case "":
		case "exit":
			fmt.Fprintln(w, "bye")
			_ = w.Flush() // the session ends either way
			return
		case "help":
			fmt.Fprint(w, consoleHelp)
		case "status":
			s := rt.self()
			_, degraded := rt.tiers.snapshot()
			fmt.Fprintf(w, "cal %s depth %d parent %s permissions %s\n", s.ID, s.Depth, s.Parent, strings.Join(s.Permissions, ","))
			if degraded != "" {
				fmt.Fprintf(w, "DEGRADED: %s\n", degraded)
			} else {
				fmt.Fprintln(w, "platform: every tier ready")
			}
		case "tiers":
			tiers, _ := rt.tiers.snapshot()
			for _, t := range tiers {
				for _, c := range t.Components {
					fmt.Fprintf(w, "%4d  %-10s %-8s %-8s %s%s\n", t.Tier, c.Name, c.Kind, c.State, c.Note, c.Error)
				}
			}
		case "logs":
			n := atoiOr(arg, 20)
			for _, l := range rt.logs.last(n) {
				fmt.Fprintln(w, l)
			}
		case "reflect":
			if arg == "" {
				fmt.Fprintln(w, "error: reflect needs a text")
				break
			}
			if rt.vaultErr != nil {
				fmt.Fprintf(w, "error: vault: %v\n", rt.vaultErr)
				break
			}
			if e, err := rt.vault.Append("note", arg, nil); err != nil {
				fmt.Fprintf(w, "error: %v\n", err)
			} else {
				fmt.Fprintf(w, "reflection %d written\n", e.Seq)
			}
		case "reflections":
			if rt.vaultErr != nil {
				fmt.Fprintf(w, "error: vault: %v\n", rt.vaultErr)
				break
			}
			es, err := rt.vault.Read(0)
			if err != nil {
				fmt.Fprintf(w, "error: %v\n", err)
				break
			}
			n := atoiOr(arg, 10)
			if len(es) > n {
				es = es[len(es)-n:]
			}
			for _, e := range es {
				fmt.Fprintf(w, "%5d %s %-13s %s\n", e.Seq, e.Time.Format(time.RFC3339), e.Kind, e.Text)
			}
		case "spawn":
			perms := []string{"read"}
			if arg != "" {
				perms = strings.Split(arg, ",")
			}
			if _, err := trust.ParsePermissions(perms); err != nil {
				fmt.Fprintf(w, "error: %v\n", err)
				break
			}
			fmt.Fprintln(w, "spawning...")
			if w.Flush() != nil {
				return // the client has gone: nobody asks for the spawn any more
			}
			var out json.RawMessage
			if err := rt.call(ctx, "POST", calproto.PathSpawnRequest, calproto.SpawnRequest{Permissions: perms}, &out); err != nil {
				fmt.Fprintf(w, "error: %v\n", err)
				break
			}
			var sp map[string]any // a spawn record
			if err := strictjson.Unmarshal(out, maxAnswer, &sp); err != nil {
				fmt.Fprintf(w, "error: %v\n", err)
				break
			}
			fmt.Fprintf(w, "spawn %s: cal %s %s\n", str(sp["state"]), str(sp["cal"]), str(sp["reason"]))
		case "children":
			var out []map[string]any // Cal records
			if err := rt.call(ctx, "GET", calproto.PathChildren, nil, &out); err != nil {
				fmt.Fprintf(w, "error: %v\n", err)
				break
			}
			for _, c := range out {
				fmt.Fprintf(w, "%s %-9s %s\n", str(c["id"]), str(c["state"]), str(c["name"]))
			}
			if len(out) == 0 {
				fmt.Fprintln(w, "no children")
			}
		default:
			fmt.Fprintf(w, "error: unknown command %q (type help)\n", cmd)
		}
		if prompt() != nil {
			return
		}
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		fmt.Fprintf(w, "\nerror: %v\n", err)
		_ = w.Flush() // the session ends either way
	}
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n <= 1000 {
		return n
	}
	return def
}

// listenConsole serves the console on the console socket the control
// plane bound for the Cal (only root reaches it).
func (rt *Runtime) listenConsole(tier int) error {
	ln, err := rt.listen(calproto.ConsoleSocket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sessions := make(chan struct{}, maxConsoleSessions)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case sessions <- struct{}{}:
			default:
				c.SetWriteDeadline(time.Now().Add(time.Second))
				fmt.Fprintf(c, "console: %d sessions are open, the limit; try again later\n", maxConsoleSessions)
				c.Close()
				continue
			}
			go func() {
				defer func() { <-sessions }()
				rt.serveConsole(ctx, c)
			}()
		}
	}()
	stop := func() { cancel(); ln.Close() }
	rt.tiers.onStop(tier, stop)
	rt.closers = append(rt.closers, stop)
	return nil
}

// idleReader ends a console session whose client sends nothing for
// consoleIdle: every read gets a fresh deadline.
type idleReader struct{ c net.Conn }

func (r idleReader) Read(p []byte) (int, error) {
	r.c.SetReadDeadline(time.Now().Add(consoleIdle))
	return r.c.Read(p)
}
