package engine

import (
	"fmt"
	"slices"

	"github.com/kvstream/kvstream/shard"
)

// reshard runs fn under the stream's exclusive lock (changeMeta with
// exclusive: no put is in flight), then closes the shards fn closed and opens the ones it added.
// Closing a shard records its last counter as EndCounter: nothing can land
// in it afterwards.
func (db *DB) reshard(name string, fn func(s *stream, m *streamMeta, now int64, secs func() uint64) error) error {
	return db.changeMeta(name, true, func(s *stream, m *streamMeta) error {
		now := db.opts.nowMs()
		switch st := s.statusLocked(now); st {
		case StatusActive:
		default:
			return notActive(name, st)
		}
		var secs uint64
		alloc := func() uint64 {
			if secs == 0 {
				db.mu.Lock()
				secs = db.allocSecsLocked(db.opts.Clock())
				db.mu.Unlock()
			}
			return secs
		}
		if err := fn(s, m, now, alloc); err != nil {
			return err
		}
		open := 0
		for _, sm := range m.Shards {
			if !sm.Closed {
				open++
			}
		}
		db.mu.RLock()
		total := db.openShardsLocked(s) + open
		db.mu.RUnlock()
		if total > db.opts.MaxShards {
			return &shard.Error{Kind: shard.ErrLimitExceeded, Reason: shard.ReasonShardLimit, Stream: name,
				Actual: int64(total), Limit: int64(db.opts.MaxShards),
				Msg: fmt.Sprintf("the DB would have %d open shards, more than its limit of %d", total, db.opts.MaxShards)}
		}
		// updateMeta closes the parents' logs and creates the children's
		// once the catalog change is durable.
		return nil
	})
}

// closeShard marks m.Shards[i] closed at now.
func (s *stream) closeShard(m *streamMeta, i int, now int64) {
	sm := &m.Shards[i]
	sm.Closed = true
	sm.ClosedMs = now
	if l := s.logs[sm.ID]; l != nil {
		sm.EndCounter = l.Published()
	}
}

// addShard appends a new shard to m and returns its index in m.Shards.
func addShard(m *streamMeta, r shard.HashRange, parent, adjacent *shard.ShardID, secs uint64) int {
	id := shard.ShardID(m.NextShard)
	m.NextShard++
	m.Shards = append(m.Shards, shardMeta{ID: id, Range: r, Parent: parent, AdjacentParent: adjacent, Created: secs})
	return len(m.Shards) - 1
}

func findOpen(m *streamMeta, name string, id shard.ShardID) (int, error) {
	for i, sm := range m.Shards {
		if sm.ID == id {
			if sm.Closed {
				return -1, &shard.Error{Kind: shard.ErrResourceInUse, Reason: shard.ReasonShardClosed, Stream: name, Shard: id,
					Msg: fmt.Sprintf("%s of stream %s is closed", id, name)}
			}
			return i, nil
		}
	}
	return -1, shardNotFound(name, id)
}

// SplitShard closes shard id and creates two children: the lower one
// covers [Start, newStartingHashKey-1], the upper one [newStartingHashKey,
// End]. newStartingHashKey must be greater than Start+1 and less than End.
func (db *DB) SplitShard(name string, id ShardID, newStartingHashKey string) error {
	k, ok := shard.ParseHashKey(newStartingHashKey)
	if !ok {
		return validationf("NewStartingHashKey %q must be a decimal in [0, 2^128-1]", newStartingHashKey)
	}
	return db.reshard(name, func(s *stream, m *streamMeta, now int64, secs func() uint64) error {
		i, err := findOpen(m, name, id)
		if err != nil {
			return err
		}
		r := m.Shards[i].Range
		if k.Cmp(r.Start.Add(1)) <= 0 || k.Cmp(r.End) >= 0 {
			return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonSplitHashKey, Stream: name, Shard: id,
				Field: "NewStartingHashKey", Value: k.String(), Range: r,
				Msg: fmt.Sprintf("NewStartingHashKey %s for %s of stream %s must be greater than one plus the shard's StartingHashKey %s and less than the shard's EndingHashKey %s", k, id, name, r.Start, r.End)}
		}
		s.closeShard(m, i, now)
		p := id
		addShard(m, shard.HashRange{Start: r.Start, End: k.Sub(1)}, &p, nil, secs())
		addShard(m, shard.HashRange{Start: k, End: r.End}, &p, nil, secs())
		return nil
	})
}

// MergeShards closes two adjacent open shards and creates one child
// covering both ranges, with ParentShardID id and AdjacentParentShardID
// adjacent. As in Kinesis, id's range must end just below adjacent's:
// EndingHashKey(id)+1 == StartingHashKey(adjacent); the reverse order is
// ErrInvalidArgument.
func (db *DB) MergeShards(name string, id, adjacent ShardID) error {
	return db.reshard(name, func(s *stream, m *streamMeta, now int64, secs func() uint64) error {
		i, err := findOpen(m, name, id)
		if err != nil {
			return err
		}
		j, err := findOpen(m, name, adjacent)
		if err != nil {
			return err
		}
		a, b := m.Shards[i].Range, m.Shards[j].Range
		// As Kinesis: id's range must end just below adjacent's (the
		// order matters). The last range, ending at 2^128-1, is below
		// nothing (Add would wrap to 0).
		if a.End == shard.MaxHashKey || a.End.Add(1) != b.Start {
			return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonNotAdjacent, Stream: name, Shard: id, Other: adjacent,
				Msg: fmt.Sprintf("%s and %s of stream %s are not an adjacent pair (the first must end just below the second)", id, adjacent, name)}
		}
		r := shard.HashRange{Start: a.Start, End: b.End}
		s.closeShard(m, i, now)
		s.closeShard(m, j, now)
		p, q := id, adjacent
		addShard(m, r, &p, &q, secs())
		return nil
	})
}

// UpdateShardCount reshards the stream to target open shards with uniform
// hash ranges (Kinesis' UNIFORM_SCALING). target must be between half and
// double the current open shard count. Like AWS it works by splits and
// merges, so every new shard has at most two parents and consumers can
// follow the lineage; intermediate shards are created closed and empty.
func (db *DB) UpdateShardCount(name string, target int) error {
	if target < 1 {
		return validationf("TargetShardCount %d must be at least 1", target)
	}
	return db.reshard(name, func(s *stream, m *streamMeta, now int64, secs func() uint64) error {
		var open []int
		for i, sm := range m.Shards {
			if !sm.Closed {
				open = append(open, i)
			}
		}
		n := len(open)
		if target > 2*n || 2*target < n {
			return &shard.Error{Kind: shard.ErrLimitExceeded, Reason: shard.ReasonShardCountRange, Stream: name,
				Requested: int64(target), Actual: int64(n),
				Msg: fmt.Sprintf("UpdateShardCount target %d for stream %s must be at least half (%d) and at most double (%d) the open shard count %d", target, name, (n+1)/2, 2*n, n)}
		}
		if target == n && isUniform(m, open) {
			return nil
		}
		slices.SortFunc(open, func(a, b int) int { return m.Shards[a].Range.Start.Cmp(m.Shards[b].Range.Start) })
		want := shard.SplitHashSpace(target)
		// 1. Split every open shard at each new boundary strictly inside it.
		var pieces []int // indexes into m.Shards, in key order
		for _, i := range open {
			cur := i
			for _, w := range want[1:] {
				r := m.Shards[cur].Range
				if w.Start.Cmp(r.Start) <= 0 || w.Start.Cmp(r.End) > 0 {
					continue
				}
				s.closeShard(m, cur, now)
				p := m.Shards[cur].ID
				lo := addShard(m, shard.HashRange{Start: r.Start, End: w.Start.Sub(1)}, &p, nil, secs())
				hi := addShard(m, shard.HashRange{Start: w.Start, End: r.End}, &p, nil, secs())
				pieces = append(pieces, lo)
				cur = hi
			}
			pieces = append(pieces, cur)
		}
		// 2. Merge the pieces of each new range, left to right.
		k := 0
		for _, w := range want {
			acc := pieces[k]
			k++
			for k < len(pieces) && m.Shards[pieces[k]].Range.Start.Cmp(w.End) <= 0 {
				next := pieces[k]
				k++
				s.closeShard(m, acc, now)
				s.closeShard(m, next, now)
				p, q := m.Shards[acc].ID, m.Shards[next].ID
				acc = addShard(m, shard.HashRange{Start: m.Shards[acc].Range.Start, End: m.Shards[next].Range.End}, &p, &q, secs())
			}
		}
		return nil
	})
}

func isUniform(m *streamMeta, open []int) bool {
	want := shard.SplitHashSpace(len(open))
	for _, i := range open {
		if !slices.Contains(want, m.Shards[i].Range) {
			return false
		}
	}
	return true
}
