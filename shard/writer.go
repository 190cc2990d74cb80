package shard

import (
	"encoding/binary"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Append is one record to add to a shard. The Writer fills Counter and
// ArrivalMs when the request commits.
type Append struct {
	Log             *Log
	PartitionKey    string
	ExplicitHashKey *HashKey
	Data            []byte

	Counter   uint64
	ArrivalMs int64
}

// Trim deletes a shard's records with counters in [Log.TrimPoint(), To)
// and persists the new trim point. Bytes and Records are what the deleted
// records held, for the shard's accounting.
type Trim struct {
	Log     *Log
	To      uint64
	Bytes   int64
	Records int64
}

// Request is a group of appends and trims committed atomically: all become
// visible and durable together, or none do.
type Request struct {
	Appends []Append
	Trims   []Trim
	err     error
	done    chan struct{}
	// abandoned is set by Commit when it returned because the DB failed
	// while the Writer still held the request; such a request is never
	// reused (the stuck committer may still touch it).
	abandoned bool
}

var requestPool = sync.Pool{New: func() any { return &Request{done: make(chan struct{}, 1)} }}

// GetRequest returns an empty Request from a pool; PutRequest returns it.
func GetRequest() *Request { return requestPool.Get().(*Request) }

// PutRequest returns r to the pool. r must not be used afterwards.
func PutRequest(r *Request) {
	if r.abandoned {
		return
	}
	clear(r.Appends)
	r.Appends = r.Appends[:0]
	r.Trims = nil
	r.err = nil
	requestPool.Put(r)
}

// Writer is the single committer of record appends for one Pebble DB. It
// implements group commit: requests that arrive while a commit is in
// flight are gathered into the next Pebble batch, so concurrent writers
// share one WAL write and one fsync. Because one goroutine assigns
// counters and commits batches in order, per-shard counters are gap-free
// and become visible in order.
//
// Fail-stop: once the DB's fuse blows (a failed WAL write or fsync), no
// batch is committed any more; queued and waiting requests return the
// fuse's error (wrapping ErrFailed) and the records of an unfinished batch
// are never made visible in this process. A commit stuck inside Pebble at
// that moment is abandoned, not waited for.
//
// Counters stay below a durable ceiling (WriterConfig.Ceiling): before a
// batch would use a counter at or above it, the Writer asks Raise to
// persist a higher one, so that a restart can continue above every counter
// ever handed out even when records were lost (see the engine's sequence
// file).
type Writer struct {
	db    *pebble.DB
	wopts *pebble.WriteOptions
	now   func() int64 // Unix ms
	fuse  *Fuse

	// Owned by the committer goroutine.
	ceiling uint64
	raise   func(min uint64) (uint64, error)

	mu struct {
		sync.Mutex
		queue  []*Request
		closed bool
	}
	kick chan struct{}
	quit chan struct{}
	wg   sync.WaitGroup

	// MaxBatchBytes caps one commit's encoded size (default 64 MiB).
	maxBatchBytes int
}

// WriterConfig configures NewWriter.
type WriterConfig struct {
	// Sync selects fsync'd commits.
	Sync bool
	// Now returns the current time in Unix milliseconds.
	Now func() int64
	// Fuse is the DB's fail-stop state; nil means a fresh one.
	Fuse *Fuse
	// Ceiling bounds the counters the Writer may hand out: every counter
	// it assigns is below the ceiling in force. 0 means MaxCounter.
	Ceiling uint64
	// Raise durably raises the ceiling to at least min and returns the new
	// ceiling. It is called on the committer goroutine, so it must not
	// take engine locks. nil: the ceiling never moves.
	Raise func(min uint64) (uint64, error)
}

// NewWriter starts a Writer committing to db.
func NewWriter(db *pebble.DB, cfg WriterConfig) *Writer {
	w := &Writer{db: db, wopts: pebble.NoSync, now: cfg.Now, fuse: cfg.Fuse, ceiling: cfg.Ceiling, raise: cfg.Raise,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), maxBatchBytes: 64 << 20}
	if cfg.Sync {
		w.wopts = pebble.Sync
	}
	if w.fuse == nil {
		w.fuse = NewFuse()
	}
	if w.ceiling == 0 || w.ceiling > MaxCounter {
		w.ceiling = MaxCounter
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// Err returns the fuse's error once the DB has failed, or nil.
func (w *Writer) Err() error { return w.fuse.Err() }

// Commit queues r and blocks until it is durable (or failed). On success
// each Append has its Counter and ArrivalMs set.
func (w *Writer) Commit(r *Request) error {
	if err := w.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.mu.closed {
		w.mu.Unlock()
		return Errorf(ErrClosed, "the DB is closed")
	}
	w.mu.queue = append(w.mu.queue, r)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.err
	case <-w.fuse.Blown():
		r.abandoned = true
		return w.fuse.Err()
	}
}

// Close stops the committer after the queued requests are done. After a
// failure it does not wait: the committer may be stuck inside Pebble for
// good.
func (w *Writer) Close() {
	w.mu.Lock()
	w.mu.closed = true
	w.mu.Unlock()
	close(w.quit)
	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-w.fuse.Blown():
	}
}

func (w *Writer) run() {
	defer w.wg.Done()
	var pending []*Request
	batch := w.db.NewBatch()
	defer func() { _ = batch.Close() }()
	for {
		w.mu.Lock()
		pending, w.mu.queue = w.mu.queue, pending[:0]
		closed := w.mu.closed
		w.mu.Unlock()
		if len(pending) == 0 {
			if closed {
				return
			}
			select {
			case <-w.kick:
			case <-w.quit:
			}
			continue
		}
		// Commit in slices bounded by maxBatchBytes.
		for start := 0; start < len(pending); {
			end, size := start, 0
			for end < len(pending) && (end == start || size < w.maxBatchBytes) {
				for i := range pending[end].Appends {
					a := &pending[end].Appends[i]
					size += len(a.Data) + len(a.PartitionKey) + 64
				}
				end++
			}
			w.commit(batch, pending[start:end])
			batch.Reset()
			start = end
		}
		clear(pending)
	}
}

// touched tracks one Log's changes within one commit.
type touched struct {
	log *Log
	// first and firstArrival are the Log's next counter and last arrival
	// before this commit, to undo the assignment if the commit fails.
	first        uint64
	firstArrival int64
	counter      uint64
	arrival      int64
	bytes        int64
	records      int64
	appended     bool
	trimTo       uint64
}

func (w *Writer) commit(batch *pebble.Batch, reqs []*Request) {
	finish := func(err error) {
		for _, r := range reqs {
			r.err = err
			r.done <- struct{}{}
		}
	}
	if err := w.Err(); err != nil {
		finish(err)
		return
	}
	now := w.now()
	var buf [8]touched
	seen := buf[:0]
	find := func(l *Log) *touched {
		for j := range seen {
			if seen[j].log == l {
				return &seen[j]
			}
		}
		seen = append(seen, touched{log: l, first: l.next, firstArrival: l.lastArrival})
		return &seen[len(seen)-1]
	}
	// undo forgets the counters this commit assigned: nothing of it was
	// applied.
	undo := func(err error) {
		for _, t := range seen {
			t.log.next, t.log.lastArrival = t.first, t.firstArrival
		}
		finish(err)
	}
	var top uint64 // highest counter assigned
	var trimVal [8]byte
	for _, r := range reqs {
		for _, tr := range r.Trims {
			t := find(tr.Log)
			from := max(tr.Log.TrimPoint(), t.trimTo)
			if tr.To <= from {
				continue
			}
			lower, upper := tr.Log.Span(from, tr.To-1)
			_ = batch.DeleteRange(lower, upper, nil)
			t.trimTo = tr.To
			t.bytes -= tr.Bytes
			t.records -= tr.Records
			binary.BigEndian.PutUint64(trimVal[:], tr.To)
			_ = batch.Set(ShardStateKey(tr.Log.Stream, uint32(tr.Log.ID), StateTrim), trimVal[:], nil)
		}

		for i := range r.Appends {
			a := &r.Appends[i]
			l := a.Log
			t := find(l)
			arrival := max(now, l.lastArrival)
			l.lastArrival = arrival
			a.Counter = l.next
			a.ArrivalMs = arrival
			l.next++
			vlen := ValueLen(a.PartitionKey, a.ExplicitHashKey != nil, a.Data)
			op := batch.SetDeferred(RecordKeyLen, vlen)
			PutRecordKey(op.Key, l.Stream, uint32(l.ID), a.Counter)
			PutValue(op.Value, arrival, a.PartitionKey, a.ExplicitHashKey, a.Data)
			op.Finish()
			top = max(top, a.Counter)
			t.counter, t.arrival, t.appended = a.Counter, arrival, true
			t.bytes += int64(vlen)
			t.records++
		}
	}
	var stats [16]byte
	for _, t := range seen {
		binary.BigEndian.PutUint64(stats[:8], uint64(t.log.Bytes.Load()+t.bytes))
		binary.BigEndian.PutUint64(stats[8:], uint64(t.log.Records.Load()+t.records))
		_ = batch.Set(ShardStateKey(t.log.Stream, uint32(t.log.ID), StateStats), stats[:], nil)
	}
	if top >= w.ceiling {
		if err := w.raiseCeiling(top); err != nil {
			undo(err)
			return
		}
	}
	if err := batch.Commit(w.wopts); err != nil {
		// A WAL failure never gets here (the engine's hooks blow the
		// fuse and never return into Pebble); this is Pebble refusing
		// the batch before applying it.
		undo(&Error{Kind: ErrWriteFailed, Msg: "Pebble refused the batch", Cause: err})
		return
	}
	if err := w.Err(); err != nil {
		// The DB failed while this batch was in Pebble (a NoSync commit
		// can return before its WAL write fails): publish nothing.
		finish(err)
		return
	}
	for _, t := range seen {
		t.log.Bytes.Add(t.bytes)
		t.log.Records.Add(t.records)
		if t.trimTo > 0 {
			t.log.SetTrimPoint(t.trimTo)
		}
		if t.appended {
			t.log.publish(t.counter, t.arrival)
		}
	}
	for _, r := range reqs {
		r.done <- struct{}{}
	}
}

// raiseCeiling makes the ceiling exceed top, durably, before any counter
// up to top is handed out.
func (w *Writer) raiseCeiling(top uint64) error {
	if top >= MaxCounter || w.raise == nil {
		return Errorf(ErrWriteFailed, "counter %d would reach the end of the counter space (%d)", top, uint64(MaxCounter))
	}
	c, err := w.raise(top + 1)
	if err != nil {
		return &Error{Kind: ErrWriteFailed, Msg: "the sequence-number ceiling could not be raised", Cause: err}
	}
	if c <= top {
		return Errorf(ErrWriteFailed, "the sequence-number ceiling %d does not exceed counter %d", c, top)
	}
	w.ceiling = c
	return nil
}
