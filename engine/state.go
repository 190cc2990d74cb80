package engine

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kvstream/kvstream/shard"
)

// loadTrimPoint returns the persisted trim point of a shard (0 if none).
func (db *DB) loadTrimPoint(streamID uint32, id shard.ShardID) (uint64, error) {
	v, err := db.get(shard.ShardStateKey(streamID, uint32(id), shard.StateTrim))
	if err != nil || v == nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, shard.Errorf(shard.ErrCorruption, "trim point of %s in stream %d has %d bytes", id, streamID, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// loadShardStats restores a shard's byte and record counts: the
// persisted ones, plus the records above their through (at most
// shard.StatsEvery of them after a crash; none after Close), which it
// reads. last is the shard's last counter.
func (db *DB) loadShardStats(l *shard.Log, last uint64) error {
	v, err := db.get(shard.ShardStateKey(l.Stream, uint32(l.ID), shard.StateStats))
	if err != nil {
		return err
	}
	var bytes, records int64
	var through uint64
	if v != nil {
		var ok bool
		if bytes, records, through, ok = shard.DecodeStats(v); !ok {
			return shard.Errorf(shard.ErrCorruption, "stats of %s in stream %d have %d bytes", l.ID, l.Stream, len(v))
		}
	}
	if through < last {
		lower, upper := l.Span(through+1, ^uint64(0))
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return err
			}
			bytes += int64(len(v))
			records++
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	l.SetStats(bytes, records, min(through, last))
	return nil
}
