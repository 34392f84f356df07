package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/placement"
	"github.com/soulfra/calnet/internal/strictjson"
)

// What the control plane learns while it runs — each Cal's and the host's
// metric history, deploy outcomes per template and host, the traffic
// matrix and each Cal's health history — is kept in memory and saved to
// <data>/learned/ every SaveLearnedEvery and when it stops, so that a
// restart (or a crash, losing at most one interval) does not forget it:
// recommendations, back-offs, learned deploy timeouts, charts and the
// traffic matrix carry on.

// SaveLearnedEvery is how often the learned state is saved.
const SaveLearnedEvery = time.Minute

const (
	learnedMetricsFile = "metrics.bin"
	learnedStateFile   = "state.json"
	maxLearnedState    = 64 << 20
)

// learnedState is the JSON part of what the control plane learns.
type learnedState struct {
	Version  int                        `json:"version"`
	SavedAt  time.Time                  `json:"saved_at"`
	Outcomes placement.OutcomesSnapshot `json:"outcomes"`
	Traffic  []learnedPair              `json:"traffic"`
	Health   map[string][]Event         `json:"health"`
}

type learnedPair struct {
	From  string    `json:"from"`
	To    string    `json:"to"`
	Kind  string    `json:"kind"`
	Count int64     `json:"count"`
	Bytes int64     `json:"bytes"`
	Last  time.Time `json:"last"`
}

func (s *Server) learnedDir() string { return filepath.Join(s.cfg.DataDir, "learned") }

// saveLearned writes the learned state atomically (0600).
func (s *Server) saveLearned() error {
	dir := s.learnedDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	mb, err := s.metrics.MarshalBinary()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, learnedMetricsFile), mb, 0o600); err != nil {
		return fmt.Errorf("save metric history: %w", err)
	}
	st := learnedState{Version: 1, SavedAt: s.now(), Outcomes: s.outcomes.Snapshot(), Traffic: []learnedPair{}}
	s.trafficMu.Lock()
	for k, v := range s.traffic.pairs {
		st.Traffic = append(st.Traffic, learnedPair{From: k.from, To: k.to, Kind: k.kind, Count: v.count, Bytes: v.bytes, Last: v.last})
	}
	s.trafficMu.Unlock()
	s.health.mu.Lock()
	st.Health = make(map[string][]Event, len(s.health.m))
	for id, evs := range s.health.m {
		st.Health[id] = append([]Event(nil), evs...)
	}
	s.health.mu.Unlock()
	b, err := jsonMarshal(st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, learnedStateFile), b, 0o600); err != nil {
		return fmt.Errorf("save learned state: %w", err)
	}
	return nil
}

// loadLearned restores what an earlier run saved. Missing files are a
// first start; a damaged file is reported and that part starts empty (it
// is derived knowledge, never trust state).
func (s *Server) loadLearned() error {
	var errs []error
	dir := s.learnedDir()
	if b, err := readBounded(filepath.Join(dir, learnedMetricsFile), maxLearnedMetrics); err == nil {
		if err := s.metrics.UnmarshalBinary(b); err != nil {
			errs = append(errs, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	b, err := readBounded(filepath.Join(dir, learnedStateFile), maxLearnedState)
	if errors.Is(err, fs.ErrNotExist) {
		return errors.Join(errs...)
	}
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var st learnedState
	if err := strictjson.Unmarshal(b, maxLearnedState, &st); err != nil {
		return errors.Join(append(errs, fmt.Errorf("%s: %w", learnedStateFile, err))...)
	}
	if st.Version != 1 {
		return errors.Join(append(errs, fmt.Errorf("%s: version %d, want 1", learnedStateFile, st.Version))...)
	}
	s.outcomes.Restore(st.Outcomes)
	s.trafficMu.Lock()
	s.traffic.pairs = make(map[trafficKey]*trafficStat, len(st.Traffic))
	for _, p := range st.Traffic {
		if len(s.traffic.pairs) >= maxPairs {
			break
		}
		s.traffic.pairs[trafficKey{p.From, p.To, p.Kind}] = &trafficStat{count: p.Count, bytes: p.Bytes, last: p.Last}
	}
	s.trafficMu.Unlock()
	s.health.mu.Lock()
	s.health.m = make(map[string][]Event, len(st.Health))
	for id, evs := range st.Health {
		s.health.m[id] = evs[max(0, len(evs)-healthKeep):]
	}
	s.health.mu.Unlock()
	return errors.Join(errs...)
}

// maxLearnedMetrics bounds the metric history file.
const maxLearnedMetrics = 512 << 20

// readBounded reads a regular file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, over the limit of %d", path, st.Size(), limit)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// keepLearned saves the learned state every SaveLearnedEvery until ctx
// ends.
func (s *Server) keepLearned(ctx context.Context) {
	every(ctx, SaveLearnedEvery, func() {
		if err := s.saveLearned(); err != nil {
			s.log.Error("saving what the control plane learned", "err", err)
		}
	})
}

// every runs f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
