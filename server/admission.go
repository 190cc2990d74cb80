package server

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Fair admission. Once a request's body is in (and its signature checked),
// it waits for admission before it is decoded and served: at most
// admission.capacity units of work run at once, a request costing one unit
// per admitUnit bytes of body (at least one, at most the capacity). The
// capacity is tied to GOMAXPROCS (admitPerProc of body per CPU) and to the
// memory budget, so the CPUs are shared by a handful of requests instead
// of hundreds of goroutines, and the engine's batches stay small.
//
// Waiting requests are served fairly per client identity (clientKey: the
// signature's access key ID and the client's host, else the connection):
// each identity has a FIFO queue, and capacity freed goes to the waiting
// identity holding the fewest admitted requests (in turn among equals), so
// a client with 200 connections cannot keep one with a single connection
// waiting. Small requests (one unit) may use the whole capacity;
// larger ones leave admitSmallReserve units free, so an ordinary call
// finds room at once even while bulk writers fill the rest. A request not
// admitted within admitWait gets the retryable throttling error
// (Server.throttleError), never a dropped connection; the wait at the
// reader gate counts against it (acquireWithin), and a bulk request keeps
// its reader until admitted (handler.go).

//
// Bulk requests (more than one unit) are also held to a rate of body
// bytes that leaves small requests their unloaded service time: every
// write goes through the engine's one group-commit pipeline, so bulk bytes
// admitted slow the small writes committed with them, and a Pebble write
// stall (memtables full, waiting for a flush) stops them all. At each
// check (every admitCheck) the rate is halved if Pebble stalled since the
// last one, or if small requests took on average more than smallSlowdown
// times their least service time of the last seconds (baseWindow) plus
// smallSlack; otherwise it is raised by bulkRateStep every admitRaise
// (additive increase, multiplicative decrease), between bulkRateMin and
// bulkRateMax. Small requests are not held to it. With no small requests
// in flight, bulk requests run at the rate the engine takes without
// stalling.

const (
	admitUnit         = 64 << 10
	admitPerProc      = 2 << 20
	admitSmallReserve = 8
	admitWait         = 500 * time.Millisecond

	readersPerProc = 8

	admitCheck   = 10 * time.Millisecond
	admitRaise   = 100 * time.Millisecond
	bulkRateMin  = 2 << 20
	bulkRateMax  = 4 << 30
	bulkRateStep = 4 << 20
	// bulkBurst is how much of the rate may be taken at once.
	bulkBurst = 100 * time.Millisecond

	smallSlowdown = 2
	smallSlack    = 500 * time.Microsecond
	baseWindow    = 2 * time.Second
)

// admission is the fair admission queue. It is safe for concurrent use.
type admission struct {
	capacity int
	// reserve is the units bulk requests leave free for small ones, and
	// perClientBulk the most units one client's bulk requests may hold
	// (past its first); 0 is no cap.
	reserve, perClientBulk int
	// stalls reports the engine's write stalls so far and whether one is
	// running; nil leaves bulk requests unrated.
	stalls func() (int64, bool)

	mu      sync.Mutex
	used    int
	clients map[string]*admitClient // clients with waiters
	ring    []*admitClient          // clients with waiters, in turn order

	rate       float64   // bulk body bytes per second
	tokens     float64   // bulk body bytes that may be admitted now
	refilled   time.Time // when tokens were last refilled
	checked    time.Time // when stalls were last read
	raised     time.Time // when the rate was last raised (or cut)
	seenStalls int64
	wake       *time.Timer // pending dispatch once tokens refill; nil if none
	closed     bool        // close was called: no wake is armed

	// Small requests' service times (admitted to released): the sum and
	// count since the last check, and the least seen in this and the last
	// baseWindow, their unloaded time.
	smallSum          time.Duration
	smallN            int
	baseCur, basePrev time.Duration
	baseRotated       time.Time
}

type admitClient struct {
	key     string
	held    int // requests admitted
	bulk    int // units held by its bulk requests
	waiters []*admitWaiter
}

type admitWaiter struct {
	cost    int
	bytes   int
	granted chan struct{} // closed when admitted
	done    bool          // admitted (under mu)
}

// newAdmission returns an admission queue for a request budget: the
// capacity is admitPerProc per GOMAXPROCS, at most a quarter of the budget
// over bodyCharge, and never less than room for one largest body plus the
// small reserve.
func newAdmission(budget int64, stalls func() (int64, bool)) *admission {
	c := int64(runtime.GOMAXPROCS(0)) * admitPerProc
	c = min(c, budget/(4*bodyCharge))
	c = max(c/admitUnit, admitSmallReserve+1)
	return &admission{capacity: int(c), reserve: admitSmallReserve, clients: map[string]*admitClient{}, stalls: stalls, rate: bulkRateMax}
}

// newReaderGate returns the gate requests pass before their body is read:
// readersPerProc body readers per GOMAXPROCS at once, each costing one unit
// if its declared body is small (at most admitUnit) and two otherwise;
// bulk readers leave a quarter of the gate to small ones, and one client's
// bulk readers hold at most half the rest, so clients that send their
// bodies slowly, or never, cannot hold every reader. Requests waiting here
// are parked, not reading: hundreds of connections cost no CPU and no
// budget while they wait their turn.
func newReaderGate() *admission {
	c := readersPerProc * runtime.GOMAXPROCS(0)
	return &admission{capacity: c, reserve: c / 4, perClientBulk: (c - c/4) / 2, clients: map[string]*admitClient{}}
}

// readerCost is a request's cost at the reader gate.
func readerCost(r *http.Request) int {
	if r.ContentLength >= 0 && r.ContentLength <= admitUnit {
		return 1
	}
	return 2
}

// adapt refills the bulk tokens and adjusts the rate to the engine's
// stalls (under mu).
func (a *admission) adapt(now time.Time) {
	if a.stalls == nil {
		return
	}
	if dt := now.Sub(a.refilled).Seconds(); dt > 0 {
		a.tokens = min(a.tokens+a.rate*dt, a.rate*bulkBurst.Seconds())
		a.refilled = now
	}
	if now.Sub(a.checked) < admitCheck {
		return
	}
	a.checked = now
	n, stalled := a.stalls()
	if now.Sub(a.baseRotated) >= baseWindow {
		a.basePrev, a.baseCur, a.baseRotated = a.baseCur, 0, now
	}
	slow := false
	if a.smallN > 0 {
		base := a.baseCur
		if a.basePrev > 0 && (base == 0 || a.basePrev < base) {
			base = a.basePrev
		}
		slow = a.smallSum/time.Duration(a.smallN) > smallSlowdown*base+smallSlack
		a.smallSum, a.smallN = 0, 0
	}
	switch {
	case stalled || n != a.seenStalls || slow:
		a.seenStalls = n
		a.rate = max(a.rate/2, bulkRateMin)
		a.tokens = min(a.tokens, 0)
		a.raised = now
	case now.Sub(a.raised) >= admitRaise:
		a.rate = min(a.rate+bulkRateStep, bulkRateMax)
		a.raised = now
	}
}

// cost returns the units a body of n bytes costs.
func (a *admission) cost(n int) int {
	return min(max(1, (n+admitUnit-1)/admitUnit), a.capacity-a.reserve)
}

// fits reports whether a request of cost units of client c fits now
// (under mu).
func (a *admission) fits(c *admitClient, cost int) bool {
	if cost == 1 {
		return a.used+1 <= a.capacity
	}
	if a.perClientBulk > 0 && c.bulk > 0 && c.bulk+cost > a.perClientBulk {
		return false
	}
	return a.used+cost <= a.capacity-a.reserve && (a.stalls == nil || a.tokens > 0)
}

// take admits a request of cost units and n body bytes of client c
// (under mu).
func (a *admission) take(c *admitClient, cost, n int) {
	a.used += cost
	if cost > 1 {
		c.bulk += cost
		if a.stalls != nil {
			a.tokens -= float64(n)
		}
	}
	c.held++
}

// client returns key's entry, making it (under mu).
func (a *admission) client(key string) *admitClient {
	c := a.clients[key]
	if c == nil {
		c = &admitClient{key: key}
		a.clients[key] = c
	}
	return c
}

// forget drops c's entry once it holds and awaits nothing (under mu).
func (a *admission) forget(c *admitClient) {
	if c.held == 0 && len(c.waiters) == 0 {
		delete(a.clients, c.key)
	}
}

// acquire admits a request of client key costing cost units, with an
// n-byte body, waiting up to admitWait (or until ctx ends). It returns
// the release func, or false if the request was not admitted.
func (a *admission) acquire(ctx context.Context, key string, cost, n int) (func(), bool) {
	return a.acquireWithin(ctx, key, cost, n, admitWait)
}

// acquireWithin is acquire waiting up to wait.
func (a *admission) acquireWithin(ctx context.Context, key string, cost, n int, wait time.Duration) (func(), bool) {
	a.mu.Lock()
	if cost > 1 {
		a.adapt(time.Now())
	}
	c := a.client(key)
	if len(a.ring) == 0 && a.fits(c, cost) {
		a.take(c, cost, n)
		a.mu.Unlock()
		return a.releaser(c, cost), true
	}
	w := &admitWaiter{cost: cost, bytes: n, granted: make(chan struct{})}
	if len(c.waiters) == 0 {
		a.ring = append(a.ring, c)
	}
	c.waiters = append(c.waiters, w)
	a.dispatch() // it may fit now if only other clients' large requests wait
	a.mu.Unlock()

	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-w.granted:
		return a.releaser(c, cost), true
	case <-t.C:
	case <-ctx.Done():
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.done { // admitted while the timer fired: give it back
		a.give(c, cost)
		if cost > 1 && a.stalls != nil {
			a.tokens += float64(n)
		}
		a.dispatch()
		return nil, false
	}
	a.remove(c, w)
	return nil, false
}

// give returns cost units of client c (under mu).
func (a *admission) give(c *admitClient, cost int) {
	a.used -= cost
	if cost > 1 {
		c.bulk -= cost
	}
	c.held--
	a.forget(c)
}

// releaser returns the func that gives back an admitted request's cost
// (and, for a small one, records its service time).
func (a *admission) releaser(c *admitClient, cost int) func() {
	start := time.Now()
	return func() {
		d := time.Since(start)
		a.mu.Lock()
		a.give(c, cost)
		if cost == 1 {
			a.smallSum += d
			a.smallN++
			if a.baseCur == 0 || d < a.baseCur {
				a.baseCur = d
			}
		}
		a.dispatch()
		a.mu.Unlock()
	}
}

// dispatch admits waiting requests while they fit (under mu): of the
// clients whose first waiter fits, the one holding the fewest requests,
// the first in turn among equals. A client whose first waiter does not
// fit is passed over.
func (a *admission) dispatch() {
	if len(a.ring) == 0 {
		return
	}
	a.adapt(time.Now())
	starved := false // a bulk request waits for tokens only
	for len(a.ring) > 0 {
		// The client holding the fewest requests goes first (the first
		// in turn among equals): one with many requests in flight waits
		// for those with few.
		best := -1
		for i, c := range a.ring {
			if !a.fits(c, c.waiters[0].cost) {
				starved = starved || c.waiters[0].cost > 1 && a.stalls != nil && a.tokens <= 0
				continue
			}
			if best < 0 || c.held < a.ring[best].held {
				best = i
			}
		}
		if best < 0 {
			break
		}
		c := a.ring[best]
		w := c.waiters[0]
		a.take(c, w.cost, w.bytes)
		w.done = true
		close(w.granted)
		c.waiters = c.waiters[1:]
		// The client goes to the back of the turn order (or leaves it).
		a.ring = append(a.ring[:best], a.ring[best+1:]...)
		if len(c.waiters) > 0 {
			a.ring = append(a.ring, c)
		}
	}
	if starved && a.wake == nil && !a.closed && len(a.ring) > 0 {
		d := max(time.Duration(-a.tokens/a.rate*float64(time.Second)), admitCheck)
		a.wake = time.AfterFunc(d, func() {
			a.mu.Lock()
			a.wake = nil
			a.dispatch()
			a.mu.Unlock()
		})
	}
}

// close stops the wake-up timer and arms no new one (Server.Close).
// Requests still waiting are admitted by releases as before, or time out.
func (a *admission) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.wake != nil {
		a.wake.Stop()
		a.wake = nil
	}
}

// remove drops waiter w of client c (under mu).
func (a *admission) remove(c *admitClient, w *admitWaiter) {
	for i, x := range c.waiters {
		if x == w {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			break
		}
	}
	if len(c.waiters) == 0 {
		for i, x := range a.ring {
			if x == c {
				a.ring = append(a.ring[:i], a.ring[i+1:]...)
				break
			}
		}
		a.forget(c)
	}
	a.dispatch() // w may have been what held the others back
}

// clientKey is the identity fair admission shares capacity by: the
// access key ID of the request's signature (with verification on, a
// signature that checked out) and the client's host, or without a
// signature the connection.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	authz := r.Header.Get("Authorization")
	if _, cred, ok := strings.Cut(authz, "Credential="); ok {
		if key, _, ok := strings.Cut(cred, "/"); ok && key != "" {
			return key + "@" + host
		}
	}
	if r.URL.RawQuery == "" {
		return r.RemoteAddr
	}
	if key := r.URL.Query().Get("X-Amz-Credential"); key != "" {
		key, _, _ = strings.Cut(key, "/")
		return key + "@" + host
	}
	return r.RemoteAddr
}
