package engine

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// Registered stream consumers: the consumers of Kinesis enhanced fan-out
// (RegisterStreamConsumer, SubscribeToShard). They are names with a
// lifecycle (CREATING → ACTIVE → DELETING → gone) persisted in the DB and
// deleted with their stream; reading is up to the caller (the server's
// SubscribeToShard reads with Iterate and Wait). They are unrelated to
// the durable consumers of Consumer, which are checkpointing cursors.

// MaxStreamConsumers is how many consumers one stream may have registered
// (in any state), as on Kinesis.
const MaxStreamConsumers = 20

// maxCreatingConsumers is how many of a stream's consumers may be CREATING
// at once, as on Kinesis.
const maxCreatingConsumers = 5

// StreamConsumerStatus is a registered consumer's lifecycle state, as
// Kinesis names it.
type StreamConsumerStatus string

const (
	StreamConsumerCreating StreamConsumerStatus = "CREATING"
	StreamConsumerActive   StreamConsumerStatus = "ACTIVE"
	StreamConsumerDeleting StreamConsumerStatus = "DELETING"
)

// StreamConsumerConfig configures a consumer being registered. The zero
// value makes it ACTIVE at once and gone at once when deregistered.
type StreamConsumerConfig struct {
	// ActivationDelay keeps the consumer CREATING for this long, to mimic
	// AWS. Default 0: ACTIVE at once.
	ActivationDelay time.Duration
	// DeletionDelay keeps a deregistered consumer DELETING for this long
	// before it is gone. Default 0: gone at once.
	DeletionDelay time.Duration
}

// StreamConsumer describes a registered consumer.
type StreamConsumer struct {
	// Stream is the name of the stream the consumer is registered with.
	Stream string
	// Name is unique per stream: 1–128 characters of [a-zA-Z0-9_.-].
	Name string
	// Status is the state at the time of the call.
	Status StreamConsumerStatus
	// CreatedAt is the registration time (millisecond precision). Its
	// Unix seconds are part of the consumer's Kinesis ARN, so a consumer
	// registered again under the same name in a later second has a new
	// ARN.
	CreatedAt time.Time
	// StreamCreatedAt is the creation time of the stream the consumer is
	// registered with (it tells stream incarnations apart).
	StreamCreatedAt time.Time
}

// streamConsumerRecord is a consumer's persisted entry. Encoded as
// version(1) | createdMs(8) | activeMs(8) | deletionDelayMs(8) |
// deregisteredMs(8), big-endian; deregisteredMs is 0 while the consumer
// is registered.
type streamConsumerRecord struct {
	CreatedMs       int64
	ActiveMs        int64
	DeletionDelayMs int64
	DeregisteredMs  int64
}

const (
	streamConsumerVersion  = 1
	streamConsumerValueLen = 1 + 4*8
)

func (r streamConsumerRecord) encode() []byte {
	b := make([]byte, 1, streamConsumerValueLen)
	b[0] = streamConsumerVersion
	for _, v := range [...]int64{r.CreatedMs, r.ActiveMs, r.DeletionDelayMs, r.DeregisteredMs} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func decodeStreamConsumerRecord(v []byte) (streamConsumerRecord, bool) {
	if len(v) != streamConsumerValueLen || v[0] != streamConsumerVersion {
		return streamConsumerRecord{}, false
	}
	at := func(i int) int64 { return int64(binary.BigEndian.Uint64(v[1+8*i:])) }
	r := streamConsumerRecord{CreatedMs: at(0), ActiveMs: at(1), DeletionDelayMs: at(2), DeregisteredMs: at(3)}
	return r, r.DeletionDelayMs >= 0
}

// status returns the consumer's state at nowMs; ok is false once a
// deregistered consumer is gone. As for streams, only a delay makes a
// state last: a clock stepping back never revives a gone consumer or
// hides an active one.
func (r streamConsumerRecord) status(nowMs int64) (StreamConsumerStatus, bool) {
	switch {
	case r.DeregisteredMs != 0:
		if r.DeletionDelayMs > 0 && nowMs < r.DeregisteredMs+r.DeletionDelayMs {
			return StreamConsumerDeleting, true
		}
		return "", false
	case r.ActiveMs > r.CreatedMs && nowMs < r.ActiveMs:
		return StreamConsumerCreating, true
	}
	return StreamConsumerActive, true
}

// streamConsumerKey returns the key of consumer name of stream:
// PrefixStreamConsumers | streamID(4) | name.
func streamConsumerKey(stream uint32, name string) []byte {
	k := append(make([]byte, 0, 5+len(name)), shard.PrefixStreamConsumers)
	k = binary.BigEndian.AppendUint32(k, stream)
	return append(k, name...)
}

// RegisterStreamConsumer registers consumer name with stream and returns
// it (CREATING for cfg.ActivationDelay, then ACTIVE). It fails with
// ErrResourceInUse if the name is registered already (in any state) or the
// stream is CREATING, and with ErrLimitExceeded if the stream has
// MaxStreamConsumers consumers or 5 of them are CREATING.
func (db *DB) RegisterStreamConsumer(stream, name string, cfg StreamConsumerConfig) (StreamConsumer, error) {
	if err := db.writable(); err != nil {
		return StreamConsumer{}, err
	}
	if err := validateConsumerName(name); err != nil {
		return StreamConsumer{}, err
	}
	if cfg.ActivationDelay < 0 || cfg.DeletionDelay < 0 {
		return StreamConsumer{}, validationf("StreamConsumerConfig delays must not be negative (ActivationDelay %v, DeletionDelay %v)",
			cfg.ActivationDelay, cfg.DeletionDelay)
	}
	s, err := db.streamByName(stream)
	if err != nil {
		return StreamConsumer{}, err
	}
	// Registration runs under the stream's exclusive lock, like every
	// control-plane change: the count and duplicate checks and the write
	// are atomic, and DeleteStream (which takes the same lock) cannot
	// delete the stream's consumer keys between them.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return StreamConsumer{}, notFound(stream)
	}
	now := db.opts.Clock()
	nowMs := now.UnixMilli()
	if st := s.statusLocked(nowMs); st == StatusCreating {
		return StreamConsumer{}, notActive(stream, st)
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	total, creating := 0, 0
	err = db.scanStreamConsumers(s.id, func(n string, r streamConsumerRecord) error {
		st, ok := r.status(nowMs)
		if !ok {
			// Gone: drop the leftover entry.
			_ = b.Delete(streamConsumerKey(s.id, n), nil)
			return nil
		}
		if n == name {
			return &shard.Error{Kind: shard.ErrResourceInUse, Reason: shard.ReasonConsumerExists, Stream: stream, Consumer: name,
				Msg: fmt.Sprintf("stream %s already has a consumer %s", stream, name)}
		}
		total++
		if st == StreamConsumerCreating {
			creating++
		}
		return nil
	})
	if err != nil {
		return StreamConsumer{}, err
	}
	if total >= MaxStreamConsumers {
		return StreamConsumer{}, &shard.Error{Kind: shard.ErrLimitExceeded, Reason: shard.ReasonConsumerLimit, Stream: stream,
			Actual: int64(total), Limit: MaxStreamConsumers,
			Msg: fmt.Sprintf("stream %s has %d registered consumers, the limit", stream, total)}
	}
	if creating >= maxCreatingConsumers {
		return StreamConsumer{}, &shard.Error{Kind: shard.ErrLimitExceeded, Reason: shard.ReasonCreatingConsumerLimit, Stream: stream,
			Actual: int64(creating), Limit: maxCreatingConsumers,
			Msg: fmt.Sprintf("stream %s has %d consumers being created, the limit", stream, creating)}
	}
	r := streamConsumerRecord{CreatedMs: nowMs, ActiveMs: now.Add(cfg.ActivationDelay).UnixMilli(), DeletionDelayMs: cfg.DeletionDelay.Milliseconds()}
	_ = b.Set(streamConsumerKey(s.id, name), r.encode(), nil)
	if err := db.writer.CommitBatch(b, pebble.Sync); err != nil {
		return StreamConsumer{}, writeFailed("RegisterStreamConsumer", stream, err)
	}
	st, _ := r.status(nowMs)
	return StreamConsumer{Stream: stream, Name: name, Status: st, CreatedAt: time.UnixMilli(r.CreatedMs), StreamCreatedAt: time.UnixMilli(s.meta.CreatedMs)}, nil
}

// DeregisterStreamConsumer deregisters consumer name of stream: it is
// DELETING for the DeletionDelay it was registered with, then gone (at
// once by default). Deregistering a consumer that is already DELETING
// does nothing; one that does not exist is ErrConsumerNotFound.
func (db *DB) DeregisterStreamConsumer(stream, name string) error {
	if err := db.writable(); err != nil {
		return err
	}
	if err := validateConsumerName(name); err != nil {
		return err
	}
	s, err := db.streamByName(stream)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return notFound(stream)
	}
	nowMs := db.opts.nowMs()
	key := streamConsumerKey(s.id, name)
	r, ok, err := db.getStreamConsumer(key)
	if err != nil {
		return err
	}
	st, live := r.status(nowMs)
	if !ok || !live {
		return consumerNotFound(stream, name)
	}
	if st == StreamConsumerDeleting {
		return nil
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if r.DeletionDelayMs > 0 {
		r.DeregisteredMs = max(nowMs, 1)
		_ = b.Set(key, r.encode(), nil)
	} else {
		_ = b.Delete(key, nil)
	}
	if err := db.writer.CommitBatch(b, pebble.Sync); err != nil {
		return writeFailed("DeregisterStreamConsumer", stream, err)
	}
	return nil
}

// DescribeStreamConsumer returns consumer name of stream, or
// ErrConsumerNotFound.
func (db *DB) DescribeStreamConsumer(stream, name string) (StreamConsumer, error) {
	if err := validateConsumerName(name); err != nil {
		return StreamConsumer{}, err
	}
	s, err := db.streamByName(stream)
	if err != nil {
		return StreamConsumer{}, err
	}
	v := s.load()
	if v.deleted {
		return StreamConsumer{}, notFound(stream)
	}
	leave, err := db.enterRead()
	if err != nil {
		return StreamConsumer{}, err
	}
	defer leave()
	r, ok, err := db.getStreamConsumer(streamConsumerKey(s.id, name))
	if err != nil {
		return StreamConsumer{}, err
	}
	st, live := r.status(db.opts.nowMs())
	if !ok || !live {
		return StreamConsumer{}, consumerNotFound(stream, name)
	}
	return StreamConsumer{Stream: stream, Name: name, Status: st, CreatedAt: time.UnixMilli(r.CreatedMs), StreamCreatedAt: time.UnixMilli(v.meta.CreatedMs)}, nil
}

// ListStreamConsumers returns the stream's registered consumers (CREATING,
// ACTIVE and DELETING ones) ordered by name.
func (db *DB) ListStreamConsumers(stream string) ([]StreamConsumer, error) {
	s, err := db.streamByName(stream)
	if err != nil {
		return nil, err
	}
	v := s.load()
	if v.deleted {
		return nil, notFound(stream)
	}
	leave, err := db.enterRead()
	if err != nil {
		return nil, err
	}
	defer leave()
	nowMs := db.opts.nowMs()
	var out []StreamConsumer
	err = db.scanStreamConsumers(s.id, func(n string, r streamConsumerRecord) error {
		if st, ok := r.status(nowMs); ok {
			out = append(out, StreamConsumer{Stream: stream, Name: n, Status: st, CreatedAt: time.UnixMilli(r.CreatedMs), StreamCreatedAt: time.UnixMilli(v.meta.CreatedMs)})
		}
		return nil
	})
	return out, err
}

// getStreamConsumer reads one consumer entry; ok is false if there is none.
func (db *DB) getStreamConsumer(key []byte) (streamConsumerRecord, bool, error) {
	v, err := db.get(key)
	if err != nil || v == nil {
		return streamConsumerRecord{}, false, err
	}
	r, ok := decodeStreamConsumerRecord(v)
	if !ok {
		return r, false, shard.Errorf(shard.ErrCorruption, "stream consumer entry %q does not decode", key)
	}
	return r, true, nil
}

// scanStreamConsumers calls fn for each consumer entry of stream id in
// name order, stopping at fn's first error.
func (db *DB) scanStreamConsumers(id uint32, fn func(name string, r streamConsumerRecord) error) error {
	lower, upper := shard.StreamSpan(shard.PrefixStreamConsumers, id)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		r, ok := decodeStreamConsumerRecord(v)
		if !ok {
			return shard.Errorf(shard.ErrCorruption, "stream consumer entry %q does not decode", it.Key())
		}
		if err := fn(string(it.Key()[len(lower):]), r); err != nil {
			return err
		}
	}
	return it.Error()
}

// ChildShards returns the shards created by closing shard id of stream
// (none while it is open): what a reader reports at the end of a closed
// shard. It fails with ErrStreamNotFound once the stream is gone, which
// tells a shard that ended because its stream was deleted from one that
// ended in a reshard.
func (db *DB) ChildShards(stream string, id ShardID) ([]ChildShard, error) {
	s, err := db.streamByName(stream)
	if err != nil {
		return nil, err
	}
	if s.load().deleted {
		return nil, notFound(stream)
	}
	return db.childShards(s, id), nil
}
