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
// each identity has a FIFO queue and capacity freed goes to the identities
// in turn, so a client with 200 connections gets no more turns than a
// client with one. Small requests (one unit) may use the whole capacity;
// larger ones leave admitSmallReserve units free, so an ordinary call
// finds room at once even while bulk writers fill the rest. A request not
// admitted within admitWait gets the retryable throttling error
// (Server.throttleError), never a dropped connection.

//
// Bulk requests (more than one unit) are also held to a rate of body
// bytes the engine keeps up with: when Pebble stalls writes (its
// memtables full, waiting for a flush), every write waits, the small ones
// too, so the rate is halved at each check (every admitCheck) that finds
// a new or running stall, and raised by bulkRateStep every admitRaise
// without one (additive increase, multiplicative decrease), between
// bulkRateMin and bulkRateMax. Small requests are not held to it.

const (
	admitUnit         = 64 << 10
	admitPerProc      = 2 << 20
	admitSmallReserve = 8
	admitWait         = 500 * time.Millisecond

	admitCheck   = 10 * time.Millisecond
	admitRaise   = 100 * time.Millisecond
	bulkRateMin  = 2 << 20
	bulkRateMax  = 4 << 30
	bulkRateStep = 4 << 20
	// bulkBurst is how much of the rate may be taken at once.
	bulkBurst = 100 * time.Millisecond
)

// admission is the fair admission queue. It is safe for concurrent use.
type admission struct {
	capacity int
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
}

type admitClient struct {
	key     string
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
	return &admission{capacity: int(c), clients: map[string]*admitClient{}, stalls: stalls, rate: bulkRateMax}
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
	switch {
	case stalled || n != a.seenStalls:
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
	return min(max(1, (n+admitUnit-1)/admitUnit), a.capacity-admitSmallReserve)
}

// fits reports whether cost units fit now (under mu).
func (a *admission) fits(cost int) bool {
	if cost == 1 {
		return a.used+1 <= a.capacity
	}
	return a.used+cost <= a.capacity-admitSmallReserve && (a.stalls == nil || a.tokens > 0)
}

// take admits a request of cost units and n body bytes (under mu).
func (a *admission) take(cost, n int) {
	a.used += cost
	if cost > 1 && a.stalls != nil {
		a.tokens -= float64(n)
	}
}

// acquire admits a request of the client key with an n-byte body, waiting
// up to admitWait (or until ctx ends). It returns the release func, or
// false if the request was not admitted.
func (a *admission) acquire(ctx context.Context, key string, n int) (func(), bool) {
	cost := a.cost(n)
	a.mu.Lock()
	if cost > 1 {
		a.adapt(time.Now())
	}
	if len(a.ring) == 0 && a.fits(cost) {
		a.take(cost, n)
		a.mu.Unlock()
		return func() { a.release(cost) }, true
	}
	w := &admitWaiter{cost: cost, bytes: n, granted: make(chan struct{})}
	c := a.clients[key]
	if c == nil {
		c = &admitClient{key: key}
		a.clients[key] = c
		a.ring = append(a.ring, c)
	}
	c.waiters = append(c.waiters, w)
	a.dispatch() // it may fit now if only other clients' large requests wait
	a.mu.Unlock()

	t := time.NewTimer(admitWait)
	defer t.Stop()
	select {
	case <-w.granted:
		return func() { a.release(cost) }, true
	case <-t.C:
	case <-ctx.Done():
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.done { // admitted while the timer fired: give it back
		a.used -= cost
		if cost > 1 && a.stalls != nil {
			a.tokens += float64(n)
		}
		a.dispatch()
		return nil, false
	}
	a.remove(c, w)
	return nil, false
}

func (a *admission) release(cost int) {
	a.mu.Lock()
	a.used -= cost
	a.dispatch()
	a.mu.Unlock()
}

// dispatch admits waiting requests while they fit, one per client in turn
// (under mu). A client whose first waiter does not fit is passed over for
// this turn.
func (a *admission) dispatch() {
	if len(a.ring) == 0 {
		return
	}
	a.adapt(time.Now())
	starved := false // a bulk request waits for tokens only
	for progress := true; progress && len(a.ring) > 0; {
		progress = false
		for i := 0; i < len(a.ring); {
			c := a.ring[i]
			w := c.waiters[0]
			if !a.fits(w.cost) {
				starved = starved || w.cost > 1 && a.used+w.cost <= a.capacity-admitSmallReserve
				i++
				continue
			}
			a.take(w.cost, w.bytes)
			w.done = true
			close(w.granted)
			c.waiters = c.waiters[1:]
			progress = true
			// The client goes to the back of the ring (or leaves it).
			a.ring = append(a.ring[:i], a.ring[i+1:]...)
			if len(c.waiters) > 0 {
				a.ring = append(a.ring, c)
			} else {
				delete(a.clients, c.key)
			}
			break
		}
	}
	if starved && a.wake == nil && len(a.ring) > 0 {
		d := max(time.Duration(-a.tokens/a.rate*float64(time.Second)), admitCheck)
		a.wake = time.AfterFunc(d, func() {
			a.mu.Lock()
			a.wake = nil
			a.dispatch()
			a.mu.Unlock()
		})
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
		delete(a.clients, c.key)
		for i, x := range a.ring {
			if x == c {
				a.ring = append(a.ring[:i], a.ring[i+1:]...)
				break
			}
		}
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
	if key := r.URL.Query().Get("X-Amz-Credential"); key != "" {
		key, _, _ = strings.Cut(key, "/")
		return key + "@" + host
	}
	return r.RemoteAddr
}
