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
	// upstream (buffered in memory, or still only on disk). While records
	// move, one may briefly be counted twice, but never missed: zero
	// means every record stored so far is acknowledged.
	LagRecords int64
	// LagBytes is their size: exact for the records in memory, estimated
	// from each shard's average stored record size for those on disk.
	LagBytes int64
	// LagAge is the age of the oldest record not yet acknowledged (0 when
	// caught up), by the local arrival time.
	LagAge time.Duration
	// BufferedRecords is the part of LagRecords held in memory.
	BufferedRecords int64
	// Failing reports that the latest PutRecords call failed as a whole;
	// LastError is the latest such failure, at LastErrorAt.
	Failing     bool
	LastError   error
	LastErrorAt time.Time
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
	queues := maps.Clone(f.mu.queues)
	positions := maps.Clone(f.mu.pos)
	f.mu.Unlock()

	// Positions first, then memory: a record the reader hands over in
	// between is counted twice (on disk and in memory) rather than missed,
	// so no lag means none.
	type snap struct{ read, droppedThrough uint64 }
	snaps := make(map[engine.ShardID]snap, len(positions))
	for id, p := range positions {
		p.mu.Lock()
		snaps[id] = snap{p.read, p.droppedThrough}
		st.DroppedRecords += p.dropped
		p.mu.Unlock()
	}
	var oldest time.Time
	older := func(t time.Time) {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	for _, q := range queues {
		n, b, o := q.buffered()
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
		if d.Records > 0 {
			st.LagBytes += unread * (d.Bytes / d.Records)
		}
		if t, ok, err := f.arrival(d, next); err != nil {
			return st, err
		} else if ok {
			older(t)
		}
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

// arrival returns the arrival time of the first record of shard d at or
// after counter c.
func (f *Forwarder) arrival(d engine.ShardDescription, c uint64) (time.Time, bool, error) {
	sn := d.StartingSequenceNumber
	sn.Counter = c
	it, err := f.db.Iterate(f.cfg.Stream, d.ShardID, engine.AtSequenceNumber(sn))
	if err != nil {
		return time.Time{}, false, err
	}
	defer it.Close()
	if !it.Next() {
		return time.Time{}, false, it.Err()
	}
	return it.Record().Timestamp, true, nil
}
