package engine

import (
	"context"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// trimChunk bounds the records one trim request deletes, so accounting
// scans and commits stay short and writers never stall behind a trim.
const trimChunk = 1 << 16

// Trim deletes the stream's records that are past retention, and the
// oldest records while the stream is over MaxBytes with DiscardOld, then
// drops closed shards whose data has all expired. The background trimmer
// calls it every Options.TrimInterval; call it directly to trim now
// (tests with an injected clock do). Readers never see expired records
// even before Trim runs.
func (db *DB) Trim(ctx context.Context, name string) error {
	if err := db.writable(); err != nil {
		return err
	}
	s, err := db.streamByName(name)
	if err != nil {
		return err
	}
	return db.trimStream(ctx, s)
}

func (db *DB) trimStream(ctx context.Context, s *stream) error {
	leave, err := db.enterWrite()
	if err != nil {
		return err
	}
	cutoff, err := db.trimRecords(ctx, s)
	leave()
	if err != nil || cutoff < 0 {
		return err
	}
	// 3. Closed shards whose data is gone leave the catalog (a change
	// of the catalog, which enters the gate itself).
	return db.dropExpiredShards(s, cutoff)
}

// trimRecords deletes s's expired records and, with DiscardOld, its
// oldest records while it is over MaxBytes (steps 1 and 2 of Trim). It
// returns the cutoff it trimmed at, or -1 when step 3 is to be skipped
// (s is deleted, or nothing is left to trim by size). The caller is inside
// the gate.
func (db *DB) trimRecords(ctx context.Context, s *stream) (cutoff int64, err error) {
	// One trim at a time: trimTo counts what it deletes from the current
	// trim point, so two trims of a shard at once would count twice.
	db.trimMu.Lock()
	defer db.trimMu.Unlock()
	s.mu.RLock()
	if s.deleted {
		s.mu.RUnlock()
		return -1, nil
	}
	logs := make([]*shard.Log, 0, len(s.logs))
	for _, l := range s.logs {
		logs = append(logs, l)
	}
	maxBytes, discard := s.meta.MaxBytes, s.meta.Discard
	s.mu.RUnlock()

	// 1. By age.
	cutoff = s.cutoffMs(db.opts.nowMs())
	for _, l := range logs {
		for {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			to, err := l.SeekArrival(db.pdb, l.TrimPoint(), cutoff)
			if err != nil {
				return 0, err
			}
			// trimTo deletes at most trimChunk records per commit; the
			// bound is on records, not counters, because counters can
			// jump (a restart after a crash continues above a ceiling).
			if to <= l.TrimPoint() {
				break
			}
			if err := db.trimTo(l, to, -1); err != nil {
				return 0, err
			}
		}
	}
	// 2. By size: drop the oldest records first.
	for maxBytes > 0 && discard == DiscardOld {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		excess := s.bytesOf(logs) - maxBytes
		if excess <= 0 {
			break
		}
		l, err := db.oldestLog(logs)
		if err != nil || l == nil {
			return -1, err
		}
		if err := db.trimTo(l, l.Published()+1, excess); err != nil {
			return 0, err
		}
	}
	return cutoff, nil
}

func (s *stream) bytesOf(logs []*shard.Log) int64 {
	var n int64
	for _, l := range logs {
		n += l.Bytes.Load()
	}
	return n
}

// trimTo deletes l's records from its trim point up to (not including)
// counter to, stopping early once freeBytes bytes are freed (freeBytes < 0:
// no byte goal) or after trimChunk records. It counts what it deletes for
// the shard's accounting and commits through the Writer, so the counts
// stay consistent with concurrent appends.
func (db *DB) trimTo(l *shard.Log, to uint64, freeBytes int64) error {
	from := l.TrimPoint()
	lower, upper := l.Span(from, to-1)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	var bytes, records int64
	end := to
	for ok := it.First(); ok; ok = it.Next() {
		_, _, c, _ := shard.DecodeRecordKey(it.Key())
		if records == trimChunk || (freeBytes >= 0 && bytes >= freeBytes) {
			end = c
			break
		}
		bytes += int64(len(it.LazyValue().ValueOrHandle))
		records++
	}
	if err := it.Close(); err != nil {
		return err
	}
	req := shard.GetRequest()
	defer shard.PutRequest(req)
	req.Trims = append(req.Trims, shard.Trim{Log: l, To: end, Bytes: bytes, Records: records})
	if err := db.writer.Commit(req); err != nil {
		return err
	}
	db.spaceFreed()
	return nil
}

// oldestLog returns the shard whose first live record is oldest, or nil if
// every shard is empty.
func (db *DB) oldestLog(logs []*shard.Log) (*shard.Log, error) {
	var best *shard.Log
	var bestMs int64
	for _, l := range logs {
		if l.TrimPoint() > l.Published() {
			continue
		}
		lower, upper := l.Span(l.TrimPoint(), l.Published())
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return nil, err
		}
		if it.First() {
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return nil, err
			}
			if ms, ok := shard.ValueArrival(v); ok && (best == nil || ms < bestMs) {
				best, bestMs = l, ms
			}
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
	}
	return best, nil
}

// dropExpiredShards removes closed shards that closed before cutoff and
// hold no records from the catalog, as Kinesis drops expired shards from
// ListShards.
func (db *DB) dropExpiredShards(s *stream, cutoff int64) error {
	s.mu.RLock()
	var expired []shard.ShardID
	for _, sm := range s.meta.Shards {
		if l := s.logs[sm.ID]; sm.Closed && sm.ClosedMs < cutoff && l != nil && l.Empty() {
			expired = append(expired, sm.ID)
		}
	}
	name := s.meta.Name
	s.mu.RUnlock()
	if len(expired) == 0 {
		return nil
	}
	return db.updateMeta(name, func(s *stream, m *streamMeta) error {
		m.Shards = slices.DeleteFunc(m.Shards, func(sm shardMeta) bool { return slices.Contains(expired, sm.ID) })
		return nil
	})
}
