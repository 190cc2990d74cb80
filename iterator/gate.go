package iterator

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// A Gate ties reads to the lifetime of their Pebble DB, so a read during
// or after the DB's Close gets an error instead of touching a closed
// Pebble (which panics). Each use of Pebble runs between Enter and Leave;
// Close waits for the uses in flight, closes the Pebble iterators of the
// Iterators made with Gate.New that are still open, and makes every later
// Enter fail. Its zero value is open. Safe for concurrent use.
//
// Enter must not be called by a goroutine already inside the gate (the
// gate is a sync.RWMutex: a nested Enter can deadlock with Close).
type Gate struct {
	mu     sync.RWMutex // shared by uses of Pebble, exclusive in Close
	closed bool         // guarded by mu
	err    error        // what uses after Close get; guarded by mu

	regMu sync.Mutex
	iters map[*Iterator]struct{} // open gated Iterators; guarded by regMu
}

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

// Close closes the gate: it waits for uses in flight, closes the Pebble
// iterators of open gated Iterators (whose Next then reports err), and
// makes later uses fail with err. It returns the first error closing them
// returned. Only the first Close has an effect.
func (g *Gate) Close(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed, g.err = true, err
	g.regMu.Lock()
	iters := g.iters
	g.iters = nil
	g.regMu.Unlock()
	var first error
	for it := range iters {
		// No use is in flight (mu is held exclusively), so the Pebble
		// iterator is ours. Nothing else of it is touched: its owner may
		// be reading its other fields (Err, Record) right now; its next
		// use finds the gate closed and records err itself.
		if it.pit != nil {
			if cerr := it.pit.Close(); cerr != nil && first == nil {
				first = cerr
			}
			it.pit = nil
		}
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
	if g.iters == nil {
		g.iters = make(map[*Iterator]struct{})
	}
	g.iters[it] = struct{}{}
	g.regMu.Unlock()
	return it
}

// forget drops it from the registry (it is being closed).
func (g *Gate) forget(it *Iterator) {
	g.regMu.Lock()
	delete(g.iters, it)
	g.regMu.Unlock()
}
