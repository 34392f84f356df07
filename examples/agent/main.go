// Command agent is an example workload for a Cal's tier -3. It watches a
// work queue (the number in $QUEUE_FILE, default /data/work/queue), writes
// what it sees and decides to its Cal's reflection log, and spawns a helper
// child for every HELPER_CAPACITY (default 10) queued items, through the
// Cal's local API: each helper is blessed by this Cal.
//
// Build it into the network's programs directory and name it in a
// template (see examples/agent/template.yaml):
//
//	CGO_ENABLED=0 go build -o calnet-data/programs/agent ./examples/agent
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/soulfra/calnet/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cal := client.NewLocal(os.Getenv("CALNET_LOCAL_API"))
	queueFile := envOr("QUEUE_FILE", "/data/work/queue")
	capacity, _ := strconv.Atoi(envOr("HELPER_CAPACITY", "10"))
	if capacity < 1 {
		capacity = 10
	}
	last := -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		depth := readDepth(queueFile)
		// The queue depth is a gauge in the Cal's metric series.
		if err := cal.Report(ctx, map[string]float64{"queue": float64(depth)}); err != nil {
			log.Printf("report: %v", err)
		}
		if depth == last {
			continue
		}
		last = depth
		// The local API comes up with tier -2, just above this one.
		if _, err := cal.Reflect(ctx, "observation", fmt.Sprintf("queue depth is %d", depth), map[string]int{"queue": depth}); err != nil {
			log.Printf("reflect: %v", err)
			last = -1
			continue
		}
		helpers, err := cal.Children(ctx)
		if err != nil {
			log.Printf("children: %v", err)
			continue
		}
		want := (depth + capacity - 1) / capacity
		if len(helpers) >= want {
			continue
		}
		reflect(ctx, cal, "decision", fmt.Sprintf("spawning %d helper(s): %d queued, %d helpers, capacity %d each", want-len(helpers), depth, len(helpers), capacity), nil)
		for i := len(helpers); i < want; i++ {
			sp, err := cal.Spawn(ctx, client.LocalSpawn{Name: "", Permissions: []string{"read"}, CPUMillis: 100, MemoryBytes: 32 << 20,
				IdempotencyKey: fmt.Sprintf("helper-%d", i)})
			outcome := "spawned helper " + sp.Cal
			if err != nil {
				outcome = "spawn failed: " + err.Error()
			}
			reflect(ctx, cal, "spawn-outcome", outcome, map[string]any{"state": sp.State, "reason": sp.Reason})
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func readDepth(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return max(n, 0)
}

// reflect records a reflection, logging (not stopping on) a failure.
func reflect(ctx context.Context, cal *client.Local, kind, text string, data any) {
	if _, err := cal.Reflect(ctx, kind, text, data); err != nil {
		log.Printf("reflect %s: %v", kind, err)
	}
}
