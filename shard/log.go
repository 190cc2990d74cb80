package shard

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Log is the in-memory state of one shard's record log. The records
// themselves live in Pebble under AppendRecordKey(Stream, ID, counter).
//
// Concurrency: the committer goroutine (Writer) is the only one that
// allocates counters; readers use the atomic published counter as their
// upper bound, so they never see record n+1 before record n. All methods
// are safe for concurrent use.
type Log struct {
	Stream  uint32
	ID      ShardID
	Created uint64 // creation time of the shard, Unix seconds
	// StreamName names the stream in error messages. The engine sets it
	// before the Log is shared; it never changes.
	StreamName string

	// Owned by the Writer's goroutine.
	next        uint64
	lastArrival int64
	// wslot is the Log's index in the Writer's list of Logs touched by
	// the commit being built, valid while wgen is that commit's number.
	wgen  uint64
	wslot int
	// statsThrough is the through of the shard's persisted counts
	// (PutStats): records above it are counted in Bytes and Records but
	// not yet in the StateStats value.
	statsThrough uint64
	// unpersisted counts the records this process committed above
	// statsThrough (the Writer's backlog is their sum).
	unpersisted int64

	published        atomic.Uint64 // last visible counter (0: none yet)
	publishedArrival atomic.Int64  // arrival ms of the last visible record
	trim             atomic.Uint64 // records below this counter are deleted
	closed           atomic.Bool

	// Bytes and Records count the live records' value bytes; they are
	// maintained by the Writer and the trimmer.
	Bytes   atomic.Int64
	Records atomic.Int64

	throttle atomic.Pointer[Throttle]

	notify struct {
		sync.Mutex
		ch chan struct{} // closed and cleared on every publish
	}
}

// NewLog returns the state of a shard whose last record has counter last
// (0 if none) and arrival lastArrivalMs, with records below trim deleted.
func NewLog(stream uint32, id ShardID, created uint64, last uint64, lastArrivalMs int64, trim uint64) *Log {
	l := &Log{Stream: stream, ID: id, Created: created, next: last + 1, lastArrival: lastArrivalMs, statsThrough: last}
	l.published.Store(last)
	l.publishedArrival.Store(lastArrivalMs)
	l.trim.Store(trim)
	return l
}

// ContinueAt makes the next appended record get counter next or higher
// (never lower than the Log would pick itself). The engine calls it at open,
// before the Log is handed to a Writer, so a restart after lost records
// never issues a counter again; readers skip the unused counters as they
// skip trimmed ones.
func (l *Log) ContinueAt(next uint64) { l.next = max(l.next, next) }

// Next returns the counter the next appended record would get. Only for
// use before the Log is handed to a Writer (see ContinueAt).
func (l *Log) Next() uint64 { return l.next }

// SetStats sets the shard's counts at open: bytes and records count every
// live record; through is that of the persisted value they were loaded
// from (the records above it were counted by reading them). Only for use
// before the Log is handed to a Writer.
func (l *Log) SetStats(bytes, records int64, through uint64) {
	l.Bytes.Store(bytes)
	l.Records.Store(records)
	l.statsThrough = through
}

// AppendStats adds a Set of the shard's up-to-date StateStats value
// (through its last record) to b if the persisted one leaves records out,
// and reports whether it did.
// Only for use when no Writer commits for the Log any more (after
// Writer.Close), so that the next open has nothing to count.
func (l *Log) AppendStats(b *pebble.Batch) bool {
	last := l.Published()
	if last <= l.statsThrough {
		return false
	}
	var v [StatsLen]byte
	PutStats(v[:], l.Bytes.Load(), l.Records.Load(), last)
	_ = b.Set(ShardStateKey(l.Stream, uint32(l.ID), StateStats), v[:], nil)
	l.statsThrough = last
	l.unpersisted = 0
	return true
}

// Throttle returns the shard's token buckets (nil: unlimited).
func (l *Log) Throttle() *Throttle { return l.throttle.Load() }

// SetThrottle installs new token buckets (nil: unlimited).
func (l *Log) SetThrottle(t *Throttle) { l.throttle.Store(t) }

// Published returns the counter of the last visible record (0 if none).
func (l *Log) Published() uint64 { return l.published.Load() }

// PublishedArrival returns the arrival time (Unix ms) of the last visible
// record, or 0 if there is none.
func (l *Log) PublishedArrival() int64 { return l.publishedArrival.Load() }

// TrimPoint returns the first counter that may still exist.
func (l *Log) TrimPoint() uint64 { return l.trim.Load() }

// Empty reports whether no record remains: none was ever published, or
// all were trimmed.
func (l *Log) Empty() bool {
	pub := l.Published()
	return pub == 0 || l.TrimPoint() > pub
}

// SetTrimPoint raises the trim point to c (it never moves back).
func (l *Log) SetTrimPoint(c uint64) {
	for {
		old := l.trim.Load()
		if c <= old || l.trim.CompareAndSwap(old, c) {
			return
		}
	}
}

// Close marks the shard closed: no record is appended after this call.
// The caller must ensure no append is in flight (the engine holds the
// stream's lock exclusively). Waiters are woken.
func (l *Log) Close() {
	l.closed.Store(true)
	l.wake()
}

// IsClosed reports whether the shard was closed by a reshard.
func (l *Log) IsClosed() bool { return l.closed.Load() }

// Seq returns the sequence number of counter c written at writtenMs.
func (l *Log) Seq(c uint64, writtenMs int64) SequenceNumber {
	return SequenceNumber{ShardCreated: l.Created, Shard: uint32(l.ID), Counter: c, Written: uint64(writtenMs / 1000)}
}

// Owns reports whether n was issued for this shard (same shard index and
// creation second).
func (l *Log) Owns(n SequenceNumber) bool {
	return n.Shard == uint32(l.ID) && n.ShardCreated == l.Created
}

// publish makes records up to counter c visible and wakes waiters.
func (l *Log) publish(c uint64, arrivalMs int64) {
	l.publishedArrival.Store(arrivalMs)
	l.published.Store(c)
	l.wake()
}

func (l *Log) wake() {
	l.notify.Lock()
	if l.notify.ch != nil {
		close(l.notify.ch)
		l.notify.ch = nil
	}
	l.notify.Unlock()
}

// Changed returns a channel closed at the next publish or Close.
func (l *Log) Changed() <-chan struct{} {
	l.notify.Lock()
	defer l.notify.Unlock()
	if l.notify.ch == nil {
		l.notify.ch = make(chan struct{})
	}
	return l.notify.ch
}

// Wait blocks until a record with counter > after is visible, the shard
// is closed, or ctx ends (returning ctx.Err()). It does not poll: the
// commit path wakes it.
func (l *Log) Wait(ctx context.Context, after uint64) error {
	for {
		ch := l.Changed()
		if l.Published() > after || l.IsClosed() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Span returns the Pebble key bounds [from, to] of the shard's records
// (inclusive counters), for iterator bounds.
func (l *Log) Span(from, to uint64) (lower, upper []byte) {
	lower = AppendRecordKey(make([]byte, 0, RecordKeyLen), l.Stream, uint32(l.ID), from)
	if to == ^uint64(0) {
		upper = AppendRecordKey(make([]byte, 0, RecordKeyLen), l.Stream, uint32(l.ID)+1, 0)
	} else {
		upper = AppendRecordKey(make([]byte, 0, RecordKeyLen), l.Stream, uint32(l.ID), to+1)
	}
	return lower, upper
}

// SeekArrival returns the smallest counter c ≥ from of a visible record
// with arrival ≥ ms, or Published()+1 if there is none. Arrival times never
// decrease within a shard, so this is a binary search: O(log n) seeks.
func (l *Log) SeekArrival(r pebble.Reader, from uint64, ms int64) (uint64, error) {
	pub := l.Published()
	if from > pub {
		return pub + 1, nil
	}
	lower, upper := l.Span(from, pub)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	key := make([]byte, RecordKeyLen)
	// probe returns the counter and arrival of the first record ≥ c.
	probe := func(c uint64) (uint64, int64, bool, error) {
		PutRecordKey(key, l.Stream, uint32(l.ID), c)
		if !it.SeekGE(key) {
			return 0, 0, false, ReadError(l, c, it.Error())
		}
		_, _, got, _ := DecodeRecordKey(it.Key())
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, 0, false, ReadError(l, got, err)
		}
		a, ok := ValueArrival(v)
		if !ok {
			return 0, 0, false, &CorruptionError{Stream: l.StreamName, StreamID: l.Stream, Shard: l.ID, Counter: got,
				Cause: fmt.Errorf("record %d has a short value (%d bytes)", got, len(v))}
		}
		return got, a, true, nil
	}
	// Usually nothing past the trim point has expired yet: the first
	// record answers, and the search reads no other block (so damage
	// elsewhere in the shard does not fail a TRIM_HORIZON lookup).
	if got, a, ok, err := probe(from); err != nil {
		return 0, err
	} else if !ok {
		return pub + 1, nil
	} else if a >= ms {
		return got, nil
	}
	lo, hi := from, pub+1 // answer in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		got, a, ok, err := probe(mid)
		if err != nil {
			return 0, err
		}
		if !ok {
			hi = mid
			continue
		}
		if a >= ms {
			hi = mid
		} else {
			lo = got + 1
		}
	}
	if lo > pub {
		return pub + 1, nil
	}
	got, _, ok, err := probe(lo)
	if err != nil || !ok {
		return pub + 1, err
	}
	return got, nil
}
