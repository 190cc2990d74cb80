package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
)

// ConsumerConfig configures a new durable consumer. It is used only when
// the consumer is created; reopening an existing consumer keeps its
// checkpoints.
type ConsumerConfig struct {
	// Start is where a new consumer starts in the shards that exist when
	// it is created: TrimHorizon() (the default), Latest() or
	// AtTimestamp(t). Shards created later (children of a reshard) are
	// always read from their start, after their parents, as KCL does.
	Start StartPosition
}

// consumerRecord is a consumer's persisted entry.
type consumerRecord struct {
	CreatedMs int64 `json:"created_ms"`
}

// Consumer is a named, durable cursor over every shard of a stream: a
// per-shard checkpoint persisted in the DB. Records reads each parent
// shard to its end before its children, and a restarted consumer resumes
// after its checkpoints (at-least-once delivery).
//
// A Consumer is safe for concurrent use, but one goroutine should range
// over Records at a time.
type Consumer struct {
	db   *DB
	s    *stream
	name string

	mu struct {
		sync.Mutex
		checkpoint map[shard.ShardID]uint64 // last processed counter, persisted
		next       map[shard.ShardID]uint64 // next counter to read this session
		readEnd    map[shard.ShardID]bool   // closed shards yielded to their end
	}
}

func validateConsumerName(name string) error {
	if len(name) == 0 || len(name) > 128 {
		return validationf("ConsumerName %q must be 1 to 128 characters long (it has %d)", name, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return validationf("ConsumerName %q must match [a-zA-Z0-9_.-]+ (character %d is %q)", name, i+1, c)
		}
	}
	return nil
}

// Consumer opens the durable consumer name of stream, creating it with
// cfg if it does not exist (nil cfg: start at the trim horizon). cfg is
// ignored for a consumer that exists: it resumes after its checkpoints.
func (db *DB) Consumer(streamName, name string, cfg *ConsumerConfig) (*Consumer, error) {
	if err := validateConsumerName(name); err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &ConsumerConfig{}
	}
	s, err := db.streamByName(streamName)
	if err != nil {
		return nil, err
	}
	c := &Consumer{db: db, s: s, name: name}
	c.mu.checkpoint = make(map[shard.ShardID]uint64)
	c.mu.next = make(map[shard.ShardID]uint64)
	c.mu.readEnd = make(map[shard.ShardID]bool)

	leave, err := db.enterWrite()
	if err != nil {
		return nil, err
	}
	defer leave()
	// Creation and loading happen under the stream's exclusive lock so a
	// concurrent reshard cannot slip between resolving and persisting.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return nil, notFound(streamName)
	}
	v, err := db.get(shard.ConsumerKey(s.id, name))
	if err != nil {
		return nil, err
	}
	if v != nil {
		return c, c.loadLocked()
	}
	if err := db.writable(); err != nil {
		return nil, err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	rec, _ := json.Marshal(consumerRecord{CreatedMs: db.opts.nowMs()})
	_ = b.Set(shard.ConsumerKey(s.id, name), rec, nil)
	if k := cfg.Start.Kind; k != 0 && k != iterator.KindTrimHorizon {
		if k != iterator.KindLatest && k != iterator.KindAtTimestamp {
			return nil, validationf("ConsumerConfig.Start must be TrimHorizon, Latest or AtTimestamp, not %s", k)
		}
		now := db.opts.nowMs()
		for id, l := range s.logs {
			next, err := iterator.Resolve(db.pdb, l, cfg.Start, now, s.cutoffMs(now))
			if err != nil {
				return nil, err
			}
			if next > 0 {
				c.mu.checkpoint[id] = next - 1
				_ = b.Set(shard.CheckpointKey(s.id, name, uint32(id)), binary.BigEndian.AppendUint64(nil, next-1), nil)
			}
		}
	}
	if err := db.writer.CommitBatch(b, pebble.Sync); err != nil {
		return nil, writeFailed("Consumer", streamName, err)
	}
	return c, nil
}

func (c *Consumer) loadLocked() error {
	lower := shard.ConsumerKey(c.s.id, c.name)
	upper := append(slices.Clone(lower[:len(lower)-1]), 1)
	it, err := c.db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(lower)+4 {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) != 8 {
			return shard.Errorf(shard.ErrCorruption, "checkpoint of consumer %s has %d bytes", c.name, len(v))
		}
		c.mu.checkpoint[shard.ShardID(binary.BigEndian.Uint32(k[len(lower):]))] = binary.BigEndian.Uint64(v)
	}
	return it.Error()
}

// Name returns the consumer's name.
func (c *Consumer) Name() string { return c.name }

// Checkpoint durably records that r and every earlier record of its shard
// are processed; after a restart the consumer resumes after r.
func (c *Consumer) Checkpoint(r Record) error {
	return c.CheckpointAt(r.ShardID, r.SequenceNumber)
}

// CheckpointAt durably records that shard id is processed up to and
// including sequence number n. Checkpoints never move back: a number at or
// below the current checkpoint is ignored.
func (c *Consumer) CheckpointAt(id ShardID, n SequenceNumber) error {
	if err := c.db.check(); err != nil {
		return err
	}
	if err := c.db.writable(); err != nil {
		return err
	}
	if n.Shard != uint32(id) {
		return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonSequenceOtherShard, Stream: c.s.meta.Name,
			Shard: id, Other: ShardID(n.Shard), Sequence: n,
			Msg: fmt.Sprintf("sequence number %s belongs to %s, not %s", n, ShardID(n.Shard), id)}
	}
	leave, err := c.db.enterWrite()
	if err != nil {
		return err
	}
	defer leave()
	c.s.mu.RLock()
	defer c.s.mu.RUnlock()
	if c.s.deleted {
		return notFound(c.s.meta.Name)
	}
	l := c.s.logs[id]
	if l != nil && !l.Owns(n) {
		return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonSequenceOtherStream, Stream: c.s.meta.Name,
			Shard: id, Sequence: n,
			Msg: fmt.Sprintf("sequence number %s did not come from %s of stream %s", n, id, c.s.meta.Name)}
	}
	// Checkpoints only move forward (as KCL's do): an earlier number is a
	// no-op. c.mu is held across the write so concurrent checkpoints
	// persist in the order they are applied.
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp, ok := c.mu.checkpoint[id]; ok && n.Counter <= cp {
		return nil
	}
	b := c.db.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(shard.CheckpointKey(c.s.id, c.name, uint32(id)), binary.BigEndian.AppendUint64(nil, n.Counter), nil)
	if err := c.db.writer.CommitBatch(b, c.db.writeOpts()); err != nil {
		return writeFailed("Checkpoint", c.s.meta.Name, err)
	}
	c.mu.checkpoint[id] = n.Counter
	return nil
}

// Checkpoints returns the last checkpointed sequence number per shard.
func (c *Consumer) Checkpoints() map[ShardID]SequenceNumber {
	v := c.s.load() // no stream lock: reads never wait for a writer
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[ShardID]SequenceNumber, len(c.mu.checkpoint))
	for id, cnt := range c.mu.checkpoint {
		if l := v.logs[id]; l != nil {
			out[id] = l.Seq(cnt, 0)
		}
	}
	return out
}

// shardPlan is one shard the consumer may read now.
type shardPlan struct {
	log  *shard.Log
	next uint64
}

// plan returns the shards whose parents are finished and that are not
// finished themselves, with the position to read from. A closed shard is
// finished when it was yielded to its end in this session or its
// checkpoint covers its last record; a parent that expired from the
// catalog is finished.
func (c *Consumer) plan() ([]shardPlan, bool) {
	// The stream's published view, not its lock: a consumer's reads never
	// wait for a put or a control-plane commit.
	s := c.s.load()
	if s.deleted {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	finished := func(id shard.ShardID) bool {
		l := s.logs[id]
		if l == nil {
			return true // expired
		}
		if !l.IsClosed() {
			return false
		}
		if c.mu.readEnd[id] {
			return true
		}
		cp, ok := c.mu.checkpoint[id]
		// Not l.Empty(): a closed shard that never held a record (an
		// intermediate shard of UpdateShardCount) must still wait for its
		// own parents, which reading it to its end (readEnd) ensures.
		return (ok && cp >= l.Published()) || l.TrimPoint() > l.Published()
	}
	var out []shardPlan
	for _, sm := range s.meta.Shards {
		if finished(sm.ID) {
			continue
		}
		if sm.Parent != nil && !finished(*sm.Parent) {
			continue
		}
		if sm.AdjacentParent != nil && !finished(*sm.AdjacentParent) {
			continue
		}
		next, ok := c.mu.next[sm.ID]
		if !ok {
			next = 1
			if cp, ok := c.mu.checkpoint[sm.ID]; ok {
				next = cp + 1
			}
		}
		out = append(out, shardPlan{log: s.logs[sm.ID], next: next})
	}
	return out, true
}

// consumerPage is how many records Records takes from one shard before
// moving to the next, so busy shards do not starve the others.
const consumerPage = 256

// Records returns every record of the stream after the consumer's
// checkpoints, shard by shard in sequence order, each parent shard to its
// end before its children. When every readable shard is caught up it
// blocks until new records commit (no polling), a reshard happens, or ctx
// ends; then it yields ctx's error once and stops. Data is owned by the
// caller. Checkpoint what you have processed; uncheckpointed records are
// delivered again after a restart.
func (c *Consumer) Records(ctx context.Context) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		cases := make([]reflect.SelectCase, 0, 8)
		for {
			if err := c.db.check(); err != nil {
				yield(Record{}, err)
				return
			}
			plans, ok := c.plan()
			if !ok {
				yield(Record{}, notFound(c.s.meta.Name))
				return
			}
			progressed := false
			cases = cases[:0]
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
			for _, p := range plans {
				// Register for wake-ups before reading, so a commit between
				// the read and the wait is not missed.
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(p.log.Changed())})
				recs, ended, next, err := c.readPage(p)
				if err != nil {
					yield(Record{}, err)
					return
				}
				for _, r := range recs {
					if !yield(r, nil) {
						c.setNext(p.log.ID, r.SequenceNumber.Counter+1, false)
						return
					}
				}
				c.setNext(p.log.ID, next, ended)
				if len(recs) > 0 || ended {
					progressed = true
				}
			}
			if progressed {
				continue
			}
			if err := ctx.Err(); err != nil {
				yield(Record{}, err)
				return
			}
			if chosen, _, _ := reflect.Select(cases); chosen == 0 {
				yield(Record{}, ctx.Err())
				return
			}
		}
	}
}

// readPage reads up to consumerPage records of p's shard from p.next, and
// reports whether the shard ended and where the next page starts.
func (c *Consumer) readPage(p shardPlan) (recs []Record, ended bool, next uint64, err error) {
	leave, err := c.db.enterRead()
	if err != nil {
		return nil, false, 0, err
	}
	defer leave()
	it := iterator.New(c.db.pdb, p.log, p.next, c.s.cutoff(c.db))
	recs, _ = iterator.ReadPage(it, consumerPage, c.db.opts.MaxGetRecordsBytes)
	ended, next, err = it.ShardEnded(), it.NextCounter(), it.Err()
	return recs, ended, next, errors.Join(err, it.Close())
}

func (c *Consumer) setNext(id shard.ShardID, next uint64, ended bool) {
	c.mu.Lock()
	c.mu.next[id] = next
	if ended {
		c.mu.readEnd[id] = true
	}
	c.mu.Unlock()
}

// ShardLag is a consumer's position in one unfinished shard.
type ShardLag struct {
	ShardID ShardID
	// Checkpoint is the last checkpointed number (zero: none).
	Checkpoint SequenceNumber
	// Behind counts records after the checkpoint.
	Behind int64
	// MillisBehindLatest is the age of the oldest unprocessed record, 0
	// when caught up.
	MillisBehindLatest int64
}

// Lag reports, for every shard the consumer has not finished, how far its
// checkpoint is behind the shard's tip.
func (c *Consumer) Lag() ([]ShardLag, error) {
	if err := c.db.check(); err != nil {
		return nil, err
	}
	plans, ok := c.plan()
	if !ok {
		return nil, notFound(c.s.meta.Name)
	}
	now := c.db.opts.nowMs()
	out := make([]ShardLag, 0, len(plans))
	for _, p := range plans {
		c.mu.Lock()
		cp, has := c.mu.checkpoint[p.log.ID]
		c.mu.Unlock()
		lag := ShardLag{ShardID: p.log.ID}
		if has {
			lag.Checkpoint = p.log.Seq(cp, 0)
		}
		leave, err := c.db.enterRead()
		if err != nil {
			return nil, err
		}
		it := iterator.New(c.db.pdb, p.log, cp+1, c.s.cutoff(c.db))
		if it.Next() {
			lag.MillisBehindLatest = max(0, now-it.Record().Timestamp.UnixMilli())
			lag.Behind = int64(p.log.Published() - it.Record().SequenceNumber.Counter + 1)
			if lag.Behind > p.log.Records.Load() {
				// Counters skip a range here (a restart after a crash
				// continues above a reserved ceiling): count the records.
				lag.Behind = 1
				for it.Next() {
					lag.Behind++
				}
			}
		}
		err = errors.Join(it.Err(), it.Close())
		leave()
		if err != nil {
			return nil, err
		}
		out = append(out, lag)
	}
	return out, nil
}

// ListConsumers returns the names of the stream's durable consumers.
func (db *DB) ListConsumers(streamName string) ([]string, error) {
	s, err := db.streamByName(streamName)
	if err != nil {
		return nil, err
	}
	leave, err := db.enterRead()
	if err != nil {
		return nil, err
	}
	defer leave()
	lower, upper := shard.StreamSpan(shard.PrefixConsumers, s.id)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var names []string
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[len(lower):]
		if i := bytes.IndexByte(k, 0); i >= 0 && i == len(k)-1 { // not a checkpoint key
			names = append(names, string(k[:len(k)-1]))
		}
	}
	return names, it.Error()
}

// DeleteConsumer deletes a durable consumer and its checkpoints.
func (db *DB) DeleteConsumer(streamName, name string) error {
	if err := db.writable(); err != nil {
		return err
	}
	if err := validateConsumerName(name); err != nil {
		return err
	}
	s, err := db.streamByName(streamName)
	if err != nil {
		return err
	}
	leave, err := db.enterWrite()
	if err != nil {
		return err
	}
	defer leave()
	v, err := db.get(shard.ConsumerKey(s.id, name))
	if err != nil {
		return err
	}
	if v == nil {
		return consumerNotFound(streamName, name)
	}
	lower := shard.ConsumerKey(s.id, name)
	upper := append(slices.Clone(lower[:len(lower)-1]), 1)
	b := db.pdb.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(lower, upper, nil)
	if err := db.writer.CommitBatch(b, pebble.Sync); err != nil {
		return writeFailed("DeleteConsumer", streamName, err)
	}
	return nil
}
