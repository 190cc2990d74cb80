package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/kvstream/kvstream/shard"
)

// PutRecord appends one record to the open shard its partition key (or
// ExplicitHashKey) maps to. With the default durability the record is on
// stable storage when PutRecord returns.
//
// ctx bounds the wait for capacity (Limits.Wait) and for the commit: when
// it ends first, PutRecord returns an error wrapping ctx.Err(). Such a put
// is not acknowledged; if its commit had already begun, the record may
// still be written (with a sequence number the caller never learns).
// Either way the engine no longer reads e.Data once PutRecord returns: the
// caller may reuse its memory.
// While the disk is below Options.MinFreeBytes, puts fail at once with
// ErrDiskFull, which is retryable.
func (db *DB) PutRecord(ctx context.Context, name string, e Entry) (PutResult, error) {
	res, err := db.put(ctx, name, []Entry{e}, false)
	if err != nil {
		return PutResult{}, err
	}
	return res[0], res[0].Err
}

// PutRecords appends up to Options.MaxPutRecordsEntries records in one
// atomic, durable commit. Results are in input order. A request-level
// problem (validation, missing stream) fails the whole call; a per-entry
// problem (throttling, a full stream) sets that entry's Err and the other
// entries still succeed, as Kinesis' partial-success PutRecords does.
// ctx and ErrDiskFull are as for PutRecord.
func (db *DB) PutRecords(ctx context.Context, name string, entries []Entry) ([]PutResult, error) {
	if len(entries) == 0 {
		return nil, validationf("Records must contain 1 to %d entries (it has 0)", db.opts.MaxPutRecordsEntries)
	}
	if len(entries) > db.opts.MaxPutRecordsEntries {
		return nil, validationf("Records has %d entries, more than the limit of %d", len(entries), db.opts.MaxPutRecordsEntries)
	}
	return db.put(ctx, name, entries, true)
}

// put validates, routes, admits and commits entries. batch says the call
// is a PutRecords: entries are named by index in errors and the request's
// total size is checked.
func (db *DB) put(ctx context.Context, name string, entries []Entry, batch bool) ([]PutResult, error) {
	if err := db.writable(); err != nil {
		return nil, err
	}
	s, err := db.streamByName(name)
	if err != nil {
		return nil, err
	}
	total, limit := 0, int(s.maxRecordBytes.Load())
	for i := range entries {
		idx := -1
		if batch {
			idx = i
		}
		if err := validateEntry(&entries[i], idx, limit); err != nil {
			return nil, err
		}
		total += len(entries[i].Data) + len(entries[i].PartitionKey)
	}
	if maxTotal := max(db.opts.MaxPutRecordsBytes, limit); batch && total > maxTotal {
		return nil, validationf("Records total %d bytes of data and partition keys, more than the limit of %d bytes", total, maxTotal)
	}
	if err := db.disk.admit(total); err != nil {
		return nil, err
	}

	results := make([]PutResult, len(entries))
	// A put that waits for throughput (Limits.Wait) waits without the
	// stream's lock: it routes, releases the lock, waits, then routes
	// again (a reshard may have closed a shard meanwhile; the records then
	// go to its children, whose buckets are not charged) and commits.
	waited := false
	for {
		s.mu.RLock()
		logs, ehks, err := db.routeLocked(s, name, entries)
		if err != nil {
			s.mu.RUnlock()
			return nil, err
		}
		if s.meta.Limits.Wait && !waited {
			s.mu.RUnlock()
			db.waitWrites(ctx, logs, entries, results)
			waited = true
			continue
		}
		handedOff, err := db.commitLocked(ctx, s, entries, logs, ehks, results, waited)
		if !handedOff {
			s.mu.RUnlock()
		}
		if err != nil {
			return nil, err
		}
		return results, nil
	}
}

// routeLocked checks that the stream takes puts and returns each entry's
// open shard and parsed ExplicitHashKey (nil if no entry has one). The
// caller holds s.mu shared.
func (db *DB) routeLocked(s *stream, name string, entries []Entry) ([]*shard.Log, []shard.HashKey, error) {
	if s.deleted || s.statusLocked(db.opts.nowMs()) == StatusCreating {
		return nil, nil, notFound(name)
	}
	logs := make([]*shard.Log, len(entries))
	var ehks []shard.HashKey
	for i := range entries {
		e := &entries[i]
		var h shard.HashKey
		if e.ExplicitHashKey != "" {
			var err error
			if h, err = parseExplicitHashKey(e.ExplicitHashKey); err != nil {
				return nil, nil, err
			}
			if ehks == nil {
				ehks = make([]shard.HashKey, len(entries))
			}
			ehks[i] = h
		} else {
			h = s.meta.Partitioner.Hash(e.PartitionKey)
		}
		l := s.route(h)
		logs[i] = l
		if n := e.SequenceNumberForOrdering; !n.IsZero() && l.Owns(n) && n.Counter > l.Published() {
			return nil, nil, &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonOrderingNumber, Stream: name,
				Shard: l.ID, Sequence: n, Field: "SequenceNumberForOrdering",
				Msg: fmt.Sprintf("SequenceNumberForOrdering %s is beyond the last record of %s in stream %s", n, l.ID, name)}
		}
	}
	return logs, ehks, nil
}

// waitWrites waits, with no lock held, until each entry's shard has write
// capacity for it or ctx ends; an entry that cannot be admitted gets its
// error in results.
func (db *DB) waitWrites(ctx context.Context, logs []*shard.Log, entries []Entry, results []PutResult) {
	if hooks.beforeThrottleWait != nil {
		hooks.beforeThrottleWait()
	}
	for i, l := range logs {
		if t := l.Throttle(); t != nil && results[i].Err == nil {
			results[i].Err = t.WaitWrite(ctx, db.opts.Clock(), len(entries[i].Data)+len(entries[i].PartitionKey))
		}
	}
}

// commitLocked admits the entries that have no error yet (size bound,
// throttles unless waited says they were waited for) and commits them in
// one batch, filling results. The caller holds s.mu shared: it keeps the
// shards open until the commit returns. When ctx ends while Pebble has
// the commit, handedOff is true: s.mu's shared hold now belongs to a
// goroutine that releases it when the commit completes, and the caller
// must not release it.
func (db *DB) commitLocked(ctx context.Context, s *stream, entries []Entry, logs []*shard.Log, ehks []shard.HashKey, results []PutResult, waited bool) (handedOff bool, err error) {
	bulk := db.admitBulk(s, logs, entries)
	req := shard.GetRequest()
	defer func() {
		if !handedOff {
			shard.PutRequest(req)
		}
	}()
	var pending int64
	for i := range entries {
		e, l := &entries[i], logs[i]
		results[i].ShardID = l.ID
		if results[i].Err != nil {
			continue
		}
		if err := db.admitWrite(s, l, e, &pending, bulk, waited); err != nil {
			results[i].Err = err
			continue
		}
		var ehk *shard.HashKey
		if e.ExplicitHashKey != "" {
			ehk = &ehks[i]
		}
		req.Appends = append(req.Appends, shard.Append{Log: l, PartitionKey: e.PartitionKey, ExplicitHashKey: ehk, Data: e.Data})
	}
	if hooks.beforePutCommit != nil {
		hooks.beforePutCommit()
	}
	if len(req.Appends) > 0 {
		inFlight, err := db.writer.CommitContext(ctx, req)
		if inFlight {
			// The caller gave up on a commit Pebble already has: it may
			// still land. Until it does, keep s.mu shared (no reshard or
			// delete may pass its records) and keep req; then release both.
			handedOff = true
			go func() {
				_ = db.writer.Wait(req)
				s.mu.RUnlock()
				shard.PutRequest(req)
			}()
			return true, fmt.Errorf("kvstream: put to stream %s abandoned while its commit was in progress (it is not acknowledged, but its records may still be written): %w", s.meta.Name, err)
		}
		if err != nil {
			return false, err
		}
	}
	j := 0
	for i := range results {
		if results[i].Err != nil {
			continue
		}
		a := &req.Appends[j]
		j++
		results[i].SequenceNumber = a.Log.Seq(a.Counter, a.ArrivalMs)
	}
	return false, nil
}

// admitWrite applies the stream's size bound and the shard's write
// throttle to one entry; waited says the entry already waited for the
// throttle (Limits.Wait). It never waits. The caller holds s.mu shared.
//
// MaxBytes counts stored bytes (shard.ValueLen), the unit DescribeStream
// reports; pending is what earlier entries of the same call will add.
func (db *DB) admitWrite(s *stream, l *shard.Log, e *Entry, pending *int64, bulk []*shard.Log, waited bool) error {
	n := len(e.Data) + len(e.PartitionKey)
	if m := s.meta; m.MaxBytes > 0 && m.Discard == DiscardNew {
		stored := int64(shard.ValueLen(e.PartitionKey, e.ExplicitHashKey != "", e.Data))
		if have := s.bytes() + *pending; have+stored > m.MaxBytes {
			return &shard.Error{Kind: shard.ErrStreamFull, Stream: m.Name, Actual: have, Requested: stored, Limit: m.MaxBytes,
				Msg: fmt.Sprintf("stream %s holds %d bytes; a record of %d stored bytes would exceed its MaxBytes of %d", m.Name, have, stored, m.MaxBytes)}
		}
		*pending += stored
	}
	t := l.Throttle()
	if t == nil || waited || slices.Contains(bulk, l) {
		return nil
	}
	if !t.AdmitWrite(db.opts.Clock(), n) {
		return &shard.Error{Kind: shard.ErrThroughputExceeded, Reason: shard.ReasonWriteRate, Stream: s.meta.Name, Shard: l.ID,
			Msg: fmt.Sprintf("write rate exceeded for %s of stream %s", l.ID, s.meta.Name)}
	}
	return nil
}

// admitBulk takes each throttled shard's whole share of a call from its
// buckets in one step when it fits, so a PutRecords that is under the
// limits costs two bucket operations per shard, not per entry. It returns
// the shards admitted that way; entries of other shards are admitted one
// by one (partial success).
func (db *DB) admitBulk(s *stream, logs []*shard.Log, entries []Entry) []*shard.Log {
	if s.meta.Limits.Wait || len(entries) < 2 {
		return nil
	}
	var admitted []*shard.Log
	var seen [16]*shard.Log
	distinct := seen[:0]
	for _, l := range logs {
		if l.Throttle() != nil && !slices.Contains(distinct, l) {
			distinct = append(distinct, l)
		}
	}
	if len(distinct) == 0 {
		return nil
	}
	now := db.opts.Clock()
	for _, l := range distinct {
		records, bytes := 0, 0
		for i, li := range logs {
			if li == l {
				records++
				bytes += len(entries[i].Data) + len(entries[i].PartitionKey)
			}
		}
		if l.Throttle().AdmitWriteN(now, records, bytes) {
			admitted = append(admitted, l)
		}
	}
	return admitted
}
