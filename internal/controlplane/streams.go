package controlplane

import (
	"net/http"
	"sync"
	"time"
)

// maxStreamsPerPrincipal bounds the long-lived streams one credential
// holds at once: event WebSockets, console WebSockets and followed logs.
// Each holds a connection (a file descriptor) and a goroutine for as long
// as the client keeps it; a dashboard needs one per tab.
const maxStreamsPerPrincipal = 32

// streamRetry is the Retry-After of a refused stream.
const streamRetry = 5 * time.Second

// streams counts the open streams of each principal.
type streams struct {
	mu   sync.Mutex
	open map[string]int
	max  int
}

// acquire takes one of who's streams; release gives it back. It fails,
// naming the limit, when who already holds max.
func (st *streams) acquire(who string) (release func(), aerr *APIError) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.open == nil {
		st.open = map[string]int{}
	}
	limit := st.max
	if limit == 0 {
		limit = maxStreamsPerPrincipal
	}
	if st.open[who] >= limit {
		e := apiErr(http.StatusTooManyRequests, "streams: %s already holds %d event, console and log streams, the limit; close one", who, limit)
		e.RetryAfter = streamRetry
		return nil, e
	}
	st.open[who]++
	var once sync.Once
	return func() {
		once.Do(func() {
			st.mu.Lock()
			defer st.mu.Unlock()
			if st.open[who]--; st.open[who] <= 0 {
				delete(st.open, who)
			}
		})
	}, nil
}
