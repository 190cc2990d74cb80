package server

import (
	"sync"
	"sync/atomic"
)

// ClockMoved tells the server that its Config.Clock has moved (a test's
// fake clock, set forward or back): the waiting SubscribeToShard
// subscriptions wake and act on the new time at once, sending the
// heartbeat that is now due or ending when their SubscriptionLifetime is
// over, instead of noticing the move at their next wake-up on real time.
// Call it after each move. It does nothing unless Config.Clock was set.
// It is safe for concurrent use, and cheap: it wakes, it does not wait.
func (s *Server) ClockMoved() { s.clockMoves.moved() }

// clockWake lets a test that moves a fake Config.Clock wake the waiting
// SubscribeToShard subscriptions, so a heartbeat or a lifetime's end is
// due on the fake clock without waiting for real time, and learn when
// they have acted on the move. Until enable, next returns nil, moved does
// nothing, and a subscription pays one atomic load per wait. Safe for
// concurrent use.
type clockWake struct {
	mu     sync.Mutex // serializes moved
	gen    atomic.Pointer[clockGen]
	waited chan struct{} // kicked (buffered 1) at each next once enabled
}

// clockGen is the time between two moves.
type clockGen struct {
	ch      chan struct{} // closed at the next move
	waiters atomic.Int32  // calls of next in this generation
}

// enable starts the wake-ups; call it once, before the first
// subscription and the first moved.
func (w *clockWake) enable() {
	w.waited = make(chan struct{}, 1)
	w.gen.Store(&clockGen{ch: make(chan struct{})})
}

// next returns a channel closed at the next moved, or nil if not
// enabled. A subscription calls it before it reads the clock to compute
// its wait, so no move is missed.
func (w *clockWake) next() <-chan struct{} {
	g := w.gen.Load()
	if g == nil {
		return nil
	}
	g.waiters.Add(1)
	select {
	case w.waited <- struct{}{}:
	default:
	}
	return g.ch
}

// moved wakes the subscriptions waiting on next; call it after the clock
// moved.
func (w *clockWake) moved() {
	if w.gen.Load() == nil {
		return // not enabled
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.gen.Swap(&clockGen{ch: make(chan struct{})}).ch)
}

// waiters returns how many waits began since the last move (tests).
func (w *clockWake) waiters() int { return int(w.gen.Load().waiters.Load()) }
