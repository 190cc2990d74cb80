package engine

import (
	"maps"

	"github.com/kvstream/kvstream/shard"
)

// streamView is an immutable snapshot of a stream's catalog entry and
// shard logs. Every change to them publishes a new view (under the
// stream's exclusive lock, after the change's commit); readers
// (DescribeStream, ListShards, iterators, …) load it without taking any
// lock, so a read never waits for a put, a throttle or a catalog commit.
type streamView struct {
	meta    *streamMeta                  // never modified once published
	logs    map[shard.ShardID]*shard.Log // never modified once published
	deleted bool
}

// publishLocked publishes the stream's current state as its view. The
// caller holds s.mu exclusively (or owns s before it is shared).
func (s *stream) publishLocked() {
	s.view.Store(&streamView{meta: s.meta, logs: maps.Clone(s.logs), deleted: s.deleted})
}

// load returns the stream's current view.
func (s *stream) load() *streamView { return s.view.Load() }

// status returns the stream's status at nowMs.
func (v *streamView) status(nowMs int64) StreamStatus { return v.meta.status(nowMs) }

// openShards returns the number of open shards m lists.
func (m *streamMeta) openShards() int {
	n := 0
	for _, sm := range m.Shards {
		if !sm.Closed {
			n++
		}
	}
	return n
}
