package iterator_test

// The Gate's contract: Close waits for calls of gated Iterators in flight,
// never for an Iterator between calls, closes every open Pebble iterator
// (so the DB then closes without leaked iterators), and every later call
// fails with the gate's error instead of touching Pebble.

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

var errGateClosed = errors.New("gate closed")

// gateDB is an in-memory Pebble holding n records of shard 0 of stream 1,
// and its Log.
func gateDB(t testing.TB, n int) (*pebble.DB, *shard.Log) {
	t.Helper()
	pdb, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebble{}})
	require.NoError(t, err)
	b := pdb.NewBatch()
	for c := 1; c <= n; c++ {
		pk, data := fmt.Sprintf("key-%d", c), []byte(fmt.Sprintf("data-%d", c))
		v := make([]byte, shard.ValueLen(pk, false, data))
		shard.PutValue(v, int64(c), pk, nil, data)
		require.NoError(t, b.Set(shard.AppendRecordKey(nil, 1, 0, uint64(c)), v, nil))
	}
	require.NoError(t, b.Commit(pebble.Sync))
	return pdb, shard.NewLog(1, 0, 1, uint64(n), int64(n), 0)
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// guarded receives from ch; the deadline only guards against a hang.
func guarded[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("blocked: %s after a minute", what)
		var zero T
		return zero
	}
}

// An Iterator between calls, holding an open Pebble iterator, does not
// hold Close up: Close releases it, the DB closes cleanly, and its later
// calls fail with the gate's error.
func TestGateCloseDoesNotWaitForIdleIterator(t *testing.T) {
	pdb, l := gateDB(t, 10)
	var g iterator.Gate
	it := g.New(pdb, l, 1, nil)
	require.True(t, it.Next()) // holds an open Pebble iterator
	rec := it.Record()
	never := g.New(pdb, l, 1, nil) // never used

	done := make(chan error, 1)
	go func() { done <- g.Close(errGateClosed) }()
	require.NoError(t, guarded(t, done, "Close waits for an idle Iterator"))
	require.NoError(t, pdb.Close(), "no Pebble iterator left open")

	// The current record stays (its Data is borrowed from Pebble, which
	// is closed: not read here).
	require.Equal(t, rec.SequenceNumber, it.Record().SequenceNumber)
	require.Equal(t, "key-1", it.Record().PartitionKey)
	require.False(t, it.Next())
	require.ErrorIs(t, it.Err(), errGateClosed)
	require.NoError(t, it.Wait(t.Context()))
	require.NoError(t, it.Close())
	require.False(t, never.Next())
	require.ErrorIs(t, never.Err(), errGateClosed)
	require.NoError(t, never.Close())

	late := g.New(pdb, l, 1, nil)
	require.False(t, late.Next(), "an Iterator made after Close")
	require.ErrorIs(t, late.Err(), errGateClosed)
	require.NoError(t, late.Close())
}

// Close waits for a call in flight: the call finishes with Pebble open
// and closes its own Pebble iterator, then Close returns.
func TestGateCloseWaitsForCallInFlight(t *testing.T) {
	pdb, l := gateDB(t, 10)
	var g iterator.Gate
	inCall, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	// cutoff runs inside Next (when the Pebble iterator opens): it parks
	// the call there.
	cutoff := func() int64 {
		once.Do(func() {
			close(inCall)
			<-release
		})
		return 0
	}
	it := g.New(pdb, l, 1, cutoff)
	next := make(chan bool, 1)
	go func() { next <- it.Next() }()
	<-inCall

	waiting := make(chan int, 1)
	iterator.SetGateOnWait(&g, func(n int) { waiting <- n })
	done := make(chan error, 1)
	go func() { done <- g.Close(errGateClosed) }()
	require.Equal(t, 1, guarded(t, waiting, "Close did not see the busy Iterator"))
	select {
	case err := <-done:
		t.Fatalf("Close returned (%v) while a call was in flight", err)
	default:
	}
	close(release)
	require.True(t, guarded(t, next, "Next"), "the call in flight completes")
	require.NoError(t, guarded(t, done, "Close"))
	require.NoError(t, pdb.Close(), "the call closed its Pebble iterator for Close")

	require.Equal(t, "key-1", it.Record().PartitionKey)
	require.False(t, it.Next())
	require.ErrorIs(t, it.Err(), errGateClosed)
	require.NoError(t, it.Close())
}

// Iterators read, wait and close on several goroutines while the gate
// closes: every call returns records or the gate's error, none panics,
// and no Pebble iterator is left open. Run it with -race.
func TestGateCloseRacingIterators(t *testing.T) {
	for round := range 20 {
		pdb, l := gateDB(t, 200)
		var g iterator.Gate
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; ; i++ {
					it := g.New(pdb, l, 1, func() int64 { return 0 })
					n := 0
					for it.Next() {
						require.Equal(t, fmt.Sprintf("data-%d", n+1), string(it.Record().Data))
						n++
						if w == 0 && n%50 == 0 && n < 200 {
							require.NoError(t, it.Wait(t.Context())) // releases the Pebble iterator
						}
					}
					err := it.Err()
					var pages []shard.Record
					if w == 1 {
						pages, _ = iterator.ReadPage(it, 10, 1<<20)
					}
					require.Empty(t, pages, "nothing left after the end")
					if w != 2 || i%2 == 0 { // worker 2 leaves every other Iterator open
						require.NoError(t, it.Close())
					}
					if err != nil {
						require.ErrorIs(t, err, errGateClosed, "round %d", round)
						return
					}
					require.Equal(t, 200, n)
				}
			}()
		}
		close(start)
		for range 3 {
			// Let the readers run a little (no timing is asserted).
			it := g.New(pdb, l, 1, nil)
			for it.Next() {
			}
			require.NoError(t, it.Close())
		}
		require.NoError(t, g.Close(errGateClosed))
		require.NoError(t, pdb.Close(), "round %d: a Pebble iterator was left open", round)
		wg.Wait()
	}
}

// An Iterator closing itself while the gate closes: Close finds its call
// in flight, waits for it, and the call (which closes its own Pebble
// iterator) tells Close it is done.
func TestGateCloseWaitsForIteratorClose(t *testing.T) {
	pdb, l := gateDB(t, 10)
	var g iterator.Gate
	it := g.New(pdb, l, 1, nil)
	require.True(t, it.Next()) // holds an open Pebble iterator

	inCall, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { iterator.SetCallHook(nil) })
	iterator.SetCallHook(func() {
		close(inCall)
		<-release
	})
	closed := make(chan error, 1)
	go func() { closed <- it.Close() }()
	<-inCall

	waiting := make(chan int, 1)
	iterator.SetGateOnWait(&g, func(n int) { waiting <- n })
	done := make(chan error, 1)
	go func() { done <- g.Close(errGateClosed) }()
	require.Equal(t, 1, guarded(t, waiting, "Close did not see the closing Iterator"))
	close(release)
	require.NoError(t, guarded(t, closed, "Iterator.Close"))
	require.NoError(t, guarded(t, done, "Close: the closing Iterator never told it it was done"))
	require.NoError(t, pdb.Close(), "the Iterator closed its Pebble iterator")
	require.NoError(t, it.Err())
	require.False(t, it.Next())
	require.NoError(t, it.Close())
}

// A panic inside a call of a gated Iterator (here from its cutoff
// function, or inside Wait and Close) ends the call: the gate's Close
// does not wait for it forever, and closes the Pebble iterator the call
// left open.
func TestGateCloseAfterPanicInCall(t *testing.T) {
	mustPanic := func(f func()) {
		t.Helper()
		defer func() { require.NotNil(t, recover(), "the call did not panic") }()
		f()
	}
	for _, call := range []string{"Next", "Wait", "Close"} {
		t.Run(call, func(t *testing.T) {
			pdb, l := gateDB(t, 10)
			var g iterator.Gate
			panicky := false
			it := g.New(pdb, l, 1, func() int64 {
				if panicky {
					panic("cutoff")
				}
				return 0
			})
			require.True(t, it.Next()) // holds an open Pebble iterator
			switch call {
			case "Next":
				require.NoError(t, it.Wait(t.Context())) // the next Next reopens, calling cutoff
				panicky = true
				mustPanic(func() { it.Next() })
			default:
				t.Cleanup(func() { iterator.SetCallHook(nil) })
				iterator.SetCallHook(func() { panic("hook") })
				mustPanic(func() {
					if call == "Wait" {
						_ = it.Wait(t.Context())
					} else {
						_ = it.Close()
					}
				})
				iterator.SetCallHook(nil)
			}
			done := make(chan error, 1)
			go func() { done <- g.Close(errGateClosed) }()
			require.NoError(t, guarded(t, done, "Close waits for a call a panic ended"))
			require.NoError(t, pdb.Close(), "Close closed the Pebble iterator the call left open")
			require.False(t, it.Next())
			require.ErrorIs(t, it.Err(), errGateClosed)
			require.NoError(t, it.Close())
		})
	}
}

// TestRecordAfterWait: Wait closes the Pebble iterator the current record
// was read from, so it builds the record and copies its Data first; Record
// after Wait returns the same record from memory the Iterator owns,
// whether or not Record was called before Wait.
func TestRecordAfterWait(t *testing.T) {
	pdb, l := gateDB(t, 3)
	defer pdb.Close()
	var g iterator.Gate
	defer g.Close(errGateClosed)

	it := g.New(pdb, l, 1, nil)
	require.True(t, it.Next())
	before := it.Record()
	require.NoError(t, it.Wait(t.Context())) // records 2 and 3 are visible: returns at once
	after := it.Record()
	require.Equal(t, before.SequenceNumber, after.SequenceNumber)
	require.Equal(t, "key-1", after.PartitionKey)
	require.Equal(t, []byte("data-1"), after.Data)
	require.NotSame(t, &before.Data[0], &after.Data[0], "Data still borrowed from Pebble after Wait")
	require.Equal(t, len(after.Data), cap(after.Data))

	require.True(t, it.Next()) // the next record is read again after Wait
	require.NoError(t, it.Wait(t.Context()))
	r := it.Record() // never asked for before Wait
	require.Equal(t, "key-2", r.PartitionKey)
	require.Equal(t, []byte("data-2"), r.Data)
	require.True(t, it.Next())
	require.Equal(t, "key-3", it.Record().PartitionKey)
	require.NoError(t, it.Close())
}
