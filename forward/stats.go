package forward

import (
	"maps"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Stats describes a Forwarder's progress. Counters count since New.
type Stats struct {
	// Running reports whether Run is active.
	Running bool
	// ForwardedRecords and ForwardedBytes (data plus partition keys)
	// count the local records the upstream acknowledged, each once however
	// many times it was sent.
	ForwardedRecords, ForwardedBytes int64
	// Requests counts PutRecords calls; FailedRequests those that failed
	// as a whole (connection errors, timeouts, throttling, 5xx).
	Requests, FailedRequests int64
	// Throttled counts calls refused for throttling plus entries of
	// partially failed calls refused for throttling.
	Throttled int64
	// RetriedRecords counts entries sent again after a partial failure:
	// the failed ones and later ones of the same key (see the package
	// documentation).
	RetriedRecords int64
	// DroppedRecords counts local records that retention (age, or
	// MaxBytes with DiscardOld) deleted before they were forwarded: the
	// gaps the reader met, plus the records between each shard's read
	// position and its trim horizon now. A consumer new at the trim
	// horizon counts the records deleted before it was created too. Not
	// counted: records of a closed shard that expired from the stream
	// before the Forwarder read it (the engine forgets the shard).
	// Like the other counters it counts since New. Run checkpoints past
	// the records it finds dropped, so a later process does not count them
	// again — except drops the previous process reported but had not yet
	// checkpointed past (no later record of the shard was acknowledged,
	// and no Run started after them): those a new process reports again.
	DroppedRecords int64
	// LagRecords is the number of local records not yet acknowledged
	// upstream (buffered in memory, or still only on disk), exact: each
	// shard's part is taken at one instant. Zero means every record stored
	// so far is acknowledged. (A record acknowledged while Stats runs may
	// show both here and in ForwardedRecords, never in neither.)
	LagRecords int64
	// LagBytes is their size, counted as ForwardedBytes counts (data plus
	// partition key): exact for the records in memory and, per shard, for
	// up to ExactLagRecords on disk; past that, the on-disk part is
	// estimated from the shard's average stored record size, and
	// LagBytesEstimated is set.
	LagBytes          int64
	LagBytesEstimated bool
	// LagAge is the age of the oldest record not yet acknowledged (0 when
	// caught up), by the local arrival time.
	LagAge time.Duration
	// BufferedRecords is the part of LagRecords held in memory.
	BufferedRecords int64
	// Failing reports that the latest PutRecords call failed as a whole;
	// LastError is the latest such failure, at LastErrorAt, and
	// FailingSince the first failure since the upstream last answered.
	Failing      bool
	LastError    error
	LastErrorAt  time.Time
	FailingSince time.Time
	// LastAnswerAt is when the upstream last answered a PutRecords call
	// (accepting some or all of it).
	LastAnswerAt time.Time
}

// Stats returns the counters and computes the lag from the local stream.
// It reads a few keys per shard and is safe to call at any time, also
// between Runs. The counters are returned even when the error (the
// stream is gone, the DB closed) keeps the lag from being computed.
func (f *Forwarder) Stats() (st Stats, err error) {
	// The counters are read last: a batch is counted forwarded before it
	// leaves the lag, so a record may show in both, never in neither.
	defer func() {
		st.Running = f.running.Load()
		st.ForwardedRecords = f.forwardedRecords.Load()
		st.ForwardedBytes = f.forwardedBytes.Load()
		st.Requests = f.requests.Load()
		st.FailedRequests = f.failedRequests.Load()
		st.Throttled = f.throttled.Load()
		st.RetriedRecords = f.retried.Load()
	}()
	f.mu.Lock()
	st.Failing, st.LastError, st.LastErrorAt, st.LastAnswerAt = f.mu.failing, f.mu.lastErr, f.mu.lastErrAt, f.mu.lastOK
	st.FailingSince = f.mu.failingSince
	queues := maps.Clone(f.mu.queues)
	positions := maps.Clone(f.mu.pos)
	f.mu.Unlock()

	// Each shard's position and memory at one instant: the reader hands a
	// record over (queue.push) under the queue's lock, so holding it while
	// reading the position counts every record once, on disk or in memory.
	type snap struct{ read, droppedThrough uint64 }
	snaps := make(map[engine.ShardID]snap, len(positions))
	var oldest time.Time
	older := func(t time.Time) {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	for id, p := range positions {
		take := func() {
			p.mu.Lock()
			snaps[id] = snap{p.read, p.droppedThrough}
			st.DroppedRecords += p.dropped
			p.mu.Unlock()
		}
		q := queues[id]
		if q == nil {
			take()
			continue
		}
		n, b, o := q.buffered(take)
		st.BufferedRecords += int64(n)
		st.LagBytes += int64(b)
		older(o)
	}
	st.LagRecords = st.BufferedRecords

	descs, err := f.db.ListShards(f.cfg.Stream)
	if err != nil {
		return st, err
	}
	for _, d := range descs {
		sp := snaps[d.ShardID]
		first, last, err := f.bounds(d.ShardID)
		if err != nil {
			return st, err
		}
		// Records below first are gone; those the reader has not passed
		// yet were dropped unforwarded.
		if from := max(sp.read, sp.droppedThrough); first > from+1 {
			st.DroppedRecords += int64(first - from - 1)
		}
		next := max(sp.read+1, first) // first record only on disk
		if last < next {
			continue
		}
		unread := int64(last - next + 1)
		st.LagRecords += unread
		t, bytes, exact, err := f.unread(d, next, last)
		if err != nil {
			return st, err
		}
		older(t)
		if !exact {
			st.LagBytesEstimated = true
			if d.Records > 0 {
				bytes = unread * max(0, d.Bytes/d.Records-storedOverhead)
			}
		}
		st.LagBytes += bytes
	}
	if !oldest.IsZero() && st.LagRecords > 0 {
		st.LagAge = max(0, time.Since(oldest))
	}
	return st, nil
}

// bounds returns the first live counter of shard id (its trim horizon)
// and the last visible one (0 if none). The engine exposes them only
// through iterator positions.
func (f *Forwarder) bounds(id engine.ShardID) (first, last uint64, err error) {
	it, err := f.db.Iterate(f.cfg.Stream, id, engine.TrimHorizon())
	if err != nil {
		return 0, 0, err
	}
	first = max(it.NextCounter(), 1)
	_ = it.Close()
	it, err = f.db.Iterate(f.cfg.Stream, id, engine.Latest())
	if err != nil {
		return 0, 0, err
	}
	last = it.NextCounter() - 1
	_ = it.Close()
	return first, last, nil
}

// ExactLagRecords is how many records per shard Stats reads from disk to
// count LagBytes exactly; a longer backlog is estimated.
const ExactLagRecords = 1000

// storedOverhead is what the engine stores per record besides its data
// and partition key (arrival time, flags, the key's length) for keys
// under 128 bytes without an explicit hash key; the LagBytes estimate
// takes it off the average stored size.
const storedOverhead = 10

// unread reads shard d's records from counter first to last (inclusive):
// it returns the first one's arrival time (zero if none is left) and,
// if there are at most ExactLagRecords of them, their exact size (data
// plus partition key) with exact set.
func (f *Forwarder) unread(d engine.ShardDescription, first, last uint64) (arrival time.Time, bytes int64, exact bool, err error) {
	sn := d.StartingSequenceNumber
	sn.Counter = first
	it, err := f.db.Iterate(f.cfg.Stream, d.ShardID, engine.AtSequenceNumber(sn))
	if err != nil {
		return time.Time{}, 0, false, err
	}
	defer it.Close()
	countAll := last-first+1 <= ExactLagRecords
	for it.Next() {
		r := it.Record()
		if r.SequenceNumber.Counter > last {
			break
		}
		if arrival.IsZero() {
			arrival = r.Timestamp
		}
		if !countAll {
			return arrival, 0, false, nil
		}
		bytes += int64(len(r.Data) + len(r.PartitionKey))
	}
	return arrival, bytes, countAll, it.Err()
}
