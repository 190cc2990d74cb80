package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// CreateStream creates a stream of cfg.ShardCount shards whose hash ranges
// split the space exactly as Kinesis does. It fails with ErrStreamExists if
// the name is taken and ErrValidation/ErrInvalidArgument on bad config.
func (db *DB) CreateStream(name string, cfg StreamConfig) error {
	if err := db.check(); err != nil {
		return err
	}
	if err := db.writable(); err != nil {
		return err
	}
	if err := validateStreamName(name); err != nil {
		return err
	}
	if cfg.ShardCount < 1 {
		return validationf("ShardCount %d must be at least 1", cfg.ShardCount)
	}
	if cfg.Retention == 0 {
		cfg.Retention = defaultRetention
	}
	if err := db.validateRetention(cfg.Retention); err != nil {
		return err
	}
	if !cfg.Partitioner.Valid() {
		return validationf("Partitioner %d is not xxhash or md5", cfg.Partitioner)
	}
	if err := validateLimits(cfg.Limits); err != nil {
		return err
	}
	if cfg.MaxBytes < 0 || cfg.Discard > DiscardNew {
		return validationf("MaxBytes %d must be ≥ 0 and Discard one of DiscardOld, DiscardNew", cfg.MaxBytes)
	}
	if err := validateAttrs(name, cfg.Attrs); err != nil {
		return err
	}
	if err := validateTags(cfg.Tags, 0); err != nil {
		return err
	}
	if err := validateMaxRecordBytes(cfg.MaxRecordBytes); err != nil {
		return err
	}
	leave, err := db.enterWrite()
	if err != nil {
		return err
	}
	defer leave()

	// createMu orders creations (stream ids and the time allocator are
	// persisted in allocation order); db.mu is held only to check and
	// reserve, never across the commit.
	db.createMu.Lock()
	defer db.createMu.Unlock()
	db.mu.Lock()
	if _, ok := db.mu.streams[name]; ok {
		db.mu.Unlock()
		return &shard.Error{Kind: shard.ErrStreamExists, Stream: name, Msg: fmt.Sprintf("stream %s already exists", name)}
	}
	if open := db.openShardsLocked(nil); open+cfg.ShardCount > db.opts.MaxShards {
		db.mu.Unlock()
		return &shard.Error{Kind: shard.ErrLimitExceeded, Reason: shard.ReasonShardLimit, Op: "CreateStream", Stream: name,
			Actual: int64(open), Limit: int64(db.opts.MaxShards), Requested: int64(cfg.ShardCount),
			Msg: fmt.Sprintf("%d more shards would exceed the shard limit of %d open shards (%d open)", cfg.ShardCount, db.opts.MaxShards, open)}
	}
	now := db.opts.Clock()
	secs := db.allocSecsLocked(now)
	m := &streamMeta{
		Name:        name,
		ID:          db.mu.nextStream,
		CreatedMs:   now.UnixMilli(),
		ActiveMs:    now.Add(cfg.ActivationDelay).UnixMilli(),
		RetentionMs: cfg.Retention.Milliseconds(),
		Partitioner: cfg.Partitioner,
		Limits:      cfg.Limits,
		MaxBytes:    cfg.MaxBytes,
		Discard:     cfg.Discard,
		Tags:        maps.Clone(cfg.Tags),
		Attrs:       cloneAttrs(cfg.Attrs),
		NextShard:   uint32(cfg.ShardCount),

		MaxRecordBytes: cfg.MaxRecordBytes,
	}
	for i, r := range shard.SplitHashSpace(cfg.ShardCount) {
		m.Shards = append(m.Shards, shardMeta{ID: shard.ShardID(i), Range: r, Created: secs})
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if err := db.putMetaLocked(b, m); err != nil {
		db.mu.Unlock()
		return err
	}
	// Reserve the shards, so a concurrent reshard counts them.
	db.mu.pendingShards += cfg.ShardCount
	db.mu.Unlock()
	_ = b.Set(shard.MetaKey(metaNextStream), binary.BigEndian.AppendUint32(nil, m.ID+1), nil)
	// Clear anything a crashed DeleteStream of this id might have left.
	start, end := shard.StreamRecordsSpan(m.ID)
	_ = b.DeleteRange(start, end, nil)
	if hooks.beforeCatalogCommit != nil {
		hooks.beforeCatalogCommit()
	}
	err = db.writer.CommitBatch(b, pebble.Sync)
	var s *stream
	if err != nil {
		err = writeFailed("CreateStream", name, err)
	} else {
		s, err = db.newStreamState(m)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.mu.pendingShards -= cfg.ShardCount
	if err != nil {
		return err
	}
	db.mu.nextStream = m.ID + 1
	db.mu.streams[name] = s
	db.mu.byID[m.ID] = s
	return nil
}

// allocSecsLocked returns a shard-creation second that no earlier shard of
// this DB used, so (created, index) identifies a shard across stream
// incarnations. It is persisted with the catalog change that uses it.
func (db *DB) allocSecsLocked(now time.Time) uint64 {
	secs := uint64(now.Unix())
	if secs <= db.mu.lastSecs {
		secs = db.mu.lastSecs + 1
	}
	db.mu.lastSecs = secs
	return secs
}

// putMetaLocked stages m and the time allocator in b.
func (db *DB) putMetaLocked(b *pebble.Batch, m *streamMeta) error {
	enc, err := encodeStreamMeta(m)
	if err != nil {
		return err
	}
	_ = b.Set(shard.CatalogKey(m.Name), enc, nil)
	_ = b.Set(shard.MetaKey(metaLastSecs), binary.BigEndian.AppendUint64(nil, db.mu.lastSecs), nil)
	return nil
}

// openShardsLocked counts open shards across streams other than except
// (nil: all streams), and those of streams being created. The caller
// holds db.mu; no stream lock is taken.
func (db *DB) openShardsLocked(except *stream) int {
	n := db.mu.pendingShards
	for _, s := range db.mu.streams {
		if s == except {
			continue
		}
		n += int(s.nOpen.Load()) // no stream lock under db.mu
	}
	return n
}

// DeleteStream deletes a stream and all its records (with DeleteRange:
// the cost does not grow with the record count). A stream created later
// with the same name never sees the old records. It waits for puts in
// flight on the stream; ctx can end the call before its commit (then
// nothing is deleted).
func (db *DB) DeleteStream(ctx context.Context, name string) error {
	if err := db.check(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// ctl orders the deletion with the stream's other control-plane
	// changes. The stream's lock is taken only to mark it deleted, which
	// waits for puts in flight and fails later ones (and durable consumer
	// writes) with ErrStreamNotFound; it is not held across the commit.
	// Readers keep seeing the stream (its published view) until the
	// commit is done.
	s, unlock, err := db.lockControl(name)
	if err != nil {
		return err
	}
	defer unlock()
	if s.deleted {
		return notFound(name)
	}
	setDeleted := func(v bool) {
		s.mu.Lock()
		s.deleted = v
		s.mu.Unlock()
	}
	setDeleted(true)
	if err := ctx.Err(); err != nil {
		setDeleted(false)
		return err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	_ = b.Delete(shard.CatalogKey(name), nil)
	for _, prefix := range []byte{shard.PrefixRecords, shard.PrefixConsumers, shard.PrefixShardState, shard.PrefixStreamConsumers} {
		start, end := shard.StreamSpan(prefix, s.id)
		_ = b.DeleteRange(start, end, nil)
	}
	if hooks.beforeCatalogCommit != nil {
		hooks.beforeCatalogCommit()
	}
	if err := db.writer.CommitBatch(b, pebble.Sync); err != nil {
		setDeleted(false)
		return writeFailed("DeleteStream", name, err)
	}
	s.mu.Lock()
	s.publishLocked()
	for _, l := range s.logs {
		l.Close()
	}
	s.mu.Unlock()
	db.mu.Lock()
	delete(db.mu.streams, name)
	delete(db.mu.byID, s.id)
	db.mu.Unlock()
	db.spaceFreed()
	return nil
}

// ListStreams returns the stream names in lexical order.
func (db *DB) ListStreams() ([]string, error) {
	if err := db.check(); err != nil {
		return nil, err
	}
	db.mu.RLock()
	names := slices.Collect(maps.Keys(db.mu.streams))
	db.mu.RUnlock()
	slices.Sort(names)
	return names, nil
}

// statusLocked returns the stream's status at nowMs. The caller holds s.mu.
func (s *stream) statusLocked(nowMs int64) StreamStatus { return s.meta.status(nowMs) }

// status returns the status at nowMs of the stream m describes.
func (m *streamMeta) status(nowMs int64) StreamStatus {
	switch {
	case m.ActiveMs > m.CreatedMs && nowMs < m.ActiveMs:
		// Only an ActivationDelay makes a stream CREATING: a clock that
		// steps back before the creation time must not hide the stream.
		return StatusCreating
	case nowMs < m.UpdatingMs:
		return StatusUpdating
	}
	return StatusActive
}

// DescribeStream returns the stream's configuration, status and shards
// (open and closed ones still holding data, by shard id).
func (db *DB) DescribeStream(name string) (StreamDescription, error) {
	s, err := db.streamByName(name)
	if err != nil {
		return StreamDescription{}, err
	}
	v := s.load()
	m := v.meta
	d := StreamDescription{
		Name:           m.Name,
		Status:         v.status(db.opts.nowMs()),
		CreatedAt:      time.UnixMilli(m.CreatedMs),
		Retention:      m.retention(),
		Partitioner:    m.Partitioner,
		Limits:         m.Limits,
		MaxBytes:       m.MaxBytes,
		Discard:        m.Discard,
		OpenShardCount: m.openShards(),
		MaxRecordBytes: db.recordLimit(m),
	}
	if d.Status != StatusCreating {
		d.Shards = v.describeShards()
	}
	for _, sd := range d.Shards {
		d.Bytes += sd.Bytes
		d.Records += sd.Records
	}
	return d, nil
}

func (v *streamView) describeShards() []ShardDescription {
	out := make([]ShardDescription, 0, len(v.meta.Shards))
	for _, sm := range v.meta.Shards {
		l := v.logs[sm.ID]
		d := ShardDescription{
			ShardID:                sm.ID,
			ParentShardID:          sm.Parent,
			AdjacentParentShardID:  sm.AdjacentParent,
			HashKeyRange:           sm.Range,
			StartingSequenceNumber: shard.SequenceNumber{ShardCreated: sm.Created, Shard: uint32(sm.ID), Written: sm.Created},
			Bytes:                  l.Bytes.Load(),
			Records:                l.Records.Load(),
		}
		d.CreatedAt = time.Unix(int64(sm.Created), 0)
		if sm.Closed {
			d.ClosedAt = time.UnixMilli(sm.ClosedMs)
			d.EndingSequenceNumber = shard.SequenceNumber{ShardCreated: sm.Created, Shard: uint32(sm.ID), Counter: shard.MaxCounter, Written: uint64(sm.ClosedMs / 1000)}
		}
		out = append(out, d)
	}
	return out
}

// ListShards returns the stream's shards (open and closed ones still
// holding data), ordered by shard id.
func (db *DB) ListShards(name string) ([]ShardDescription, error) {
	s, err := db.streamByName(name)
	if err != nil {
		return nil, err
	}
	v := s.load()
	if v.status(db.opts.nowMs()) == StatusCreating {
		return nil, nil
	}
	return v.describeShards(), nil
}

// updateMeta applies fn to a copy of the stream's catalog entry and
// persists it; fn may return an error to abort. With changeMeta it is the
// one path for control-plane changes. fn runs under the stream's ctl lock
// only, so the stream's puts go on during the change and its commit; fn
// must change only m and may read s.meta (which only ctl holders change),
// not the shard logs. The in-memory state follows m only after the commit
// succeeded, so a failed commit leaves memory as it was.
func (db *DB) updateMeta(name string, fn func(s *stream, m *streamMeta) error) error {
	return db.changeMeta(name, false, fn)
}

// lockControl takes what a control-plane change of stream name holds, in
// the lock order stated on DB: the write gate (so Close waits for the
// change) and then the stream's ctl lock. unlock releases both.
func (db *DB) lockControl(name string) (s *stream, unlock func(), err error) {
	if err := db.writable(); err != nil {
		return nil, nil, err
	}
	if s, err = db.streamByName(name); err != nil {
		return nil, nil, err
	}
	leave, err := db.enterWrite()
	if err != nil {
		return nil, nil, err
	}
	s.ctl.Lock()
	return s, func() { s.ctl.Unlock(); leave() }, nil
}

// changeMeta is updateMeta; with exclusive (a change of the shard table)
// fn runs, and the change commits, under the stream's exclusive lock as
// well, so no put is in flight: none can land in a shard being closed,
// and fn may read the shard logs. That is the one place a lock that puts
// take is held across an fsync'd commit; readers take neither lock.
func (db *DB) changeMeta(name string, exclusive bool, fn func(s *stream, m *streamMeta) error) error {
	s, unlock, err := db.lockControl(name)
	if err != nil {
		return err
	}
	defer unlock()
	if exclusive {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	if s.deleted {
		return notFound(name)
	}
	m := s.meta.clone()
	if err := fn(s, m); err != nil {
		return err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	db.mu.Lock()
	err = db.putMetaLocked(b, m)
	db.mu.Unlock()
	if err != nil {
		return err
	}
	if hooks.beforeCatalogCommit != nil {
		hooks.beforeCatalogCommit()
	}
	if err := db.writer.CommitBatch(b, pebble.Sync); err != nil {
		return writeFailed("update", name, err)
	}
	if !exclusive {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	limitsChanged := s.meta.Limits != m.Limits
	s.meta = m
	s.retentionMs.Store(m.RetentionMs)
	s.floorMs.Store(m.FloorMs)
	s.maxRecordBytes.Store(int64(db.recordLimit(m)))
	closing := s.syncLogsLocked()
	s.publishLocked()
	for _, l := range closing {
		l.Close() // after publishing: readers it wakes see the children
	}
	s.installThrottlesLocked(db.opts.Clock(), limitsChanged)
	if m.MaxBytes > 0 {
		db.bg.kick()
	}
	return nil
}

// SetRetention sets the stream's retention period without Kinesis'
// direction rules (see IncreaseRetention and DecreaseRetention). Lowering
// it hides older records at once; raising it never brings back records
// that already expired.
func (db *DB) SetRetention(name string, d time.Duration) error {
	if err := db.validateRetention(d); err != nil {
		return err
	}
	return db.updateMeta(name, func(_ *stream, m *streamMeta) error {
		db.setRetentionLocked(m, d)
		return nil
	})
}

// setRetentionLocked changes m's retention; when it grows, records already
// past the old retention stay hidden (FloorMs).
func (db *DB) setRetentionLocked(m *streamMeta, d time.Duration) {
	if d.Milliseconds() > m.RetentionMs {
		m.FloorMs = max(m.FloorMs, db.opts.nowMs()-m.RetentionMs)
	}
	m.RetentionMs = d.Milliseconds()
}

// IncreaseRetention raises the retention period; d must not be less than
// the current one (Kinesis' IncreaseStreamRetentionPeriod rules).
func (db *DB) IncreaseRetention(name string, d time.Duration) error {
	if err := db.validateRetention(d); err != nil {
		return err
	}
	return db.updateMeta(name, func(_ *stream, m *streamMeta) error {
		if d.Milliseconds() < m.RetentionMs {
			return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonRetentionShorter, Stream: name,
				Requested: int64(d.Hours()), Actual: m.RetentionMs / 3600000,
				Msg: fmt.Sprintf("IncreaseRetention to %d hours would shorten the retention of stream %s (%d hours); use DecreaseRetention", int64(d.Hours()), name, m.RetentionMs/3600000)}
		}
		db.setRetentionLocked(m, d)
		return nil
	})
}

// DecreaseRetention lowers the retention period; d must not be more than
// the current one (Kinesis' DecreaseStreamRetentionPeriod rules).
func (db *DB) DecreaseRetention(name string, d time.Duration) error {
	if err := db.validateRetention(d); err != nil {
		return err
	}
	return db.updateMeta(name, func(_ *stream, m *streamMeta) error {
		if d.Milliseconds() > m.RetentionMs {
			return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonRetentionLonger, Stream: name,
				Requested: int64(d.Hours()), Actual: m.RetentionMs / 3600000,
				Msg: fmt.Sprintf("DecreaseRetention to %d hours would lengthen the retention of stream %s (%d hours); use IncreaseRetention", int64(d.Hours()), name, m.RetentionMs/3600000)}
		}
		db.setRetentionLocked(m, d)
		return nil
	})
}

// SetLimits changes the stream's per-shard throughput limits at run time.
func (db *DB) SetLimits(name string, l Limits) error {
	if err := validateLimits(l); err != nil {
		return err
	}
	return db.updateMeta(name, func(s *stream, m *streamMeta) error {
		m.Limits = l
		return nil
	})
}

// SetMaxBytes changes the stream's size bound and discard policy.
func (db *DB) SetMaxBytes(name string, maxBytes int64, discard DiscardPolicy) error {
	if maxBytes < 0 || discard > DiscardNew {
		return validationf("MaxBytes %d must be ≥ 0 and Discard one of DiscardOld, DiscardNew", maxBytes)
	}
	return db.updateMeta(name, func(_ *stream, m *streamMeta) error {
		m.MaxBytes, m.Discard = maxBytes, discard
		return nil
	})
}

// maxStreamRecordBytes bounds a stream's own record limit.
const maxStreamRecordBytes = 64 << 20

func validateMaxRecordBytes(n int) error {
	if n < 0 || n > maxStreamRecordBytes {
		return validationf("MaxRecordBytes %d must be in [0, %d] (0: the DB's Options.MaxRecordBytes)", n, maxStreamRecordBytes)
	}
	return nil
}

// recordLimit returns the record limit of the stream m describes.
func (db *DB) recordLimit(m *streamMeta) int {
	if m.MaxRecordBytes > 0 {
		return m.MaxRecordBytes
	}
	return db.opts.MaxRecordBytes
}

// SetMaxRecordBytes changes the stream's record limit (data plus
// partition key of one record): later puts are checked against n; records
// already stored are untouched. 0 returns the stream to the DB's
// Options.MaxRecordBytes. A PutRecords call may always carry at least one
// record of the stream's limit (its byte cap is the larger of
// Options.MaxPutRecordsBytes and n).
func (db *DB) SetMaxRecordBytes(name string, n int) error {
	if err := validateMaxRecordBytes(n); err != nil {
		return err
	}
	return db.updateMeta(name, func(_ *stream, m *streamMeta) error {
		m.MaxRecordBytes = n
		return nil
	})
}

const maxTags = 50

func validateTags(tags map[string]string, existing int) error {
	if len(tags)+existing > maxTags {
		return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonTagLimit, Field: "Tags",
			Actual: int64(len(tags) + existing), Limit: maxTags,
			Msg: fmt.Sprintf("a stream may have at most %d tags, not %d", maxTags, len(tags)+existing)}
	}
	for k, v := range tags {
		if len(k) < 1 || len(k) > 128 {
			return validationf("tag key %q must be 1 to 128 characters long", k)
		}
		if len(v) > 256 {
			return validationf("tag value of %q must be at most 256 characters long", k)
		}
	}
	return nil
}

// AddTags adds or overwrites tags (at most 50 per stream).
func (db *DB) AddTags(name string, tags map[string]string) error {
	return db.updateMeta(name, func(_ *stream, m *streamMeta) error {
		added := 0
		for k := range tags {
			if _, ok := m.Tags[k]; !ok {
				added++
			}
		}
		if err := validateTags(tags, len(m.Tags)-len(tags)+added); err != nil {
			return err
		}
		if m.Tags == nil {
			m.Tags = make(map[string]string, len(tags))
		}
		maps.Copy(m.Tags, tags)
		return nil
	})
}

// RemoveTags removes the given tag keys; absent keys are ignored.
func (db *DB) RemoveTags(name string, keys []string) error {
	return db.updateMeta(name, func(_ *stream, m *streamMeta) error {
		for _, k := range keys {
			delete(m.Tags, k)
		}
		return nil
	})
}

// Tags returns the stream's tags.
func (db *DB) Tags(name string) (map[string]string, error) {
	s, err := db.streamByName(name)
	if err != nil {
		return nil, err
	}
	return maps.Clone(s.load().meta.Tags), nil
}

func validateLimits(l Limits) error {
	if l.WriteRecordsPerSec < 0 || l.WriteBytesPerSec < 0 || l.ReadBytesPerSec < 0 || l.ReadCallsPerSec < 0 {
		return validationf("Limits %+v must not be negative (0 means unlimited)", l)
	}
	return nil
}

// ChildShards returns the shards created by closing shard id of stream
// (none while it is open): what a reader reports at the end of a closed
// shard. It fails with ErrStreamNotFound once the stream is gone, which
// tells a shard that ended because its stream was deleted from one that
// ended in a reshard. An Iterator that reports ShardEnded for id (or is
// woken by its close) finds the children here. It reads the catalog in
// memory, not the disk; safe for concurrent use.
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
