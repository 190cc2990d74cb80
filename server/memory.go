package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvstream/kvstream/engine"
	"golang.org/x/sync/semaphore"
)

// The server's memory budget (Config.MaxMemory). Part of it is set aside
// for the engine (Pebble's memtables and block cache, by profile) and for
// the Go runtime (goroutines, connections, GC headroom); the rest is the
// request budget, which every request body and every SubscribeToShard
// subscription draws from:
//
//   - A body is read in steps into a pooled buffer. Before each step the
//     request takes bodyCharge times the step from the budget (covering the
//     body, what it decodes to and what the engine copies), and it holds
//     that until its response is written. Content-Length is never trusted
//     for an allocation. A request that cannot get its share within
//     budgetWait is answered with a retryable throttling error
//     (throttleError).
//   - With SigV4 on, a body whose signature has not been checked yet
//     (SDKs sign the payload hash, known only once the body is in) also
//     draws from the unverified allowance, a quarter of the request
//     budget, so clients that cannot sign can hold no more than that.
//   - An eighth of the budget is kept for small requests (at most
//     smallCharge held): they are served from it when big bodies hold the
//     rest, so a client making ordinary calls is not queued behind bulk
//     writers or attackers. The first read step is no larger than the
//     declared Content-Length (a hint for the step, never an allocation).
//   - A subscription takes subscriptionCharge for its lifetime, and
//     subscriptions together at most half of the request budget.

// Defaults of Config.MaxMemory by engine profile.
const (
	DefaultMaxMemorySmall      = 160 << 20
	DefaultMaxMemoryThroughput = 2 << 30
)

const (
	// runtimeReserve is the part of MaxMemory kept for the Go runtime:
	// goroutine stacks, connection buffers, the GC's headroom.
	runtimeReserve = 24 << 20
	// bodyCharge is what a body byte costs the budget: the body (in a
	// buffer that grows by doubling), its decoded form, the engine's
	// batch and records.
	bodyCharge = 4
	// bodyStep is how much of a body is read (and charged) at a time.
	bodyStep = 64 << 10
	// smallCharge is the most a request may hold from the reserve for
	// small requests.
	smallCharge = 256 << 10
	// budgetWait is how long a request waits for budget before it is
	// throttled.
	budgetWait = 250 * time.Millisecond
	// subscriptionCharge is one subscription's share: an event being
	// built (1 MiB of records, base64 in JSON), its encoded frame and the
	// iterator's buffers.
	subscriptionCharge = 4 << 20
	// connCost is the memory one connection may pin in the worst case
	// (HTTP/2 receive buffers), which sizes the default connection cap.
	connCost = 1 << 20
	// h2ConnWindow and h2StreamWindow are the HTTP/2 receive windows: the
	// most a client can make the server buffer on one connection and one
	// stream before the handler reads it.
	h2ConnWindow   = 512 << 10
	h2StreamWindow = 256 << 10
	// h2MaxStreams is the HTTP/2 concurrent-stream limit per connection.
	h2MaxStreams = 100
)

// engineReserve is the part of MaxMemory set aside for the engine of a
// profile: memtables (up to MemTableStopWritesThreshold of them), the
// block cache, and iterators and compactions.
func engineReserve(p engine.Profile) int64 {
	if p == engine.ProfileThroughput {
		return 640 << 20 // 4 × 64 MiB memtables + 256 MiB cache + 128 MiB
	}
	return 40 << 20 // 2 × 4 MiB memtables + 8 MiB cache + 24 MiB
}

// engineManual is the part of the engine's memory Pebble allocates outside
// the Go heap (with cgo): the block cache and the memtables. Serve sets
// the Go runtime's memory limit to MaxMemory less this.
func engineManual(p engine.Profile) int64 {
	if p == engine.ProfileThroughput {
		return 512 << 20
	}
	return 16 << 20
}

// defaultMaxMemory is Config.MaxMemory's default for a profile.
func defaultMaxMemory(p engine.Profile) int64 {
	if p == engine.ProfileThroughput {
		return DefaultMaxMemoryThroughput
	}
	return DefaultMaxMemorySmall
}

// memBudget is the request budget. It is safe for concurrent use.
type memBudget struct {
	total      int64
	sem        *semaphore.Weighted // total less the small reserve
	small      *semaphore.Weighted // the reserve for small requests
	unverified *semaphore.Weighted // the allowance of unsigned bodies; nil without SigV4
	subs       *semaphore.Weighted // subscriptions' share
	inUse      atomic.Int64        // bytes held, for the gauge
}

func newMemBudget(total int64, verifying bool) *memBudget {
	reserve := total / 8
	b := &memBudget{total: total, sem: semaphore.NewWeighted(total - reserve), small: semaphore.NewWeighted(reserve), subs: semaphore.NewWeighted(total / 2)}
	if verifying {
		b.unverified = semaphore.NewWeighted(total / 4)
	}
	return b
}

// hold is one request's share of the budget. Its methods are not safe for
// concurrent use; release it once, when the response is written.
type hold struct {
	b          *memBudget
	ctx        context.Context
	deadline   context.Context // budgetWait from the first wait; lazily made
	cancel     context.CancelFunc
	n          int64 // held in all: from b.sem, and fromSmall of it from b.small
	fromSmall  int64
	unverified int64 // held from b.unverified
	// small says the whole request is small (a declared body of at most
	// smallCharge/bodyCharge): only such a request may draw from the
	// reserve for small requests, not the first steps of a large one.
	small bool
}

func (b *memBudget) newHold(ctx context.Context) *hold { return &hold{b: b, ctx: ctx} }

// take acquires n bytes from sem, waiting up to budgetWait in all for this
// request. It reports false if the wait ran out or the request ended.
func (h *hold) take(sem *semaphore.Weighted, n int64) bool {
	if sem.TryAcquire(n) {
		return true
	}
	if h.deadline == nil {
		h.deadline, h.cancel = context.WithTimeout(h.ctx, budgetWait)
	}
	return sem.Acquire(h.deadline, n) == nil
}

// grow raises the request's share to n bytes (and, if unverified, its
// share of the unverified allowance to n/bodyCharge).
func (h *hold) grow(n int64, unverified bool) bool {
	if n > h.b.total {
		return false
	}
	if unverified && h.b.unverified != nil {
		u := n / bodyCharge
		if d := u - h.unverified; d > 0 {
			if u > h.b.total/4 || !h.take(h.b.unverified, d) {
				return false
			}
			h.unverified = u
		}
	}
	if d := n - h.n; d > 0 {
		switch {
		case h.b.sem.TryAcquire(d):
		case h.small && n <= smallCharge && h.b.small.TryAcquire(d):
			h.fromSmall += d
		case !h.take(h.b.sem, d):
			return false
		}
		h.n = n
		h.b.inUse.Add(d)
	}
	return true
}

// add raises the request's share by n bytes (a large response).
func (h *hold) add(n int64) bool { return h.grow(h.n+n, false) }

// verified gives back the request's share of the unverified allowance.
func (h *hold) verified() {
	if h.unverified > 0 {
		h.b.unverified.Release(h.unverified)
		h.unverified = 0
	}
}

// release gives back everything.
func (h *hold) release() {
	h.verified()
	if h.n > 0 {
		if h.n > h.fromSmall {
			h.b.sem.Release(h.n - h.fromSmall)
		}
		if h.fromSmall > 0 {
			h.b.small.Release(h.fromSmall)
		}
		h.b.inUse.Add(-h.n)
		h.n, h.fromSmall = 0, 0
	}
	if h.cancel != nil {
		h.cancel()
	}
}

// acquireSubscription takes a subscription's share without waiting.
func (b *memBudget) acquireSubscription() bool {
	if !b.subs.TryAcquire(subscriptionCharge) {
		return false
	}
	if !b.sem.TryAcquire(subscriptionCharge) {
		b.subs.Release(subscriptionCharge)
		return false
	}
	b.inUse.Add(subscriptionCharge)
	return true
}

func (b *memBudget) releaseSubscription() {
	b.sem.Release(subscriptionCharge)
	b.subs.Release(subscriptionCharge)
	b.inUse.Add(-subscriptionCharge)
}

// mib renders a byte count in MiB for messages.
func mib(n int64) string { return strconv.FormatInt(n>>20, 10) + " MiB" }

// throttleError is the answer to a request the budget has no room for:
// a throttling error every AWS SDK retries with backoff.
// ProvisionedThroughputExceededException for the data plane (what KCL and
// the KPL back off on), LimitExceededException for the rest.
func (s *Server) throttleError(op string) *apiError {
	typ := errLimitExceeded
	switch op {
	case "PutRecord", "PutRecords", "GetRecords", "GetShardIterator":
		typ = errThroughputExceeded
	}
	return newAPIError(typ, "Rate exceeded: the server's memory budget for requests in flight ("+mib(s.budget.total)+
		") is in use; retry with backoff.")
}

// connLimitListener caps open connections at max. A connection beyond it
// is not queued (it would wait behind the ones holding the slots) but
// refused: its first HTTP/1.1 request is read (the body discarded, within
// refuseTimeout) and answered with the throttling error refusal renders,
// then the connection is closed, so the client gets an answer its SDK
// retries rather than a reset. At most max connections are being refused
// at once (each holds a small buffer and a goroutine); beyond that, and
// for HTTP/2 prior-knowledge connections, a connection is closed at once.
type connLimitListener struct {
	net.Listener
	max      int64
	active   atomic.Int64
	refusing atomic.Int64
	onOpen   func(delta int) // the connections gauge
	// refusal returns the response to a refused request: an HTTP/1.1
	// response with Connection: close. Nil closes refused connections.
	refusal func(*http.Request) []byte
	maxBody int64
}

// refuseTimeout bounds the time spent on a refused connection.
const refuseTimeout = 5 * time.Second

func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > l.max {
			l.active.Add(-1)
			if l.refusal == nil || l.refusing.Add(1) > l.max {
				if l.refusal != nil {
					l.refusing.Add(-1)
				}
				_ = c.Close()
				continue
			}
			go l.refuse(c)
			continue
		}
		l.onOpen(1)
		return &limitedConn{Conn: c, l: l}, nil
	}
}

type limitedConn struct {
	net.Conn
	l    *connLimitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.active.Add(-1)
		c.l.onOpen(-1)
	})
	return err
}

// refuse answers the first request on c with the refusal and closes c.
func (l *connLimitListener) refuse(c net.Conn) {
	defer l.refusing.Add(-1)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	br := bufio.NewReaderSize(c, 4<<10)
	if p, err := br.Peek(len(http2Preface)); err != nil || string(p) == http2Preface {
		return
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	// Read the body before answering: closing under a client still
	// sending would reset the connection before it reads the answer.
	if _, err := io.CopyN(io.Discard, req.Body, l.maxBody+1); err != nil && err != io.EOF {
		return
	}
	_, _ = c.Write(l.refusal(req))
}

// http2Preface starts an HTTP/2 prior-knowledge (h2c) connection.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// connRefusal renders the answer to a request on a connection over the
// cap: the operation's throttling error in the request's codec, as an
// HTTP/1.1 response that closes the connection.
func (s *Server) connRefusal(req *http.Request) []byte {
	op, _ := strings.CutPrefix(req.Header.Get("X-Amz-Target"), targetPrefix)
	aerr := s.throttleError(op)
	aerr.Msg = "Rate exceeded: the server has its maximum of open connections; retry with backoff."
	c := codecFor(req.Header.Get("Content-Type"))
	body, err := c.encode(errorBody{Type: aerr.Type, Message: aerr.Msg})
	if err != nil {
		c, body = codecJSON, []byte(`{"__type":"`+aerr.Type+`"}`)
	}
	if operations[op] == nil && streamingOperations[op] == nil {
		op = "Unknown"
	}
	s.metrics.throttles.WithLabelValues(op).Inc()
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nX-Amzn-Requestid: %s\r\nX-Amzn-Errortype: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		aerr.Status, http.StatusText(aerr.Status), requestID(), aerr.Type, c.contentType(), len(body), body)
}
