package iterator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// Iterator reads one shard's records in sequence order. It sees every
// record visible when Next runs (it refreshes its view when it runs out),
// skips records past retention, and stops at the end of a closed shard.
//
// An Iterator is not safe for concurrent use. Record().Data is borrowed:
// it is valid until the next call to Next or Close (use Record.Clone to
// keep it). Close releases Pebble resources and is idempotent; Err may be
// called after Close. An Iterator made by a Gate fails with the gate's
// error (the engine's ErrClosed) once its DB closes, and never touches a
// closed Pebble.
type Iterator struct {
	gate   *Gate        // nil: not gated
	state  atomic.Int32 // gated: stateIdle, stateBusy, … (see Gate)
	r      pebble.Reader
	log    *shard.Log
	cutoff func() int64 // oldest retained arrival (Unix ms)
	next   uint64

	pit  *pebble.Iterator
	err  error
	done bool

	// cur is the record decoded last (c 0: none; counters start at 1):
	// its counter and arrival are the position a corruption error reports
	// as the last good record, and while v is set (Next's current record)
	// Record builds the shard.Record from it. Its value v is
	// borrowed from Pebble and its fields are kept as offsets into it
	// (shard.SplitValue), so a step stores one pointer, not one per field
	// (each costs a write barrier while the GC runs).
	cur struct {
		c               uint64
		ms              int64
		v               []byte
		pk, pkEnd, data int
	}

	// rec is the current record as Record returns it, built from cur on
	// Record's first call for the record (recSet) and then copied out: a
	// block move the caller's reads of the result can forward from, where
	// field-by-field stores of a returned struct stall them, and Record
	// inlines. rec.PartitionKey is copied into pkSlab, a chunk shared by
	// the keys of many records (see ownKey), so a record costs no
	// allocation of its own.
	rec    shard.Record
	recSet bool
	pkSlab []byte // pkSlab[:pkUsed] holds keys handed out
	pkUsed int
}

// New returns an Iterator over l starting at counter next. cutoff, if not
// nil, returns the oldest retained arrival time in Unix ms.
func New(r pebble.Reader, l *shard.Log, next uint64, cutoff func() int64) *Iterator {
	return &Iterator{r: r, log: l, next: next, cutoff: cutoff}
}

// Next advances to the next visible record and reports whether there is
// one. It returns false at the end of the visible records (more may come:
// see Wait) and on error (see Err).
func (it *Iterator) Next() bool {
	if !it.enter() {
		return false
	}
	defer it.leave()
	if !it.advance() {
		return false
	}
	return it.decode()
}

// advance positions the Pebble iterator at the next visible record and
// reports whether there is one; decode then decodes it.
func (it *Iterator) advance() bool {
	if it.err != nil || it.done {
		return false
	}
	for {
		if it.pit != nil {
			if it.pit.Next() {
				return true
			}
			if err := it.pit.Error(); err != nil {
				it.setErr(err)
				return false
			}
		}
		pub := it.log.Published()
		if it.next > pub {
			return false
		}
		if it.open(pub) {
			return true
		}
		if it.err != nil {
			return false
		}
		// Records between next and pub were trimmed away.
		it.next = pub + 1
	}
}

// open (re)creates the Pebble iterator over [max(next, trim), pub] and
// positions it at the first retained record, reporting whether there is
// one (errors go to it.err). Records past retention are skipped: if the
// first record is retained, as it is unless the reader is behind the
// retention period, nothing more is needed; otherwise a binary search
// (Log.SeekArrival) finds the first retained record.
func (it *Iterator) open(pub uint64) bool {
	if it.pit != nil {
		err := it.pit.Close()
		it.pit = nil
		if err != nil {
			it.setErr(err)
			return false
		}
	}
	from := max(it.next, it.log.TrimPoint())
	if from > pub {
		it.next = from
		from = pub + 1
	}
	lower, upper := it.log.Span(from, pub)
	pit, err := it.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		it.setErr(err)
		return false
	}
	it.pit = pit
	if !pit.First() {
		it.setErr(pit.Error())
		return false
	}
	if it.cutoff == nil {
		return true
	}
	cut := it.cutoff()
	if v, err := pit.ValueAndErr(); err == nil {
		if a, ok := shard.ValueArrival(v); ok && a >= cut {
			return true
		}
	}
	c, err := it.log.SeekArrival(it.r, from, cut)
	if err != nil {
		it.setErr(err)
		return false
	}
	if c <= pub && pit.SeekGE(shard.AppendRecordKey(lower[:0:0], it.log.Stream, uint32(it.log.ID), c)) {
		return true
	}
	// Nothing retained up to pub: drop the iterator so Next does not
	// step past the records it skipped.
	it.setErr(errors.Join(pit.Error(), pit.Close()))
	it.pit = nil
	return false
}

// setErr records err (nil: no error) as the error that stopped the
// iterator, classified: Pebble corruption becomes a
// *shard.CorruptionError at the iterator's position, so callers see
// ErrCorruption with the stream, shard and counter.
func (it *Iterator) setErr(err error) {
	if err == nil {
		it.err = nil
		return
	}
	err = shard.ReadError(it.log, it.next, err)
	var ce *shard.CorruptionError
	if errors.As(err, &ce) && ce.After.Counter == 0 && it.cur.c != 0 && it.cur.c < ce.Counter {
		ce.After = it.log.Seq(it.cur.c, it.cur.ms)
	}
	it.err = err
}

// decode decodes the record at the Pebble iterator's position into cur
// (its value borrowed from Pebble; Record builds the shard.Record from it
// when asked), and advances it.next past it. Errors go to it.err.
func (it *Iterator) decode() bool {
	_, _, v, pk, pkEnd, data, ok := it.split()
	if !ok {
		return false
	}
	cur := &it.cur
	cur.v, cur.pk, cur.pkEnd, cur.data = v, pk, pkEnd, data
	it.recSet = false
	return true
}

// split decodes the record at the Pebble iterator's position as decode
// does, setting cur's counter and arrival and advancing it.next past it,
// and returns its value and the offsets of its fields (see
// shard.SplitValue) without storing them. Errors go to it.err.
func (it *Iterator) split() (c uint64, ms int64, v []byte, pk, pkEnd, data int, ok bool) {
	_, _, c, kok := shard.DecodeRecordKey(it.pit.Key())
	v, err := it.pit.ValueAndErr()
	if err != nil {
		it.setErr(err)
		return 0, 0, nil, 0, 0, 0, false
	}
	ms, pk, pkEnd, data, vok := shard.SplitValue(v)
	if !kok || !vok {
		it.setErr(&shard.CorruptionError{Stream: it.log.StreamName, StreamID: it.log.Stream, Shard: it.log.ID, Counter: c,
			Cause: fmt.Errorf("record %d (key %x) does not decode", c, it.pit.Key())})
		return 0, 0, nil, 0, 0, 0, false
	}
	cur := &it.cur
	cur.c, cur.ms = c, ms
	it.next = c + 1
	return c, ms, v, pk, pkEnd, data, true
}

// Record returns the current record. Its Data is valid until the next
// call to Next, Wait or Close, and until the DB closes; Record called
// after Wait returns a copy that stays valid. Do not call it after the DB
// closed: the record is built from Pebble's memory on the first call.
//
// Its PartitionKey is the caller's to keep, but may share one allocation
// of at most pkSlabSize bytes with the keys of neighbouring records, so
// keeping one key can keep that much memory.
func (it *Iterator) Record() shard.Record {
	if !it.recSet {
		it.build()
	}
	return it.rec
}

// build makes rec the current record (the zero Record if there is none):
// the work Record does once per record.
func (it *Iterator) build() {
	it.recSet = true
	cur, r := &it.cur, &it.rec
	if cur.v == nil {
		*r = shard.Record{}
		return
	}
	v := cur.v
	r.ShardID = it.log.ID
	r.SequenceNumber = it.log.Seq(cur.c, cur.ms)
	r.PartitionKey = it.ownKey(v[cur.pk:cur.pkEnd])
	if cur.data > cur.pkEnd {
		r.ExplicitHashKey = shard.ValueHashKey(v, cur.pkEnd)
	} else if r.ExplicitHashKey != nil {
		r.ExplicitHashKey = nil
	}
	r.Data = v[cur.data:len(v):len(v)]
	r.Timestamp = time.UnixMilli(cur.ms)
}

// pkSlabSize is the size of the chunks ownKey copies partition keys into:
// one allocation per 256 keys of 16 bytes instead of one per key.
const pkSlabSize = 4 << 10

// ownKey returns b as a string the iterator never writes to again. Short
// keys are appended to pkSlab (never overwritten: a full chunk is
// replaced, not reused), longer ones get their own allocation.
func (it *Iterator) ownKey(b []byte) string {
	if len(b) > pkSlabSize/16 {
		return string(b)
	}
	if len(it.pkSlab)-it.pkUsed < len(b) {
		it.pkSlab, it.pkUsed = make([]byte, pkSlabSize), 0
	}
	k := it.pkSlab[it.pkUsed : it.pkUsed+copy(it.pkSlab[it.pkUsed:], b)]
	it.pkUsed += len(k)
	return unsafe.String(unsafe.SliceData(k), len(k))
}

// NextCounter returns the counter of the next record to read: the
// position an iterator token or checkpoint should carry.
func (it *Iterator) NextCounter() uint64 { return it.next }

// Err returns the error that stopped Next, if any.
func (it *Iterator) Err() error { return it.err }

// ShardEnded reports whether the shard is closed and every record in it
// has been read: the Kinesis SHARD_END condition.
func (it *Iterator) ShardEnded() bool {
	return it.log.IsClosed() && it.next > it.log.Published()
}

// Caught up reports whether the iterator has read every visible record.
func (it *Iterator) CaughtUp() bool { return it.next > it.log.Published() }

// Wait blocks until a record after the current position is visible, the
// shard is closed, its DB closes (Next then reports why), or ctx ends. It is woken by the commit path, with no
// polling. Wait releases the iterator's Pebble snapshot so a waiting tail
// reader pins nothing.
func (it *Iterator) Wait(ctx context.Context) error {
	if !it.enter() {
		return nil // the DB closed: Next reports it
	}
	it.release()
	return it.log.Wait(ctx, it.next-1)
}

// release is Wait's call: it closes the Pebble iterator, inside the gate.
// The current record is built and its Data copied first, so Record stays
// valid after Wait without reading memory Pebble has released.
func (it *Iterator) release() {
	defer it.leave()
	callHook()
	if it.cur.v != nil {
		if !it.recSet {
			it.build()
		}
		it.rec.Data = slices.Clip(bytes.Clone(it.rec.Data))
		it.cur.v = nil
	}
	if it.pit != nil {
		if err := it.pit.Close(); err != nil && it.err == nil {
			it.setErr(err)
		}
		it.pit = nil
	}
}

// All returns the remaining visible records as a range-over-func
// sequence. Check Err after the loop. Data is borrowed as for Record.
func (it *Iterator) All() iter.Seq[shard.Record] {
	return func(yield func(shard.Record) bool) {
		for it.Next() {
			if !yield(it.Record()) {
				return
			}
		}
	}
}

// Close releases the iterator and returns the error releasing its Pebble
// iterator returned, unless Err already reports an error (then nil; Err
// keeps it). It is idempotent: later calls return nil.
// Closing an iterator whose DB closed first returns nil (the DB released
// it).
func (it *Iterator) Close() error {
	if !it.enter() {
		// Closed before, or the gate closed first and released the
		// Pebble iterator.
		it.done = true
		return nil
	}
	// A no-op once closeGated has ended the call; if a panic cuts the
	// call short, it ends it, so the gate's Close does not wait for it
	// forever.
	defer it.leave()
	callHook()
	it.done = true
	var err error
	if it.pit != nil {
		err = it.pit.Close()
		it.pit = nil
	}
	if it.gate != nil {
		it.closeGated() // instead of leave: the Iterator is gone
	}
	if err == nil || it.err != nil {
		return nil // nothing new: Err already reports the iterator's error
	}
	it.setErr(err)
	return it.err
}

// ReadPage reads up to maxRecords records and about maxBytes of data from
// it into records, copying every payload into arenas so the result owns
// its memory. The record slice is sized once from the visible records and
// the first record's size, and arenas are sized for the rest of the page
// (4 KiB to 1 MiB), so a page costs a few allocations, not one per
// record; each record is decoded straight into its slot of the page. It
// returns the records and whether the page stopped at a limit (more may
// be visible). It leaves it without a current record (Record returns the
// zero Record).
func ReadPage(it *Iterator, maxRecords, maxBytes int) ([]shard.Record, bool) {
	if !it.enter() {
		return nil, false
	}
	defer it.leave()
	var recs []shard.Record
	var arena []byte
	size := 0
	it.cur.v, it.recSet = nil, false // no current record for Record
	for len(recs) < maxRecords && it.advance() {
		c, ms, v, pk0, pkEnd, d0, ok := it.split()
		if !ok {
			break
		}
		pkb, data := v[pk0:pkEnd], v[d0:]
		n := len(pkb) + len(data)
		if size+n > maxBytes && len(recs) > 0 {
			// Undo: leave this record for the next page.
			it.next = c
			it.pit = closeQuiet(it.pit)
			return recs, true
		}
		size += n
		if recs == nil {
			recs = make([]shard.Record, 0, pageCap(it, c, n, maxRecords, maxBytes))
		}
		if cap(arena)-len(arena) < n {
			want := n * (cap(recs) - len(recs))
			arena = newArena(max(n, min(1<<20, max(4<<10, want), maxBytes-size+n)))
		}
		start := len(arena)
		arena = append(arena, pkb...)
		arena = append(arena, data...)
		pk := arena[start : start+len(pkb)]
		// Fill the zeroed slot field by field: no record-sized copy.
		if len(recs) == cap(recs) {
			recs = append(recs, shard.Record{})
		} else {
			recs = recs[:len(recs)+1]
		}
		r := &recs[len(recs)-1]
		r.ShardID = it.log.ID
		r.SequenceNumber = it.log.Seq(c, ms)
		r.PartitionKey = unsafe.String(unsafe.SliceData(pk), len(pk))
		if d0 > pkEnd {
			r.ExplicitHashKey = shard.ValueHashKey(v, pkEnd)
		}
		r.Data = arena[start+len(pk) : len(arena) : len(arena)]
		r.Timestamp = time.UnixMilli(ms)
	}
	return recs, len(recs) == maxRecords
}

// pageCap estimates a page's record count: no more than maxRecords, the
// records visible from counter first on, or maxBytes worth of records the
// size (n bytes) of the first one.
func pageCap(it *Iterator, first uint64, n, maxRecords, maxBytes int) int {
	c := maxRecords
	if pub := it.log.Published(); pub >= first && pub-first < uint64(c) {
		c = int(pub-first) + 1
	}
	if n > 0 {
		c = min(c, maxBytes/n+1)
	}
	return max(c, 1)
}

// newArena returns an empty slice with room for at least n bytes, whose
// memory is not cleared first: strings.Builder.Grow allocates without
// zeroing, and a page's arena is written before it is read. ReadPage
// appends to it only within its capacity (a full arena is replaced, never
// grown) and hands out slices whose capacity ends at their own bytes, so
// none of the memory's old contents is ever reachable by a caller.
func newArena(n int) []byte {
	var b strings.Builder
	b.Grow(n)
	b.WriteByte(0) // so the buffer's address is that of its first byte
	p := unsafe.StringData(b.String())
	return unsafe.Slice(p, b.Cap())[:0]
}

func closeQuiet(p *pebble.Iterator) *pebble.Iterator {
	if p != nil {
		_ = p.Close()
	}
	return nil
}
