package iterator

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// A Gate ties reads to the lifetime of their Pebble DB, so a read during
// or after the DB's Close gets an error instead of touching a closed
// Pebble (which panics). Each use of Pebble runs between Enter and Leave,
// or inside a call of an Iterator made with Gate.New; Close waits for the
// uses in flight, closes the Pebble iterators of the Iterators still
// open, and makes every later Enter, and every later call of those
// Iterators, fail. It never waits for an Iterator between calls. Its zero
// value is open. Safe for concurrent use.
//
// Enter must not be called by a goroutine already inside the gate (the
// gate is a sync.RWMutex: a nested Enter can deadlock with Close).
//
// Gated Iterators do not share the RWMutex: each has its own state word
// (idle, busy in a call, or released by Close), so a call costs two
// atomic operations on memory no other reader writes. Readers on
// different cores then share no cache line per record; on a shared
// 2-core machine BenchmarkGatedReaders showed no difference from the
// RWMutex either way (the gain, if any, needs more cores to show).
type Gate struct {
	mu     sync.RWMutex // shared by uses of Pebble, exclusive in Close
	closed bool         // guarded by mu
	err    error        // what uses after Close get; set before closed is

	regMu     sync.Mutex
	regClosed bool                   // Close has taken the registry; guarded by regMu
	iters     map[*Iterator]struct{} // open gated Iterators; guarded by regMu

	// handoff carries, during Close, the result of closing the Pebble
	// iterator of each Iterator Close found busy: that Iterator closes
	// it itself when its call ends (see Iterator.leave).
	handoff chan error

	// onWait, if set (tests), is called when Close starts waiting for n
	// busy Iterators.
	onWait func(n int)
}

// testCallHook, if set (tests, before the Iterators it concerns are
// used), runs inside the calls of Iterator.Close and Iterator.Wait, after
// they enter the gate.
var testCallHook func()

func callHook() {
	if testCallHook != nil {
		testCallHook()
	}
}

// States of a gated Iterator (Iterator.state).
const (
	stateIdle   int32 = iota // between calls; Close may release it
	stateBusy                // in a call that uses Pebble
	stateWanted              // busy, and Close waits for the call to end
	stateGone                // released: its Pebble iterator is closed
)

// Enter starts a use of Pebble. It returns false, with the error to
// report, once the gate is closed; the caller must then not use Pebble
// (and must not call Leave).
func (g *Gate) Enter() (bool, error) {
	g.mu.RLock()
	if g.closed {
		err := g.err
		g.mu.RUnlock()
		return false, err
	}
	return true, nil
}

// Leave ends a use of Pebble started by a successful Enter.
func (g *Gate) Leave() { g.mu.RUnlock() }

// Close closes the gate: it waits for uses in flight (Enter to Leave, and
// calls of gated Iterators), closes the Pebble iterators of open gated
// Iterators (whose Next then reports err), and makes later uses fail with
// err. An Iterator between calls is released at once; one in a call
// closes its Pebble iterator itself as the call ends. It returns the
// first error closing them returned. Only the first Close has an effect.
func (g *Gate) Close(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.err = err
	g.closed = true
	g.regMu.Lock()
	iters := g.iters
	g.iters = nil
	g.regClosed = true
	g.handoff = make(chan error, len(iters))
	g.regMu.Unlock()
	var first error
	keep := func(cerr error) {
		if cerr != nil && first == nil {
			first = cerr
		}
	}
	busy := 0
	for it := range iters {
		for {
			if it.state.CompareAndSwap(stateIdle, stateGone) {
				// Between calls: its owner touches the Pebble iterator
				// only inside a call, and every later call fails, so it
				// is ours. Nothing else of it is touched: its owner may
				// be reading its other fields (Err, Record) right now;
				// its next call finds it gone and records err itself.
				if it.pit != nil {
					keep(it.pit.Close())
					it.pit = nil
				}
				break
			}
			if it.state.CompareAndSwap(stateBusy, stateWanted) {
				busy++
				break
			}
			if it.state.Load() == stateGone {
				break // closed by its owner (Iterator.Close) meanwhile
			}
		}
	}
	if busy > 0 && g.onWait != nil {
		g.onWait(busy)
	}
	for range busy {
		keep(<-g.handoff)
	}
	return first
}

// New returns an Iterator like the package's New whose every use of
// Pebble runs inside g. After g closes, its Next returns false and Err
// returns the gate's error. The caller must Close it.
func (g *Gate) New(r pebble.Reader, l *shard.Log, next uint64, cutoff func() int64) *Iterator {
	it := New(r, l, next, cutoff)
	it.gate = g
	g.regMu.Lock()
	defer g.regMu.Unlock()
	if g.regClosed {
		it.state.Store(stateGone) // its first call reports the gate's error
		return it
	}
	if g.iters == nil {
		g.iters = make(map[*Iterator]struct{})
	}
	g.iters[it] = struct{}{}
	return it
}

// forget drops it from the registry (it is closed).
func (g *Gate) forget(it *Iterator) {
	g.regMu.Lock()
	delete(g.iters, it)
	g.regMu.Unlock()
}

// enter starts a call of a gated Iterator that may use Pebble, reporting
// false (and recording the gate's error) once Close has released it.
// An ungated Iterator always enters.
func (it *Iterator) enter() bool {
	if it.gate == nil || it.state.CompareAndSwap(stateIdle, stateBusy) {
		return true
	}
	return it.released()
}

// released records the gate's error for an Iterator Close released.
func (it *Iterator) released() bool {
	// The state is stateGone (a call never starts while one is running):
	// the Iterator's own Close (done) or the gate's, which set the gate's
	// error before it released the Iterator.
	if it.err == nil && !it.done {
		it.err = it.gate.err
	}
	return false
}

// leave ends a call started by a successful enter. If Close is waiting
// for the call, it closes the Pebble iterator now (Close still holds the
// DB open) and hands the result to Close. After closeGated (the call
// already ended for good) it does nothing. Calls defer it, so a panic
// inside one does not leave the Iterator busy and the gate's Close
// waiting for it forever.
func (it *Iterator) leave() {
	if it.gate != nil && !it.state.CompareAndSwap(stateBusy, stateIdle) {
		it.handOver()
	}
}

func (it *Iterator) handOver() {
	if it.state.Load() == stateGone {
		return // closeGated ended the call
	}
	var err error
	if it.pit != nil {
		err = it.pit.Close()
		it.pit = nil
	}
	// Only Close moves a busy Iterator's state (to stateWanted), and it
	// made handoff before that.
	it.state.Store(stateGone)
	it.gate.handoff <- err
}

// closeGated ends a gated Iterator for good from its own Close, inside a
// call (after enter; the leave Close defers then does nothing): the
// Iterator is gone, so Close never touches it again; if Close was
// waiting for this call, it is told.
func (it *Iterator) closeGated() {
	if !it.state.CompareAndSwap(stateBusy, stateGone) {
		// stateWanted: Close waits for this call; the Pebble iterator
		// is already closed.
		it.state.Store(stateGone)
		it.gate.handoff <- nil
	}
	it.gate.forget(it)
}
