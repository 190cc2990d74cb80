package server

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Stream state transitions as AWS shows them. DeleteStream leaves a stream
// DELETING for Config.DeleteDelay, and SplitShard, MergeShards and
// UpdateShardCount leave it UPDATING, with its old shards, for
// Config.UpdateDelay before the new shards appear. The server accepts such
// a change, records it as the stream's pending change (persisted with the
// stream through an engine attribute, so a restart does not lose it) and
// applies it to the engine once it is due. "Due" is judged by
// Config.Clock: every API call first applies the changes that are due
// (settle), so a test that moves its clock sees the change at once, and a
// timer settles changes when no call comes.

// pendingAttr is the engine attribute that holds a stream's pending change.
const pendingAttr = "kinesis/pending"

// pendingChange is a change the server accepted and has not applied yet.
type pendingChange struct {
	Op    string `json:"op"` // "delete", "split", "merge" or "scale"
	DueMs int64  `json:"due_ms"`
	// split: Shard at HashKey; merge: Shard with Adjacent; scale: Target.
	Shard    engine.ShardID `json:"shard,omitempty"`
	Adjacent engine.ShardID `json:"adjacent,omitempty"`
	HashKey  string         `json:"hash_key,omitempty"`
	Target   int            `json:"target,omitempty"`
}

// status is the stream status a pending change shows.
func (p pendingChange) status() engine.StreamStatus {
	if p.Op == "delete" {
		return engine.StatusDeleting
	}
	return engine.StatusUpdating
}

// pendingChanges is the server's index of pending changes by stream name.
type pendingChanges struct {
	mu    sync.Mutex // held while changes are applied, so callers see them done
	m     map[string]pendingChange
	n     atomic.Int32 // len(m), read without mu on every call
	timer *time.Timer
	// stopped is set by Close: no timer is armed after it, so a call
	// racing Close leaves nothing behind.
	stopped bool
}

// now returns the server's current time (Config.Clock).
func (s *Server) now() time.Time { return s.cfg.Clock() }

// loadPending reads the pending changes persisted with the streams.
func (s *Server) loadPending() error {
	s.pending.m = make(map[string]pendingChange)
	names, err := s.db.ListStreams()
	if err != nil {
		return err
	}
	for _, n := range names {
		v, ok, err := s.db.Attr(n, pendingAttr)
		if err != nil || !ok {
			continue
		}
		var p pendingChange
		if json.Unmarshal(v, &p) != nil {
			s.cfg.Logger.Error("kvstream server: dropping an undecodable pending change", "stream", n)
			_ = s.db.SetAttr(n, pendingAttr, nil)
			continue
		}
		s.pending.m[n] = p
	}
	s.pending.n.Store(int32(len(s.pending.m)))
	s.armPendingTimer()
	return nil
}

// pendingOf returns the stream's pending change, if any.
func (s *Server) pendingOf(name string) (pendingChange, bool) {
	if s.pending.n.Load() == 0 {
		return pendingChange{}, false
	}
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	p, ok := s.pending.m[name]
	return p, ok
}

// statusOf is the status clients see: the engine's, unless a change is
// pending.
func (s *Server) statusOf(name string, st engine.StreamStatus) engine.StreamStatus {
	if p, ok := s.pendingOf(name); ok {
		return p.status()
	}
	return st
}

// schedule records p as name's pending change (durably) and arms the
// timer. The caller has checked that nothing is pending for name.
func (s *Server) schedule(name string, p pendingChange) *apiError {
	b, _ := json.Marshal(p)
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	if err := s.db.SetAttr(name, pendingAttr, b); err != nil {
		return s.engineError(err, name)
	}
	s.pending.m[name] = p
	s.pending.n.Store(int32(len(s.pending.m)))
	s.armPendingTimerLocked()
	return nil
}

// settle applies every pending change that is due.
func (s *Server) settle() {
	if s.pending.n.Load() == 0 {
		return
	}
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	now := s.now().UnixMilli()
	for name, p := range s.pending.m {
		if p.DueMs > now {
			continue
		}
		err := s.applyPending(name, p)
		if errors.Is(err, engine.ErrClosed) {
			return // the DB was closed under a Server that was not
		}
		if err != nil && !errors.Is(err, engine.ErrStreamNotFound) {
			s.cfg.Logger.Error("kvstream server: applying a pending stream change failed", "stream", name, "op", p.Op, "err", err)
		}
		delete(s.pending.m, name)
	}
	s.pending.n.Store(int32(len(s.pending.m)))
	s.armPendingTimerLocked()
}

// applyPending applies p to the engine and clears its record. A change
// whose record is gone (another Server over the same DB applied it) is
// not applied twice.
func (s *Server) applyPending(name string, p pendingChange) error {
	if _, ok, err := s.db.Attr(name, pendingAttr); err != nil || !ok {
		return err
	}
	var err error
	switch p.Op {
	case "delete":
		return s.deleteNow(name)
	case "split":
		err = s.db.SplitShard(name, p.Shard, p.HashKey)
	case "merge":
		err = s.db.MergeShards(name, p.Shard, p.Adjacent)
	case "scale":
		err = s.db.UpdateShardCount(name, p.Target)
	}
	if cerr := s.db.SetAttr(name, pendingAttr, nil); err == nil {
		err = cerr
	}
	return err
}

// deleteNow deletes the stream from the engine and ends what hangs on it.
func (s *Server) deleteNow(name string) error {
	if err := s.db.DeleteStream(context.Background(), name); err != nil {
		return err
	}
	s.enc.forget(name)
	s.recordLimits.forget(name)
	prefix := s.streamARN(name) + "/consumer/"
	s.subs.end(func(k subKey) bool { return strings.HasPrefix(k.consumer, prefix) }, s.streamNotFound(name))
	return nil
}

// armPendingTimer makes sure a timer settles the earliest pending change
// even when no call comes. The timer runs on the wall clock; settle itself
// judges by Config.Clock, so an injected clock stays in charge.
func (s *Server) armPendingTimer() {
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	s.armPendingTimerLocked()
}

func (s *Server) armPendingTimerLocked() {
	if s.pending.timer != nil {
		s.pending.timer.Stop()
		s.pending.timer = nil
	}
	if len(s.pending.m) == 0 || s.pending.stopped {
		return
	}
	first := int64(-1)
	for _, p := range s.pending.m {
		if first < 0 || p.DueMs < first {
			first = p.DueMs
		}
	}
	wait := time.Duration(first-s.now().UnixMilli())*time.Millisecond + time.Millisecond
	s.pending.timer = time.AfterFunc(max(wait, time.Millisecond), s.settle)
}

// stopPending stops the timer and arms no new one (Close).
func (s *Server) stopPending() {
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	s.pending.stopped = true
	if s.pending.timer != nil {
		s.pending.timer.Stop()
		s.pending.timer = nil
	}
}

// shardLimit is the account's open-shard quota (Config.ShardLimit).
func (s *Server) shardLimit() int { return s.cfg.ShardLimit }

// openShards counts the open shards of every stream, counting the shards
// pending changes will add.
func (s *Server) openShards() (int, *apiError) {
	names, err := s.db.ListStreams()
	if err != nil {
		return 0, s.engineError(err, "")
	}
	n := 0
	for _, name := range names {
		d, err := s.db.DescribeStream(name)
		if err != nil {
			continue
		}
		open := d.OpenShardCount
		if p, ok := s.pendingOf(name); ok {
			switch p.Op {
			case "split":
				open++
			case "merge":
				open--
			case "scale":
				open = p.Target
			}
		}
		n += open
	}
	return n, nil
}

// checkShardLimit answers AWS's LimitExceededException when adding more
// open shards would exceed the account's shard limit.
func (s *Server) checkShardLimit(more int) *apiError {
	if more <= 0 {
		return nil
	}
	cur, aerr := s.openShards()
	if aerr != nil {
		return aerr
	}
	if limit := s.shardLimit(); cur+more > limit {
		return newAPIError(errLimitExceeded, "This request would exceed the shard limit for the account "+s.cfg.Account+" in "+s.cfg.Region+
			". Current shard count for the account: "+strconv.Itoa(cur)+". Limit: "+strconv.Itoa(limit)+
			". Number of additional shards that would have resulted from this request: "+strconv.Itoa(more)+
			". Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.")
	}
	return nil
}

// notActive is AWS's ResourceInUseException for a stream in state st.
func (s *Server) notActive(name string, st engine.StreamStatus) *apiError {
	return newAPIError(errResourceInUse, "Stream "+name+" under account "+s.cfg.Account+" not ACTIVE, instead in state "+string(st))
}

// dropPending forgets name's pending change, if any (its stream is being
// deleted at once).
func (s *Server) dropPending(name string) {
	if s.pending.n.Load() == 0 {
		return
	}
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	if _, ok := s.pending.m[name]; ok {
		delete(s.pending.m, name)
		s.pending.n.Store(int32(len(s.pending.m)))
		s.armPendingTimerLocked()
	}
}
