package shard

import (
	"encoding/binary"
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
}

var requestPool = sync.Pool{New: func() any { return &Request{done: make(chan struct{}, 1)} }}

// GetRequest returns an empty Request from a pool; PutRequest returns it.
func GetRequest() *Request { return requestPool.Get().(*Request) }

// PutRequest returns r to the pool. r must not be used afterwards.
func PutRequest(r *Request) {
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
// A failed commit is sticky: every later request fails with the same error
// (wrapping ErrWriteFailed), and the records of the failed batch are never
// made visible in this process.
type Writer struct {
	db    *pebble.DB
	wopts *pebble.WriteOptions
	now   func() int64 // Unix ms

	mu struct {
		sync.Mutex
		queue  []*Request
		closed bool
	}
	kick chan struct{}
	quit chan struct{}
	wg   sync.WaitGroup
	err  atomic.Pointer[error]

	// MaxBatchBytes caps one commit's encoded size (default 64 MiB).
	maxBatchBytes int
}

// NewWriter starts a Writer committing to db. sync selects fsync'd
// commits. now returns the current time in Unix milliseconds.
func NewWriter(db *pebble.DB, sync bool, now func() int64) *Writer {
	w := &Writer{db: db, wopts: pebble.NoSync, now: now, kick: make(chan struct{}, 1), quit: make(chan struct{}), maxBatchBytes: 64 << 20}
	if sync {
		w.wopts = pebble.Sync
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// Err returns the sticky write error, or nil.
func (w *Writer) Err() error {
	if p := w.err.Load(); p != nil {
		return *p
	}
	return nil
}

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
	<-r.done
	return r.err
}

// Close stops the committer after the queued requests are done.
func (w *Writer) Close() {
	w.mu.Lock()
	w.mu.closed = true
	w.mu.Unlock()
	close(w.quit)
	w.wg.Wait()
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
	log      *Log
	counter  uint64
	arrival  int64
	bytes    int64
	records  int64
	appended bool
	trimTo   uint64
}

func (w *Writer) commit(batch *pebble.Batch, reqs []*Request) {
	if err := w.Err(); err != nil {
		for _, r := range reqs {
			r.err = err
			r.done <- struct{}{}
		}
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
		seen = append(seen, touched{log: l})
		return &seen[len(seen)-1]
	}
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
			t := find(l)
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
	if err := SafeCommit(batch, w.wopts); err != nil {
		err = w.fail(err)
		for _, r := range reqs {
			r.err = err
			r.done <- struct{}{}
		}
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
