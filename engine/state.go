package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// shardState is what the shard-state key space holds for one shard.
type shardState struct {
	trim  uint64 // first counter not deleted (0: none)
	stats []byte // the StateStats value (nil: none)
}

// loadShardStates reads the state entries of every shard of a stream with
// one scan.
func (db *DB) loadShardStates(streamID uint32) (map[shard.ShardID]shardState, error) {
	lower, upper := shard.StreamSpan(shard.PrefixShardState, streamID)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := make(map[shard.ShardID]shardState)
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < 9 {
			continue
		}
		id := shard.ShardID(binary.BigEndian.Uint32(k[5:9]))
		name := string(k[9:])
		if name != shard.StateTrim && name != shard.StateStats {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		st := out[id]
		switch name {
		case shard.StateTrim:
			if len(v) != 8 {
				return nil, shard.Errorf(shard.ErrCorruption, "trim point of %s in stream %d has %d bytes", id, streamID, len(v))
			}
			st.trim = binary.BigEndian.Uint64(v)
		case shard.StateStats:
			st.stats = append([]byte(nil), v...)
		}
		out[id] = st
	}
	return out, it.Error()
}

// loadedShard is what Open recovers of one shard from its records.
type loadedShard struct {
	last    uint64 // counter of the last record (0: none)
	arrival int64  // arrival of the last record
	// bytes and records are the shard's counts: the persisted ones plus
	// the records above their through; through is that of the persisted
	// value.
	bytes, records int64
	through        uint64
}

// loadShards recovers the last record and the counts of each of the
// stream's shards (ids), with as many goroutines as there are CPUs for
// streams of many shards: every shard costs a seek that reads a data block
// in each level of the LSM, which is most of the time Open takes.
func (db *DB) loadShards(streamID uint32, ids []shard.ShardID, states map[shard.ShardID]shardState) ([]loadedShard, error) {
	return db.loadShardsWith(min(runtime.GOMAXPROCS(0), (len(ids)+63)/64), streamID, ids, states)
}

// loadShardsWith is loadShards with the given number of goroutines.
func (db *DB) loadShardsWith(workers int, streamID uint32, ids []shard.ShardID, states map[shard.ShardID]shardState) ([]loadedShard, error) {
	out := make([]loadedShard, len(ids))
	workers = min(workers, len(ids))
	if workers <= 1 {
		return out, db.loadShardRange(streamID, ids, states, out)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	per := (len(ids) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, len(ids))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = db.loadShardRange(streamID, ids[lo:hi], states, out[lo:hi])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// loadShardRange is loadShards for some of the shards, with one iterator.
func (db *DB) loadShardRange(streamID uint32, ids []shard.ShardID, states map[shard.ShardID]shardState, out []loadedShard) error {
	lower, upper := shard.StreamRecordsSpan(streamID)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	key := make([]byte, shard.RecordKeyLen)
	for i, id := range ids {
		if err := db.loadShard(it, key, streamID, id, states[id], &out[i]); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// loadShard recovers one shard with it, an iterator over the stream's
// records; key is scratch space.
func (db *DB) loadShard(it *pebble.Iterator, key []byte, streamID uint32, id shard.ShardID, st shardState, ls *loadedShard) error {
	found, err := db.loadLastMarked(key, streamID, id, ls)
	if err != nil {
		return err
	}
	if !found {
		if err := loadLast(it, key, streamID, id, ls); err != nil {
			return err
		}
	}
	return loadCounts(it, key, streamID, id, st, ls)
}

// loadLastMarked finds the shard's last record with a point read when the
// previous session ended with Close: the sequence file then names the
// exact last counter of every shard that had records (the only writer of
// a data directory is an Open DB, and Open marks the file unclean before
// anything can be written). A point read stops at the newest part of the
// LSM holding the key (often the memtable or the newest table), where a
// seek for the last key reads a data block in every level. found is false
// without a mark, or if the marked record is gone (lost, or trimmed):
// then the seek decides, and the sequence file's check reports a loss.
func (db *DB) loadLastMarked(key []byte, streamID uint32, id shard.ShardID, ls *loadedShard) (found bool, err error) {
	mark := db.openMarks[shardKey{streamID, uint32(id)}]
	if mark == 0 {
		return false, nil
	}
	shard.PutRecordKey(key, streamID, uint32(id), mark)
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer closer.Close()
	a, ok := shard.ValueArrival(v)
	if !ok {
		return false, shard.Errorf(shard.ErrCorruption, "last record of %s in stream %d does not decode", id, streamID)
	}
	ls.last, ls.arrival = mark, a
	return true, nil
}

// loadLast finds the shard's last record with it: the record just below
// the next shard's first key.
func loadLast(it *pebble.Iterator, key []byte, streamID uint32, id shard.ShardID, ls *loadedShard) error {
	next := uint64(uint32(id)) + 1
	if next > uint64(^uint32(0)) {
		ok := it.Last()
		if !ok {
			return it.Error()
		}
	} else {
		shard.PutRecordKey(key, streamID, uint32(next), 0)
		if !it.SeekLT(key) {
			if err := it.Error(); err != nil {
				return err
			}
		}
	}
	// Below the shard's first key: the shard has no record.
	shard.PutRecordKey(key, streamID, uint32(id), 0)
	if it.Valid() && bytes.Compare(it.Key(), key) >= 0 {
		if _, s, c, ok := shard.DecodeRecordKey(it.Key()); ok && s == uint32(id) {
			v, err := it.ValueAndErr()
			if err != nil {
				return err
			}
			a, aok := shard.ValueArrival(v)
			if !aok {
				return shard.Errorf(shard.ErrCorruption, "last record of %s in stream %d does not decode", id, streamID)
			}
			ls.last, ls.arrival = c, a
		} else if !ok {
			return shard.Errorf(shard.ErrCorruption, "last record of %s in stream %d does not decode", id, streamID)
		}
	}

	return nil
}

// loadCounts restores the shard's counts: the persisted ones, plus the
// records above their through (after a crash, up to about
// shard.StatsBacklog of them over all shards plus shard.StatsEvery per
// shard; none after Close), read with it.
func loadCounts(it *pebble.Iterator, key []byte, streamID uint32, id shard.ShardID, st shardState, ls *loadedShard) error {
	if st.stats != nil {
		var ok bool
		if ls.bytes, ls.records, ls.through, ok = shard.DecodeStats(st.stats); !ok {
			return shard.Errorf(shard.ErrCorruption, "stats of %s in stream %d have %d bytes", id, streamID, len(st.stats))
		}
	}
	if ls.through >= ls.last {
		return nil
	}
	shard.PutRecordKey(key, streamID, uint32(id), ls.through+1)
	for ok := it.SeekGE(key); ok; ok = it.Next() {
		_, s, _, kok := shard.DecodeRecordKey(it.Key())
		if !kok || s != uint32(id) {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		ls.bytes += int64(len(v))
		ls.records++
	}
	return it.Error()
}
