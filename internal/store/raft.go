package store

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// Raft is the replicated Store: one server of a cluster that keeps the
// same state on every server with the Raft consensus protocol
// (hashicorp/raft, its log and stable store on bbolt via raft-boltdb).
//
// On the leader, Update runs one fn at a time: fn reads the local
// committed state with the writes still being committed and its own laid
// over it, its writes become one command in the Raft log, and Update
// returns once that command is committed (on a quorum's disks) and applied
// here. The commits of concurrent Updates overlap (Raft batches them). Every server applies
// the committed commands, in order, to its own bbolt file; View reads that
// file, so a follower's reads may lag the leader (Status says by how
// much). Update on a follower returns a *NotLeaderError naming the leader,
// for the caller to forward the request.
type Raft struct {
	cfg   RaftConfig
	log   *slog.Logger
	r     *raft.Raft
	fsm   *fsm
	logs  *raftboltdb.BoltStore
	trans *raft.NetworkTransport

	// writeSem serialises making batches (a channel, so waiting honours
	// ctx); their commits overlap.
	writeSem chan struct{}
	// pipe holds the batches handed to Raft, in log order, from the
	// oldest not yet answered.
	pipeMu sync.Mutex
	pipe   []*overlayTx
	// readyTerm is the term in which this server, as leader, saw a
	// barrier pass: from then on its file holds every committed write.
	// Guarded by writeSem.
	readyTerm uint64

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

var _ Store = (*Raft)(nil)

// RaftConfig configures one server of a replicated store.
type RaftConfig struct {
	// Dir holds the Raft log (raft.db), the snapshots (snapshots/) and
	// the replicated state (state.db). Created 0700 if missing.
	Dir string
	// ID names this server in the cluster; it must stay the same across
	// restarts.
	ID string
	// Listener receives the other servers' Raft connections. The store
	// wraps it in TLS with ServerTLS and closes it on Close.
	Listener net.Listener
	// Advertise is the host:port the other servers dial to reach this
	// one; empty means the listener's address.
	Advertise string
	// ServerTLS and ClientTLS authenticate both ends of every connection
	// between servers. Both are required: servers talk only over mutual
	// TLS.
	ServerTLS, ClientTLS *tls.Config
	// Meta is what this server publishes about itself in the replicated
	// state while it leads (calnet: its API address), returned to callers
	// of a follower's Update in NotLeaderError.LeaderMeta.
	Meta []byte
	// Logger receives the store's and the Raft library's logs.
	Logger *slog.Logger
	// Ledger, if set, is replicated with the state: Update's transaction
	// is a LedgerTx, and every server appends the same entries to its
	// own Ledger, in the same order, as it applies the batches. Nothing
	// else may append to it.
	Ledger Ledger

	// Raft timing; zero values take hashicorp/raft's defaults (heartbeat
	// and election 1 s, leader lease 500 ms).
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// Snapshots: after SnapshotThreshold new entries, checked every
	// SnapshotInterval, keeping TrailingLogs entries behind the snapshot.
	SnapshotThreshold, TrailingLogs uint64
	SnapshotInterval                time.Duration
	// ApplyTimeout bounds the wait to enqueue a command (default 10 s).
	ApplyTimeout time.Duration
}

// RaftServer is one member of the cluster.
type RaftServer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// ErrNotLeader is what a *NotLeaderError is (errors.Is).
var ErrNotLeader = errors.New("store: this server is not the leader")

// NotLeaderError refuses a write on a server that cannot commit it: a
// follower (forward the write to LeaderID), or a server that knows no
// leader or lost its leadership (a minority: retry later or elsewhere).
type NotLeaderError struct {
	// LeaderID and LeaderAddr name the leader this server knows, empty
	// if none.
	LeaderID, LeaderAddr string
	// LeaderMeta is what the leader published about itself (RaftConfig.Meta),
	// nil if it is not in this server's state yet.
	LeaderMeta []byte
	// Reason says why this server refused.
	Reason string
	// Unknown is set when the write reached the log but leadership was
	// lost before it committed: a later leader may still commit it.
	Unknown bool
}

func (e *NotLeaderError) Error() string {
	s := "store: not the leader: " + e.Reason
	if e.LeaderID != "" {
		s += fmt.Sprintf(" (the leader is %s at %s)", e.LeaderID, e.LeaderAddr)
	} else {
		s += " (no leader known: this server cannot reach a quorum of the servers)"
	}
	return s
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// ErrClosed is returned after Close.
var ErrClosed = errors.New("store: closed")

// serversBucket holds each server's published Meta, by server ID.
const serversBucket = reservedPrefix + "servers"

// OpenRaft opens (or creates) a server's replicated store and starts its
// Raft protocol. A new store is not part of any cluster until Bootstrap
// (on the first servers) or until a leader adds it (AddVoter).
func OpenRaft(cfg RaftConfig) (*Raft, error) {
	if cfg.ID == "" {
		return nil, errors.New("store: raft: a server ID is required")
	}
	if cfg.Listener == nil {
		return nil, errors.New("store: raft: a listener is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.Listener.Addr().String()
	}
	log := cfg.Logger.With("raft_id", cfg.ID)
	stream, err := newTLSStream(cfg.Listener, cfg.Advertise, cfg.ServerTLS, cfg.ClientTLS)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: raft: %w", err)
	}
	s := &Raft{cfg: cfg, log: log, writeSem: make(chan struct{}, 1), stop: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			_ = s.closeParts() // the open's error is the one to report
		}
	}()
	if s.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")}); err != nil {
		return nil, fmt.Errorf("store: raft log %s: %w", filepath.Join(cfg.Dir, "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, newRaftLogger(log, "raft-snap"))
	if err != nil {
		return nil, fmt.Errorf("store: raft snapshots: %w", err)
	}
	if s.fsm, err = openFSM(filepath.Join(cfg.Dir, "state.db"), cfg.Ledger, log); err != nil {
		return nil, err
	}
	// The state file survives restarts; only when it is older than the
	// newest snapshot (lost, or copied back) is the snapshot restored into
	// it. Raft itself does not restore on start (NoSnapshotRestoreOnStart)
	// and replays the log after the snapshot; entries the file holds are
	// skipped.
	if err := s.catchUpFromSnapshot(snaps); err != nil {
		return nil, err
	}
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: newRaftLogger(log, "raft-net"),
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = newRaftLogger(log, "raft")
	rc.NoSnapshotRestoreOnStart = true
	rc.BatchApplyCh = true
	setDur(&rc.HeartbeatTimeout, cfg.HeartbeatTimeout)
	setDur(&rc.ElectionTimeout, cfg.ElectionTimeout)
	setDur(&rc.LeaderLeaseTimeout, cfg.LeaderLeaseTimeout)
	setDur(&rc.SnapshotInterval, cfg.SnapshotInterval)
	if cfg.SnapshotThreshold != 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs != 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if s.r, err = raft.NewRaft(rc, s.fsm, s.logs, s.logs, snaps, s.trans); err != nil {
		return nil, fmt.Errorf("store: raft: %w", err)
	}
	s.wg.Add(1)
	go s.publishLoop()
	ok = true
	return s, nil
}

func setDur(dst *time.Duration, v time.Duration) {
	if v != 0 {
		*dst = v
	}
}

func (s *Raft) catchUpFromSnapshot(snaps raft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	applied, err := s.fsm.applied()
	if err != nil {
		return err
	}
	if list[0].Index <= applied {
		return nil
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("store: raft snapshot %s: %w", list[0].ID, err)
	}
	s.log.Info("replicated state older than the newest snapshot; restoring it", "applied", applied, "snapshot", list[0].Index)
	return s.fsm.Restore(rc)
}

// Bootstrap forms a new cluster of servers (this one among them). It does
// nothing on a server that already has Raft state: a cluster is formed
// once, by the first servers, each passing the same list.
func (s *Raft) Bootstrap(servers []RaftServer) error {
	var c raft.Configuration
	for _, sv := range servers {
		suf := raft.Voter
		if !sv.Voter {
			suf = raft.Nonvoter
		}
		c.Servers = append(c.Servers, raft.Server{Suffrage: suf, ID: raft.ServerID(sv.ID), Address: raft.ServerAddress(sv.Address)})
	}
	err := s.r.BootstrapCluster(c).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: bootstrap: %w", err)
	}
	return nil
}

// AddVoter adds a server to the cluster (on the leader; elsewhere a
// *NotLeaderError). Adding a server already present with the same address
// does nothing.
func (s *Raft) AddVoter(ctx context.Context, id, addr string) error {
	return s.wait(ctx, s.r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, s.cfg.ApplyTimeout))
}

// RemoveServer removes a server from the cluster (on the leader).
func (s *Raft) RemoveServer(ctx context.Context, id string) error {
	return s.wait(ctx, s.r.RemoveServer(raft.ServerID(id), 0, s.cfg.ApplyTimeout))
}

// Servers returns the cluster's latest configuration.
func (s *Raft) Servers() ([]RaftServer, error) {
	f := s.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.raftErr(err)
	}
	var out []RaftServer
	for _, sv := range f.Configuration().Servers {
		out = append(out, RaftServer{ID: string(sv.ID), Address: string(sv.Address), Voter: sv.Suffrage == raft.Voter})
	}
	return out, nil
}

// Snapshot makes Raft snapshot the state now (and compact its log).
func (s *Raft) Snapshot() error { return s.raftErr(s.r.Snapshot().Error()) }

// RaftStatus is what a server knows of the cluster: how fresh its reads are.
type RaftStatus struct {
	ID    string `json:"id"`
	State string `json:"state"` // Leader, Follower, Candidate, Shutdown
	// LeaderID and LeaderAddr are empty when no leader is known.
	LeaderID   string `json:"leader_id,omitempty"`
	LeaderAddr string `json:"leader_addr,omitempty"`
	Term       uint64 `json:"term"`
	// AppliedIndex is the last log entry in this server's state: what its
	// reads reflect.
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	// LastContact is when this follower last heard from a leader (zero on
	// the leader itself, and before any contact).
	LastContact time.Time `json:"last_contact,omitzero"`
}

// Status returns this server's view of the cluster.
func (s *Raft) Status() RaftStatus {
	addr, id := s.r.LeaderWithID()
	st := RaftStatus{ID: s.cfg.ID, State: s.r.State().String(), LeaderID: string(id), LeaderAddr: string(addr),
		Term: s.r.CurrentTerm(), AppliedIndex: s.r.AppliedIndex(), CommitIndex: s.r.CommitIndex()}
	if s.r.State() != raft.Leader {
		st.LastContact = s.r.LastContact()
	}
	return st
}

// View implements Store: it reads this server's state, which on a
// follower may lag the leader.
func (s *Raft) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.fsm.view(func(t *bolt.Tx) error { return fn(boltTx{t}) })
}

// Update implements Store (see Raft).
func (s *Raft) Update(ctx context.Context, fn func(Tx) error) error {
	return s.update(ctx, false, fn)
}

func (s *Raft) update(ctx context.Context, internal bool, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.r.State() != raft.Leader {
		return s.notLeader("this server is a " + s.r.State().String())
	}
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return ErrClosed
	}
	f, layer, err := s.submit(internal, fn)
	<-s.writeSem
	if err != nil || f == nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		err := f.Error()
		if err == nil {
			if rerr, ok := f.Response().(error); ok {
				err = rerr
			}
		}
		// Layers leave the pipe oldest first: a layer answered before an
		// older one stays until that one is answered, so an older layer
		// never lies over a file that holds newer writes without the
		// newer layers lying over it in turn.
		s.pipeMu.Lock()
		layer.done = true
		for len(s.pipe) > 0 && s.pipe[0].done {
			s.pipe[0] = nil
			s.pipe = s.pipe[1:]
		}
		s.pipeMu.Unlock()
		done <- err
	}()
	select {
	case err := <-done:
		return s.raftErr(err)
	case <-ctx.Done():
		return fmt.Errorf("store: %w while the write was being committed; it may still be", ctx.Err())
	case <-s.stop:
		// Raft does not answer a batch that was committed but not yet
		// applied when it shut down: do not wait for it.
		return fmt.Errorf("%w while the write was being committed; it may still be", ErrClosed)
	}
}

// submit runs fn and hands its batch to Raft; called with writeSem held.
//
// Writers are pipelined: fn reads the local state with the batches still
// in flight in this term laid over it, in log order, so the next writer
// does not wait for the disks. A batch carries its term and is applied
// only if its log entry is of that term: within one term a leader's log
// holds its batches in the order they were made, without gaps, so every
// batch that commits read every batch before it.
func (s *Raft) submit(internal bool, fn func(Tx) error) (raft.ApplyFuture, *overlayTx, error) {
	if err := s.barrier(); err != nil {
		return nil, nil, err
	}
	term := s.readyTerm
	s.pipeMu.Lock()
	var layers []*overlayTx
	for _, l := range s.pipe {
		if l.b.term == term {
			layers = append(layers, l)
		}
	}
	s.pipeMu.Unlock()
	// The layers are taken before the file is read: a batch applied in
	// between is in both, the same writes twice, rather than in neither.
	var ox *overlayTx
	err := s.fsm.view(func(t *bolt.Tx) error {
		var base Tx = boltTx{t}
		for _, l := range layers {
			base = &overlayTx{base: base, pending: l.pending}
		}
		ox = newOverlayTx(base)
		ox.internal = internal
		ox.ledger = s.cfg.Ledger
		ox.ledgerBase = ledgerEnd(layers, s.cfg.Ledger)
		ox.b.term = term
		return fn(ox)
	})
	if err != nil || len(ox.b.ops) == 0 && len(ox.b.leaves) == 0 {
		return nil, nil, err
	}
	cmd, err := ox.b.encode()
	if err != nil {
		return nil, nil, err
	}
	ox.base = nil // the file's transaction is over
	s.pipeMu.Lock()
	s.pipe = append(s.pipe, ox)
	s.pipeMu.Unlock()
	// No enqueue timeout: a batch given up before it reached the log
	// would be a gap under the batches after it.
	return s.r.Apply(cmd, 0), ox, nil
}

// ledgerEnd is the ledger's size once the in-flight layers are applied.
func ledgerEnd(layers []*overlayTx, lg Ledger) uint64 {
	for i := len(layers) - 1; i >= 0; i-- {
		if b := layers[i].b; len(b.leaves) > 0 {
			return b.leafStart + uint64(len(b.leaves))
		}
	}
	if lg == nil {
		return 0
	}
	return lg.Size()
}

// barrier makes sure, once per term, that every entry committed before
// this server became leader is applied to its file (so that fn reads
// them). Called with writeSem held.
func (s *Raft) barrier() error {
	term := s.r.CurrentTerm()
	if s.readyTerm == term {
		return nil
	}
	if err := s.r.Barrier(s.cfg.ApplyTimeout).Error(); err != nil {
		return s.raftErr(err)
	}
	s.readyTerm = term
	return nil
}

// wait waits for a Raft future, or ctx.
func (s *Raft) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return s.raftErr(err)
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return ErrClosed
	}
}

// raftErr turns the Raft library's errors into the store's.
func (s *Raft) raftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, errStaleBatch):
		return s.notLeader("leadership moved before the write reached the log; it was not made")
	case errors.Is(err, raft.ErrLeadershipLost):
		e := s.notLeader("leadership was lost while the write was being committed (a quorum was not reached in time); a later leader may still commit it")
		e.Unknown = true
		return e
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("store: the Raft log did not take the write within %s: %w", s.cfg.ApplyTimeout, err)
	}
	return err
}

func (s *Raft) notLeader(reason string) *NotLeaderError {
	addr, id := s.r.LeaderWithID()
	e := &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr), Reason: reason}
	if id != "" {
		_ = s.fsm.view(func(t *bolt.Tx) error {
			if b := t.Bucket([]byte(serversBucket)); b != nil {
				if v := b.Get([]byte(id)); v != nil {
					e.LeaderMeta = bytes.Clone(v)
				}
			}
			return nil
		})
	}
	return e
}

// publishLoop writes this server's Meta into the replicated state each
// time it becomes leader, so followers can tell callers where it is.
func (s *Raft) publishLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case leader := <-s.r.LeaderCh():
			if !leader {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ApplyTimeout)
			err := s.update(ctx, true, func(tx Tx) error {
				if cur, err := tx.Get(serversBucket, s.cfg.ID); err == nil && bytes.Equal(cur, s.cfg.Meta) {
					return nil
				}
				return tx.Put(serversBucket, s.cfg.ID, s.cfg.Meta)
			})
			cancel()
			if err != nil {
				s.log.Warn("publishing this leader's address", "err", err)
			}
		}
	}
}

// Close implements Store: it leaves the cluster's protocol (not its
// membership) and closes the files.
func (s *Raft) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		err = s.r.Shutdown().Error()
		s.wg.Wait()
		err = errors.Join(err, s.closeParts())
	})
	return err
}

func (s *Raft) closeParts() error {
	var errs []error
	if s.trans != nil {
		errs = append(errs, s.trans.Close())
	} else if s.cfg.Listener != nil {
		_ = s.cfg.Listener.Close()
	}
	if s.logs != nil {
		errs = append(errs, s.logs.Close())
	}
	if s.fsm != nil {
		errs = append(errs, s.fsm.close())
	}
	return errors.Join(errs...)
}
