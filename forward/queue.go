package forward

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/kvstream/kvstream/engine"
)

// pending is one local record on its way upstream, or a barrier.
type pending struct {
	entry types.PutRecordsRequestEntry
	seq   engine.SequenceNumber
	at    time.Time // local arrival time
	size  int       // data plus partition key, as PutRecords counts
	// barrier, when set, marks a point in the queue and carries no
	// record: the sender closes it once everything before it is
	// acknowledged.
	barrier chan struct{}
}

func newPending(r engine.Record, lastKey *string) pending {
	key := lastKey
	if key == nil || *key != r.PartitionKey {
		key = aws.String(r.PartitionKey)
	}
	p := pending{
		entry: types.PutRecordsRequestEntry{Data: r.Data, PartitionKey: key},
		seq:   r.SequenceNumber,
		at:    r.Timestamp,
		size:  len(r.Data) + len(r.PartitionKey),
	}
	if r.ExplicitHashKey != nil {
		p.entry.ExplicitHashKey = aws.String(r.ExplicitHashKey.String())
	}
	return p
}

// queue buffers one local shard's records between the reader and the
// shard's sender, bounded in records and bytes so an unreachable upstream
// holds a bounded amount of memory (the rest waits on disk). Records the
// sender took and the upstream has not acknowledged yet (the batch being
// filled or in flight) are accounted here too, for Stats.
type queue struct {
	maxRecords, maxBytes int

	ready chan struct{} // kicked (buffered 1) when an item is added
	space chan struct{} // kicked (buffered 1) when items are taken

	mu struct {
		sync.Mutex
		items   []pending // FIFO
		records int       // records in items (barriers excluded)
		bytes   int

		// The sender's current batch, taken but not acknowledged.
		inflightRecords int
		inflightBytes   int
		inflightOldest  time.Time
	}
}

func newQueue(maxRecords, maxBytes int) *queue {
	return &queue{
		maxRecords: maxRecords,
		maxBytes:   maxBytes,
		ready:      make(chan struct{}, 1),
		space:      make(chan struct{}, 1),
	}
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push appends p, waiting while the queue is full (an empty queue takes
// any record, however large), and runs pushed under the queue's lock once
// p is in, so Stats sees p either in memory or still on disk. It returns
// ctx's error if ctx ends first.
func (q *queue) push(ctx context.Context, p pending, pushed func()) error {
	for {
		q.mu.Lock()
		if q.mu.records == 0 || (q.mu.records < q.maxRecords && q.mu.bytes+p.size <= q.maxBytes) {
			q.mu.items = append(q.mu.items, p)
			q.mu.records++
			q.mu.bytes += p.size
			if pushed != nil {
				pushed()
			}
			q.mu.Unlock()
			kick(q.ready)
			return nil
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pushBarrier appends a barrier, ignoring the bounds, and returns the
// channel the sender closes once every record pushed before it is
// acknowledged upstream.
func (q *queue) pushBarrier() <-chan struct{} {
	ch := make(chan struct{})
	q.mu.Lock()
	q.mu.items = append(q.mu.items, pending{barrier: ch})
	q.mu.Unlock()
	kick(q.ready)
	return ch
}

// take moves records from the head of the queue to batch (holding bytes
// so far) while they fit in maxRecords and maxBytes; an empty batch takes
// the first record whatever its size. It stops at a barrier: when batch
// is empty the barrier is removed and returned, otherwise it stays for
// the next take. cut reports that batch must be sent now: it is full, the
// next record does not fit, or a barrier follows.
func (q *queue) take(batch []pending, bytes, maxRecords, maxBytes int) (_ []pending, _ int, cut bool, barrier chan struct{}) {
	q.mu.Lock()
	n := 0
	for n < len(q.mu.items) {
		p := q.mu.items[n]
		if p.barrier != nil {
			if len(batch) == 0 {
				barrier = p.barrier
				n++
			}
			cut = true
			break
		}
		if len(batch) == maxRecords || (len(batch) > 0 && bytes+p.size > maxBytes) {
			cut = true
			break
		}
		batch = append(batch, p)
		bytes += p.size
		q.mu.records--
		q.mu.bytes -= p.size
		if q.mu.inflightRecords == 0 {
			q.mu.inflightOldest = p.at
		}
		q.mu.inflightRecords++
		q.mu.inflightBytes += p.size
		n++
	}
	if len(batch) == maxRecords {
		cut = true
	}
	clear(q.mu.items[:n]) // drop references to the records' data
	if n == len(q.mu.items) {
		q.mu.items = q.mu.items[:0] // reuse the array
	} else {
		q.mu.items = q.mu.items[n:]
	}
	q.mu.Unlock()
	if n > 0 {
		kick(q.space)
	}
	return batch, bytes, cut, barrier
}

// acked forgets the records taken since the last call: the upstream
// acknowledged them.
func (q *queue) acked() {
	q.mu.Lock()
	q.mu.inflightRecords, q.mu.inflightBytes, q.mu.inflightOldest = 0, 0, time.Time{}
	q.mu.Unlock()
}

// buffered returns the records held in memory (queued and in flight), their
// bytes and the arrival time of the oldest (zero if none). It runs also
// (if not nil) under the queue's lock, so what also reads of the shard's
// position matches what is in memory (push advances it under the lock).
func (q *queue) buffered(also func()) (records, bytes int, oldest time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if also != nil {
		also()
	}
	records = q.mu.records + q.mu.inflightRecords
	bytes = q.mu.bytes + q.mu.inflightBytes
	oldest = q.mu.inflightOldest
	if oldest.IsZero() {
		for _, p := range q.mu.items {
			if p.barrier == nil {
				oldest = p.at
				break
			}
		}
	}
	return records, bytes, oldest
}
