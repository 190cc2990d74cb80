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
	var res [1]PutResult
	if err := db.put(ctx, name, []Entry{e}, res[:], false); err != nil {
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
	return db.PutRecordsTo(ctx, name, entries, nil) // nil on an error
}

// PutRecordsTo is PutRecords appending the results, in input order, to
// dst and returning the extended slice; on a request-level error it
// returns dst unchanged and the error. A caller that passes the previous
// call's results[:0] reuses their memory: a call then allocates nothing
// in the engine, where PutRecords allocates a fresh slice per call (about
// 28 KB for 500 entries). Writing fresh memory (page faults) and
// collecting it cost about 40 ns per record in a CPU profile of
// BenchmarkPutPath; routing a record costs about 20.
// kvstream bench putrecords reuses its results this way. The engine
// keeps no reference to dst. Safe for concurrent use, as PutRecords, on
// distinct dst slices.
func (db *DB) PutRecordsTo(ctx context.Context, name string, entries []Entry, dst []PutResult) ([]PutResult, error) {
	if len(entries) == 0 {
		return dst, validationf("Records must contain 1 to %d entries (it has 0)", db.opts.MaxPutRecordsEntries)
	}
	if len(entries) > db.opts.MaxPutRecordsEntries {
		return dst, validationf("Records has %d entries, more than the limit of %d", len(entries), db.opts.MaxPutRecordsEntries)
	}
	n := len(dst)
	var out []PutResult
	if cap(dst)-n >= len(entries) {
		out = dst[:n+len(entries)]
		clear(out[n:])
	} else {
		out = make([]PutResult, n+len(entries))
		copy(out, dst)
	}
	results := out[n:]
	if err := db.put(ctx, name, entries, results, true); err != nil {
		clear(results)
		return dst, err
	}
	return out, nil
}

// put validates, routes, admits and commits entries, filling results
// (zeroed, one per entry). batch says the call is a PutRecords: entries
// are named by index in errors and the request's total size is checked.
func (db *DB) put(ctx context.Context, name string, entries []Entry, results []PutResult, batch bool) error {
	if err := db.writable(); err != nil {
		return err
	}
	s, err := db.streamByName(name)
	if err != nil {
		return err
	}
	total, limit := 0, int(s.maxRecordBytes.Load())
	for i := range entries {
		idx := -1
		if batch {
			idx = i
		}
		if err := validateEntry(&entries[i], idx, limit); err != nil {
			return err
		}
		total += len(entries[i].Data) + len(entries[i].PartitionKey)
	}
	if maxTotal := max(db.opts.MaxPutRecordsBytes, limit); batch && total > maxTotal {
		return validationf("Records total %d bytes of data and partition keys, more than the limit of %d bytes", total, maxTotal)
	}
	if err := db.disk.admit(total); err != nil {
		return err
	}

	// The request's Appends are routed in place: one per entry, in entry
	// order, until commitLocked drops those that are not admitted.
	req := shard.GetRequest()
	// A put that waits for throughput (Limits.Wait) waits without the
	// stream's lock: it routes, releases the lock, waits, then routes
	// again (a reshard may have closed a shard meanwhile; the records then
	// go to its children, whose buckets are not charged) and commits.
	waited := false
	for {
		s.mu.RLock()
		if err := db.routeLocked(s, name, entries, req); err != nil {
			s.mu.RUnlock()
			shard.PutRequest(req)
			return err
		}
		if s.meta.Limits.Wait && !waited {
			s.mu.RUnlock()
			db.waitWrites(ctx, req.Appends, entries, results)
			waited = true
			continue
		}
		handedOff, err := db.commitLocked(ctx, s, entries, req, results, waited)
		if !handedOff {
			s.mu.RUnlock()
			shard.PutRequest(req)
		}
		return err
	}
}

// routeLocked checks that the stream takes puts and sets req.Appends to
// one Append per entry, in entry order: its open shard, partition key,
// parsed ExplicitHashKey and data. The caller holds s.mu shared.
func (db *DB) routeLocked(s *stream, name string, entries []Entry, req *shard.Request) error {
	// Only an activation delay makes a stream CREATING: read the clock
	// only then.
	if s.deleted || s.meta.ActiveMs > s.meta.CreatedMs && s.statusLocked(db.opts.nowMs()) == StatusCreating {
		return notFound(name)
	}
	apps := slices.Grow(req.Appends[:0], len(entries))[:len(entries)]
	req.Appends = apps[:0] // on an error return, only the empty slice is kept
	var ehks []shard.HashKey
	for i := range entries {
		e := &entries[i]
		var h shard.HashKey
		var ehk *shard.HashKey
		if e.ExplicitHashKey != "" {
			var err error
			if h, err = parseExplicitHashKey(e.ExplicitHashKey); err != nil {
				clear(apps[:i])
				return err
			}
			if ehks == nil {
				ehks = make([]shard.HashKey, len(entries))
			}
			ehks[i] = h
			ehk = &ehks[i]
		} else {
			h = s.meta.Partitioner.Hash(e.PartitionKey)
		}
		l := s.route(h)
		apps[i] = shard.Append{Log: l, PartitionKey: e.PartitionKey, ExplicitHashKey: ehk, Data: e.Data}
		if n := e.SequenceNumberForOrdering; !n.IsZero() && l.Owns(n) && n.Counter > l.Published() {
			clear(apps[:i+1])
			return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonOrderingNumber, Stream: name,
				Shard: l.ID, Sequence: n, Field: "SequenceNumberForOrdering",
				Msg: fmt.Sprintf("SequenceNumberForOrdering %s is beyond the last record of %s in stream %s", n, l.ID, name)}
		}
	}
	req.Appends = apps
	return nil
}

// waitWrites waits, with no lock held, until each entry's shard has write
// capacity for it or ctx ends; an entry that cannot be admitted gets its
// error in results.
func (db *DB) waitWrites(ctx context.Context, routed []shard.Append, entries []Entry, results []PutResult) {
	if hooks.beforeThrottleWait != nil {
		hooks.beforeThrottleWait()
	}
	for i := range routed {
		if t := routed[i].Log.Throttle(); t != nil && results[i].Err == nil {
			results[i].Err = t.WaitWrite(ctx, db.opts.Clock(), len(entries[i].Data)+len(entries[i].PartitionKey))
		}
	}
}

// commitLocked admits the entries that have no error yet (size bound,
// throttles unless waited says they were waited for) and commits them in
// one batch, filling results. req.Appends holds every entry, routed
// (routeLocked); the entries not admitted are dropped from it. The caller
// holds s.mu shared: it keeps the shards open until the commit returns.
// When ctx ends while Pebble has the commit, handedOff is true: s.mu's
// shared hold and req now belong to a goroutine that releases them when
// the commit completes, and the caller must release neither.
func (db *DB) commitLocked(ctx context.Context, s *stream, entries []Entry, req *shard.Request, results []PutResult, waited bool) (handedOff bool, err error) {
	if routed := req.Appends; !admitsAll(s, routed, waited) {
		bulk := db.admitBulk(s, routed, entries)
		var pending int64
		j := 0
		for i := range routed {
			l := routed[i].Log
			if results[i].Err == nil {
				results[i].Err = db.admitWrite(s, l, &entries[i], &pending, bulk, waited)
			}
			if results[i].Err != nil {
				results[i].ShardID = l.ID // the admitted get theirs with their sequence numbers
				continue
			}
			if j != i {
				routed[j] = routed[i]
			}
			j++
		}
		clear(routed[j:])
		req.Appends = routed[:j]
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
		results[i].ShardID = a.Log.ID
		results[i].SequenceNumber = a.Log.Seq(a.Counter, a.ArrivalMs)
	}
	return false, nil
}

// admitsAll reports whether every routed entry is admitted without a
// check, so commitLocked can skip admission: no entry failed while
// waiting for throughput, the stream has no size bound that rejects new
// records (MaxBytes with DiscardNew) and no routed shard is throttled.
// The caller holds s.mu shared.
func admitsAll(s *stream, routed []shard.Append, waited bool) bool {
	if waited || s.meta.MaxBytes > 0 && s.meta.Discard == DiscardNew {
		return false
	}
	for i := range routed {
		if routed[i].Log.Throttle() != nil {
			return false
		}
	}
	return true
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
func (db *DB) admitBulk(s *stream, routed []shard.Append, entries []Entry) []*shard.Log {
	if s.meta.Limits.Wait || len(entries) < 2 {
		return nil
	}
	var admitted []*shard.Log
	var seen [16]*shard.Log
	distinct := seen[:0]
	for i := range routed {
		if l := routed[i].Log; l.Throttle() != nil && !slices.Contains(distinct, l) {
			distinct = append(distinct, l)
		}
	}
	if len(distinct) == 0 {
		return nil
	}
	now := db.opts.Clock()
	for _, l := range distinct {
		records, bytes := 0, 0
		for i := range routed {
			if routed[i].Log == l {
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
