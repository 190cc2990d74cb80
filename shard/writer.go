package shard

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"

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
	// encoded gets one send once the committer no longer reads the
	// Appends' data (copied into its batch, or the commit failed first):
	// CommitContext waits for it before leaving a commit in flight, so
	// the caller may reuse the data's memory once it returns.
	encoded chan struct{}
	// abandoned is set by Commit when it returned because the DB failed
	// while the Writer still held the request; such a request is never
	// reused (the stuck committer may still touch it).
	abandoned bool
}

var requestPool = sync.Pool{New: func() any { return &Request{done: make(chan struct{}, 1), encoded: make(chan struct{}, 1)} }}

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
	select {
	case <-r.encoded: // sent, and nobody waited for it
	default:
	}
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
	gen     uint64    // the commit being built (commitGen; see Log.wgen)
	seen    []touched // the Logs it touches
	order   []*Append // its records in key order
	keys    []slotKey // its Logs in key order
	// backlog counts the committed records not in their shards' persisted
	// counts (Log.unpersisted summed over the Logs the Writer committed
	// to; a deleted stream's stay in it, which only makes rewrites come
	// sooner); statsBacklog is WriterConfig.StatsBacklog.
	backlog      int64
	statsBacklog int64

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
	// batchHook, if set (tests), sees each record batch before it commits.
	batchHook func(*pebble.Batch)
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
	// StatsBacklog bounds the records left out of the persisted shard
	// counts before commits rewrite them (0: the default StatsBacklog;
	// negative: rewrite a shard's counts every StatsEvery of its records).
	StatsBacklog int64
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
	switch w.statsBacklog = cfg.StatsBacklog; {
	case w.statsBacklog == 0:
		w.statsBacklog = StatsBacklog
	case w.statsBacklog < 0:
		w.statsBacklog = 0
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
	if err := w.enqueue(r); err != nil {
		return err
	}
	select {
	case <-r.done:
		return r.err
	case <-w.fuse.Blown():
		r.abandoned = true
		return w.fuse.Err()
	}
}

// enqueue appends r to the committer's queue and wakes the committer, or
// returns ErrClosed once Close has begun.
func (w *Writer) enqueue(r *Request) error {
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
	return nil
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
				if end+1 < len(pending) { // the last one's size decides nothing
					for i := range pending[end].Appends {
						a := &pending[end].Appends[i]
						size += len(a.Data) + len(a.PartitionKey) + 64
					}
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

// slotKey is a touched Log's place in key order: stream and shard in one
// integer, and its index in Writer.seen.
type slotKey struct {
	key  uint64
	slot int
}

// commitGen numbers commits across all Writers, so a Log's wgen can
// never match a commit it is not part of, whichever Writer it was used
// with before.
var commitGen atomic.Uint64

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
	// appends is how many records this commit adds to the Log; pos is
	// where the next of them goes in the commit's key order.
	appends int
	pos     int
	// statsThrough is the through of the counts this commit persists (0:
	// none).
	statsThrough uint64
}

// StatsEvery is how many records a shard must have received since its
// persisted counts (StateStats) were last rewritten before a commit
// rewrites them (once the Writer's backlog allows it; see StatsBacklog).
const StatsEvery = 128

// StatsBacklog is the default WriterConfig.StatsBacklog: how many
// committed records, over all shards, may be left out of their shards'
// persisted counts before commits rewrite them. Every rewrite puts a key
// outside the records' key range into the memtable, and a memtable with
// such a key flushes into tables that overlap every older one, which cost
// the throughput profile about a third more CPU per record in compactions
// (kvstream bench putrecords); a backlog of 1 Mi records keeps most
// memtables free of them, and bounds what an open after a crash reads to
// count (about 1 Mi records plus StatsEvery per shard).
const StatsBacklog = 1 << 20

// find returns the Log's entry in w.seen, adding one at its first use in
// the commit being built (generation w.gen). The pointer is valid until
// the next find.
func (w *Writer) find(l *Log) *touched {
	if l.wgen == w.gen {
		return &w.seen[l.wslot]
	}
	l.wgen, l.wslot = w.gen, len(w.seen)
	w.seen = append(w.seen, touched{log: l, first: l.next, firstArrival: l.lastArrival})
	return &w.seen[len(w.seen)-1]
}

func (w *Writer) commit(batch *pebble.Batch, reqs []*Request) {
	released := false
	release := func() { // the requests' data is no longer read
		if released {
			return
		}
		released = true
		for _, r := range reqs {
			select {
			case r.encoded <- struct{}{}:
			default:
			}
		}
	}
	finish := func(err error) {
		release()
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
	w.gen = commitGen.Add(1)
	w.seen = w.seen[:0]
	defer func() { clear(w.seen); clear(w.order) }()
	// undo forgets the counters this commit assigned: nothing of it was
	// applied.
	undo := func(err error) {
		for _, t := range w.seen {
			t.log.next, t.log.lastArrival = t.first, t.firstArrival
		}
		finish(err)
	}
	var top uint64 // highest counter assigned
	var trimVal [8]byte
	n := 0
	for _, r := range reqs {
		for _, tr := range r.Trims {
			t := w.find(tr.Log)
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
		// Counters and arrival times in request order: per shard, the
		// order the records were queued in.
		for i := range r.Appends {
			a := &r.Appends[i]
			l := a.Log
			t := w.find(l)
			arrival := max(now, l.lastArrival)
			l.lastArrival = arrival
			a.Counter = l.next
			a.ArrivalMs = arrival
			l.next++
			top = max(top, a.Counter)
			t.counter, t.arrival, t.appended = a.Counter, arrival, true
			t.appends++
		}
		n += len(r.Appends)
	}
	// The records go into the batch in key order (stream, shard, counter):
	// Pebble inserts a batch into its memtable in batch order, and a
	// shard's consecutive records then land next to each other instead
	// of each searching the skiplist from the top, which is what makes a
	// batch spread over many shards cost more than one over few.
	w.keys = w.keys[:0]
	for i := range w.seen {
		l := w.seen[i].log
		w.keys = append(w.keys, slotKey{uint64(l.Stream)<<32 | uint64(uint32(l.ID)), i})
	}
	slices.SortFunc(w.keys, func(a, b slotKey) int { return cmp.Compare(a.key, b.key) })
	pos := 0
	for _, k := range w.keys {
		t := &w.seen[k.slot]
		t.pos = pos
		pos += t.appends
	}
	w.order = slices.Grow(w.order[:0], n)[:n]
	for _, r := range reqs {
		for i := range r.Appends {
			a := &r.Appends[i]
			t := &w.seen[a.Log.wslot]
			w.order[t.pos] = a
			t.pos++
		}
	}
	// Shard by shard: each Log's records are a run of w.order.
	pos = 0
	for _, k := range w.keys {
		t := &w.seen[k.slot]
		l := t.log
		var bytes int64
		for _, a := range w.order[pos : pos+t.appends] {
			vlen := ValueLen(a.PartitionKey, a.ExplicitHashKey != nil, a.Data)
			op := batch.SetDeferred(RecordKeyLen, vlen)
			PutRecordKey(op.Key, l.Stream, uint32(l.ID), a.Counter)
			PutValue(op.Value, a.ArrivalMs, a.PartitionKey, a.ExplicitHashKey, a.Data)
			op.Finish()
			bytes += int64(vlen)
		}
		pos += t.appends
		t.bytes += bytes
		t.records += int64(t.appends)
	}
	release()
	// The shard's counts are rewritten when the commit trims it, and
	// otherwise once StatsEvery records have arrived since the last
	// rewrite and the Writer's backlog of records left out of persisted
	// counts reaches statsBacklog: not at every commit, which would add a
	// key per shard touched to every batch (as many keys again as records,
	// for a batch spread over many shards), and not in most memtables (see
	// StatsBacklog). Open counts the records above the persisted value's
	// through by reading them.
	var stats [StatsLen]byte
	backlog := w.backlog
	for i := range w.seen {
		backlog += int64(w.seen[i].appends)
	}
	for _, k := range w.keys {
		t := &w.seen[k.slot]
		l := t.log
		if t.trimTo == 0 && backlog < w.statsBacklog {
			continue
		}
		// The last record's counter, not l.next-1: after a crash Open
		// moves next far up, and a clean restart after that continues
		// right after the last record again.
		last := l.Published()
		if t.appended {
			last = t.counter
		}
		if t.trimTo == 0 && last < l.statsThrough+StatsEvery {
			continue
		}
		PutStats(stats[:], l.Bytes.Load()+t.bytes, l.Records.Load()+t.records, last)
		_ = batch.Set(ShardStateKey(l.Stream, uint32(l.ID), StateStats), stats[:], nil)
		t.statsThrough = last
	}
	if top >= w.ceiling {
		if err := w.raiseCeiling(top); err != nil {
			undo(err)
			return
		}
	}
	if w.batchHook != nil {
		w.batchHook(batch)
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
	for _, t := range w.seen {
		t.log.Bytes.Add(t.bytes)
		t.log.Records.Add(t.records)
		if t.statsThrough != 0 {
			t.log.statsThrough = t.statsThrough
			w.backlog -= t.log.unpersisted
			t.log.unpersisted = 0
		} else {
			t.log.unpersisted += int64(t.appends)
			w.backlog += int64(t.appends)
		}
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
