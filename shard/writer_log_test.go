package shard_test

// Unit tests of the group-commit core: the Writer (ordering, group
// commit, trims, failure, Close) and the Log (publication and wake-ups).

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// tickClock returns a Now that advances one millisecond per call, so each
// commit (which reads the clock once) has its own arrival time.
func tickClock() (now func() int64, calls func() int64) {
	var n atomic.Int64
	return func() int64 { return 1000 + n.Add(1) - 1 }, n.Load
}

// stored returns the counters and arrivals of l's records in Pebble, in
// key order.
func stored(t *testing.T, db *pebble.DB, l *shard.Log) (counters []uint64, arrivals []int64) {
	t.Helper()
	lower, upper := l.Span(1, shard.MaxCounter-1)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	require.NoError(t, err)
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		_, _, c, kok := shard.DecodeRecordKey(it.Key())
		a, aok := shard.ValueArrival(it.Value())
		require.True(t, kok && aok)
		counters = append(counters, c)
		arrivals = append(arrivals, a)
	}
	require.NoError(t, it.Error())
	return counters, arrivals
}

// Concurrent writers to one shard get gap-free counters; each writer's
// records are ordered as it committed them; what Pebble holds matches
// what was acknowledged, with arrival times that never decrease.
func TestWriterOrdering(t *testing.T) {
	db := openMem(t)
	now, _ := tickClock()
	w := shard.NewWriter(db, shard.WriterConfig{Now: now})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 0, 0, 0)
	const writers, each = 8, 50
	got := make([][]uint64, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				cs, err := appendN(w, l, 1+i%3)
				require.NoError(t, err)
				got[g] = append(got[g], cs...)
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	total := 0
	for _, cs := range got {
		for i, c := range cs {
			require.False(t, seen[c], "counter %d handed out twice", c)
			seen[c] = true
			if i > 0 {
				require.Greater(t, c, cs[i-1], "a writer's later commit got a lower counter")
			}
		}
		total += len(cs)
	}
	require.Equal(t, uint64(total), l.Published())
	counters, arrivals := stored(t, db, l)
	require.Len(t, counters, total)
	for i, c := range counters {
		require.Equal(t, uint64(i+1), c, "gap-free")
		if i > 0 {
			require.GreaterOrEqual(t, arrivals[i], arrivals[i-1], "arrival went back")
		}
	}
	require.Equal(t, arrivals[len(arrivals)-1], l.PublishedArrival())
	require.Equal(t, int64(total), l.Records.Load())
}

// Requests that arrive while a commit is in flight share the next commit:
// one clock reading, one arrival time, consecutive counters.
func TestWriterGroupCommit(t *testing.T) {
	db := openMem(t)
	now, calls := tickClock()
	parked, release := make(chan struct{}), make(chan struct{})
	first := true
	w := shard.NewWriter(db, shard.WriterConfig{Now: now, Ceiling: 2, Raise: func(min uint64) (uint64, error) {
		if first { // the first commit parks here, on the committer
			first = false
			close(parked)
			<-release
		}
		return min + 1000, nil
	}})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 0, 0, 0)
	other := shard.NewLog(1, 1, 1, 0, 0, 0)

	aDone := make(chan error, 1)
	go func() { _, err := appendN(w, l, 2); aDone <- err }() // reaches the ceiling
	<-parked
	const queued = 3
	type result struct {
		reqs []shard.Append
		err  error
	}
	results := make(chan result, queued)
	for i := range queued {
		go func() {
			r := shard.GetRequest()
			log := l
			if i == 1 {
				log = other // a second shard in the same commit
			}
			r.Appends = append(r.Appends, shard.Append{Log: log, PartitionKey: "k", Data: []byte("x")})
			err := w.Commit(r)
			results <- result{append([]shard.Append(nil), r.Appends...), err}
			shard.PutRequest(r)
		}()
	}
	for w.QueueLen() < queued {
		runtime.Gosched()
	}
	close(release)
	require.NoError(t, <-aDone)
	arrivals := map[int64]int{}
	var onL []uint64
	for range queued {
		r := <-results
		require.NoError(t, r.err)
		arrivals[r.reqs[0].ArrivalMs]++
		if r.reqs[0].Log == l {
			onL = append(onL, r.reqs[0].Counter)
		} else {
			require.Equal(t, uint64(1), r.reqs[0].Counter)
		}
	}
	require.Equal(t, map[int64]int{1001: queued}, arrivals, "the queued requests committed together, after the first commit")
	require.Equal(t, int64(2), calls(), "two commits")
	require.ElementsMatch(t, []uint64{3, 4}, onL)
	require.Equal(t, uint64(4), l.Published())
	require.Equal(t, uint64(1), other.Published())
}

// A trim deletes records below its point, moves the trim point and the
// counts, in the same commit as appends.
func TestWriterTrim(t *testing.T) {
	db := openMem(t)
	now, _ := tickClock()
	w := shard.NewWriter(db, shard.WriterConfig{Now: now})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 0, 0, 1)
	_, err := appendN(w, l, 10)
	require.NoError(t, err)
	per := l.Bytes.Load() / 10
	r := shard.GetRequest()
	r.Trims = append(r.Trims, shard.Trim{Log: l, To: 6, Records: 5, Bytes: 5 * per})
	r.Appends = append(r.Appends, shard.Append{Log: l, PartitionKey: "k", Data: []byte("x")})
	require.NoError(t, w.Commit(r))
	shard.PutRequest(r)
	require.Equal(t, uint64(6), l.TrimPoint())
	require.Equal(t, uint64(11), l.Published())
	counters, _ := stored(t, db, l)
	require.Equal(t, []uint64{6, 7, 8, 9, 10, 11}, counters)
	require.Equal(t, int64(6), l.Records.Load())
	require.Equal(t, 6*per, l.Bytes.Load())
}

// A batch Pebble refuses fails whole: nothing becomes visible, no counter
// is used, and the Writer keeps working.
func TestWriterRefusedBatch(t *testing.T) {
	fs := vfs.NewMem()
	popts := &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatNewest, Logger: quiet{}}
	db, err := pebble.Open("db", popts)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	ro := *popts
	ro.ReadOnly = true
	rdb, err := pebble.Open("db", &ro)
	require.NoError(t, err)
	defer rdb.Close()
	now, _ := tickClock()
	w := shard.NewWriter(rdb, shard.WriterConfig{Now: now})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 4, 900, 0) // four records already
	_, err = appendN(w, l, 3)
	require.ErrorIs(t, err, shard.ErrWriteFailed)
	require.NoError(t, w.Err(), "a refused batch is not a storage failure")
	require.Equal(t, uint64(4), l.Published())
	require.Equal(t, uint64(5), l.Next(), "no counter was used")
	require.Equal(t, int64(0), l.Records.Load())
}

// Close lets queued requests finish; later commits fail with ErrClosed.
func TestWriterClose(t *testing.T) {
	db := openMem(t)
	now, _ := tickClock()
	w := shard.NewWriter(db, shard.WriterConfig{Now: now})
	l := shard.NewLog(1, 0, 1, 0, 0, 0)
	_, err := appendN(w, l, 2)
	require.NoError(t, err)
	w.Close()
	_, err = appendN(w, l, 1)
	require.ErrorIs(t, err, shard.ErrClosed)
	require.Equal(t, uint64(2), l.Published())
}

// Log.Wait and Log.Changed are woken by a commit that publishes a record,
// by Close, and by ctx; a record already visible returns at once.
func TestLogWakeUps(t *testing.T) {
	db := openMem(t)
	now, _ := tickClock()
	w := shard.NewWriter(db, shard.WriterConfig{Now: now})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 0, 0, 0)
	ctx := context.Background()

	ch := l.Changed()
	woke := make(chan error, 1)
	go func() { woke <- l.Wait(ctx, 0) }()
	select {
	case <-ch:
		t.Fatal("Changed closed before any publish")
	case err := <-woke:
		t.Fatalf("Wait returned before any publish: %v", err)
	default:
	}
	_, err := appendN(w, l, 1)
	require.NoError(t, err)
	<-ch // closed by the publish
	require.NoError(t, <-woke)
	require.NoError(t, l.Wait(ctx, 0), "a visible record: no wait")

	// A commit to another shard does not wake this one's waiters.
	other := shard.NewLog(1, 1, 1, 0, 0, 0)
	ch = l.Changed()
	_, err = appendN(w, other, 1)
	require.NoError(t, err)
	select {
	case <-ch:
		t.Fatal("woken by another shard's commit")
	default:
	}

	// ctx ends a wait.
	cctx, cancel := context.WithCancel(ctx)
	go func() { woke <- l.Wait(cctx, 1) }()
	cancel()
	require.ErrorIs(t, <-woke, context.Canceled)

	// Close wakes waiters and ends later waits at once.
	go func() { woke <- l.Wait(ctx, 1) }()
	l.Close()
	<-ch
	require.NoError(t, <-woke)
	require.True(t, l.IsClosed())
	require.NoError(t, l.Wait(ctx, 100))
}

// Counters continue after a Log recovered with records and a trim point;
// ContinueAt only moves the next counter up.
func TestLogRecoveredState(t *testing.T) {
	db := openMem(t)
	now, _ := tickClock()
	w := shard.NewWriter(db, shard.WriterConfig{Now: now})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 41, 5000, 30)
	require.Equal(t, uint64(41), l.Published())
	require.Equal(t, int64(5000), l.PublishedArrival())
	require.False(t, l.Empty())
	cs, err := appendN(w, l, 2)
	require.NoError(t, err)
	require.Equal(t, []uint64{42, 43}, cs)
	_, arrivals := stored(t, db, l)
	require.Equal(t, []int64{5000, 5000}, arrivals, "arrival never goes back below the recovered one")
	l.ContinueAt(10)
	require.Equal(t, uint64(44), l.Next())
	l.ContinueAt(100)
	cs, err = appendN(w, l, 1)
	require.NoError(t, err)
	require.Equal(t, []uint64{100}, cs)

	empty := shard.NewLog(1, 2, 1, 7, 0, 8) // every record trimmed
	require.True(t, empty.Empty())
}
