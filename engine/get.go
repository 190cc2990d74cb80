package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
)

// readableLog returns the shard's log for a read, checking the stream's
// state. It takes no lock.
func (db *DB) readableLog(s *stream, id shard.ShardID) (*shard.Log, error) {
	v := s.load()
	l := v.logs[id]
	if v.deleted || l == nil || v.status(db.opts.nowMs()) == StatusCreating {
		return nil, shardNotFound(v.meta.Name, id)
	}
	return l, nil
}

// cutoffMs returns the oldest arrival time still readable at nowMs.
func (s *stream) cutoffMs(nowMs int64) int64 {
	return max(nowMs-s.retentionMs.Load(), s.floorMs.Load())
}

func (s *stream) cutoff(db *DB) func() int64 {
	return func() int64 { return s.cutoffMs(db.opts.nowMs()) }
}

// GetShardIterator returns a shard iterator token for the shard at pos.
// Tokens are self-contained and authenticated; they stay valid across
// restarts for Options.IteratorTTL.
func (db *DB) GetShardIterator(name string, id ShardID, pos StartPosition) (string, error) {
	s, err := db.streamByName(name)
	if err != nil {
		return "", err
	}
	l, err := db.readableLog(s, id)
	if err != nil {
		return "", err
	}
	leave, err := db.enterRead()
	if err != nil {
		return "", err
	}
	defer leave()
	now := db.opts.nowMs()
	next, err := iterator.Resolve(db.pdb, l, pos, now, s.cutoffMs(now))
	if err != nil {
		return "", err
	}
	return db.tokens.Encode(iterator.Token{Stream: s.id, Shard: id, Next: next, IssuedMs: now, Name: s.meta.Name}), nil
}

// IteratorStream returns the name of the stream a shard iterator token was
// issued for, even when the token has expired or the stream is gone; ""
// for anything this DB did not issue (or an old token that names no
// stream). It is for error messages.
func (db *DB) IteratorStream(token string) string { return db.tokens.StreamName(token) }

// GetRecords reads up to limit records (0 means Options.MaxGetRecords)
// from the position token names, and about Options.MaxGetRecordsBytes of
// data at most. While the shard is open NextShardIterator is always set;
// at the end of a closed shard it is empty and ChildShards lists the
// shard's children. It never waits; a ctx that has ended fails the call
// with ctx's error before it reads.
func (db *DB) GetRecords(ctx context.Context, token string, limit int) (GetRecordsOutput, error) {
	if err := db.check(); err != nil {
		return GetRecordsOutput{}, err
	}
	if err := ctx.Err(); err != nil {
		return GetRecordsOutput{}, err
	}
	if limit == 0 {
		limit = db.opts.MaxGetRecords
	}
	if limit < 1 || limit > db.opts.MaxGetRecords {
		return GetRecordsOutput{}, validationf("Limit %d must be in [1, %d]", limit, db.opts.MaxGetRecords)
	}
	now := db.opts.nowMs()
	tok, err := db.tokens.Decode(token, now)
	if err != nil {
		return GetRecordsOutput{}, err
	}
	db.mu.RLock()
	s := db.mu.byID[tok.Stream]
	db.mu.RUnlock()
	if s == nil {
		return GetRecordsOutput{}, streamGone(tok)
	}
	l, err := db.readableLog(s, tok.Shard)
	if err != nil {
		return GetRecordsOutput{}, err
	}
	if err := db.admitRead(s, l); err != nil {
		return GetRecordsOutput{}, err
	}
	leave, err := db.enterRead()
	if err != nil {
		return GetRecordsOutput{}, err
	}
	defer leave()
	it := iterator.New(db.pdb, l, tok.Next, s.cutoff(db))
	defer it.Close()
	recs, _ := iterator.ReadPage(it, limit, db.opts.MaxGetRecordsBytes)
	if err := it.Err(); err != nil && (len(recs) == 0 || !errors.Is(err, shard.ErrCorruption)) {
		// Damage after some readable records: return those; the next
		// call, positioned at the damage, gets the *CorruptionError.
		return GetRecordsOutput{}, err
	}
	db.chargeRead(s, l, recs)
	out := GetRecordsOutput{Records: recs}
	if it.ShardEnded() {
		out.ChildShards = db.childShards(s, tok.Shard)
		return out, nil
	}
	out.NextShardIterator = db.tokens.Encode(iterator.Token{Stream: s.id, Shard: tok.Shard, Next: it.NextCounter(), IssuedMs: now, Name: s.meta.Name})
	if !it.CaughtUp() && len(recs) > 0 {
		out.MillisBehindLatest = max(0, now-recs[len(recs)-1].Timestamp.UnixMilli())
	}
	return out, nil
}

// admitRead applies the shard's read-call limit and rejects reads while
// earlier reads left the byte bucket in debt.
func (db *DB) admitRead(s *stream, l *shard.Log) error {
	if !l.Throttle().AdmitRead(db.opts.Clock()) {
		return &shard.Error{Kind: shard.ErrThroughputExceeded, Reason: shard.ReasonReadRate, Stream: s.meta.Name, Shard: l.ID,
			Msg: fmt.Sprintf("read rate exceeded for %s of stream %s", l.ID, s.meta.Name)}
	}
	return nil
}

// chargeRead takes the returned bytes from the shard's read-byte bucket.
func (db *DB) chargeRead(s *stream, l *shard.Log, recs []Record) {
	t := l.Throttle()
	if t == nil {
		return
	}
	n := 0
	for i := range recs {
		n += len(recs[i].Data) + len(recs[i].PartitionKey)
	}
	t.ChargeRead(db.opts.Clock(), n)
}

// childShards returns the shards created by closing id.
func (db *DB) childShards(s *stream, id shard.ShardID) []ChildShard {
	var out []ChildShard
	for _, sm := range s.load().meta.Shards {
		if (sm.Parent != nil && *sm.Parent == id) || (sm.AdjacentParent != nil && *sm.AdjacentParent == id) {
			c := ChildShard{ShardID: sm.ID, HashKeyRange: sm.Range}
			if sm.Parent != nil {
				c.ParentShards = append(c.ParentShards, *sm.Parent)
			}
			if sm.AdjacentParent != nil {
				c.ParentShards = append(c.ParentShards, *sm.AdjacentParent)
			}
			out = append(out, c)
		}
	}
	return out
}

// Iterate returns a Go-native Iterator over one shard from pos. The caller
// must Close it. It reads through the same path as GetRecords, without
// tokens or page limits. Once the DB closes the Iterator stops with
// ErrClosed (Err); closing it afterwards is still allowed.
func (db *DB) Iterate(name string, id ShardID, pos StartPosition) (*Iterator, error) {
	s, err := db.streamByName(name)
	if err != nil {
		return nil, err
	}
	l, err := db.readableLog(s, id)
	if err != nil {
		return nil, err
	}
	leave, err := db.enterRead()
	if err != nil {
		return nil, err
	}
	now := db.opts.nowMs()
	next, err := iterator.Resolve(db.pdb, l, pos, now, s.cutoffMs(now))
	leave()
	if err != nil {
		return nil, err
	}
	return db.gate.New(db.pdb, l, next, s.cutoff(db)), nil
}
