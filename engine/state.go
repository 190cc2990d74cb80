package engine

import (
	"encoding/binary"

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

// loadShardStats restores a shard's byte and record counts.
func (db *DB) loadShardStats(l *shard.Log) error {
	v, err := db.get(shard.ShardStateKey(l.Stream, uint32(l.ID), shard.StateStats))
	if err != nil || v == nil {
		return err
	}
	if len(v) != 16 {
		return shard.Errorf(shard.ErrCorruption, "stats of %s in stream %d have %d bytes", l.ID, l.Stream, len(v))
	}
	l.Bytes.Store(int64(binary.BigEndian.Uint64(v[:8])))
	l.Records.Store(int64(binary.BigEndian.Uint64(v[8:])))
	return nil
}
