package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
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

// throttleError is the answer to a request the memory budget, the reader
// or admission gate (admission.go) or the connection cap has no room for:
// a throttling error every AWS SDK retries with backoff.
// ProvisionedThroughputExceededException for the data plane (what KCL and
// the KPL back off on), LimitExceededException for the rest.
func (s *Server) throttleError(op string) *apiError {
	typ := errLimitExceeded
	switch op {
	case "PutRecord", "PutRecords", "GetRecords", "GetShardIterator":
		typ = errThroughputExceeded
	}
	return newAPIError(typ, "Rate exceeded: the server is at its limit of requests in flight (memory budget "+mib(s.budget.total)+
		", fair shares per client); retry with backoff.")
}

// connLimitListener caps open connections at max. A connection beyond it
// is not queued (it would wait behind the ones holding the slots) but
// refused: its first HTTP/1.1 request is read and answered with the
// throttling error refusal renders, then the connection is closed, so the
// client gets an answer its SDK retries rather than a reset. A small body
// (declared at most drainAtOnce) is read before the answer; a larger one
// is answered first and lingered on (linger.go), within refuseTimeout.
// HTTP/2 prior-knowledge and TLS connections over the cap are closed at
// once.
//
// Connections are shared out by client identity (connKey: the access key
// ID and host of the first request's signature, or the host): the last
// eighth of the slots (the reserve) is kept for identities holding fewer
// than lightConns connections. A connection that finds only the reserve
// free has its first request's head read; it is served if its identity is
// light, refused otherwise. So a client whose connection was closed (an
// SDK drops one whenever it is slow to finish writing a request) gets a
// new one while a flood of connections from another identity holds the
// rest, instead of queueing behind the flood for a slot.
//
// At most 4×max connections are being refused (read to tell their
// identity, then waiting refuseDelay for a slot) at once, each holding a
// small buffer and a goroutine: enough that a flood of connections over
// the cap leaves refusers free to tell a light client's new connection at
// once. Lingering after a refusal holds no refuser; it is bounded by the
// refusals refusers can make (4×max per refuseDelay, each lingering
// lingerTime at most). While all refusers are busy, accepting
// waits for one: further connections wait in the kernel's listen backlog,
// which costs the server nothing, rather than being accepted and closed at
// once, which a client retrying at once would turn into a loop of
// connections the server spends its CPU on and answers none of.
type connLimitListener struct {
	net.Listener
	max    int64
	onOpen func(delta int) // the connections gauge
	// refusal returns the response to a refused request: an HTTP/1.1
	// response with Connection: close. Nil closes refused connections.
	refusal func(*http.Request) []byte
	maxBody int64
	linger  *lingerer // discards large refused bodies after the answer

	initOnce  sync.Once
	ready     chan acceptResult // connections to serve, and accept errors
	refusers  chan struct{}     // a token per refusal running (4×max)
	closed    chan struct{}     // closed by Close
	closeOnce sync.Once

	mu     sync.Mutex
	active int64
	held   map[string]int // connections served, by their identity
}

type acceptResult struct {
	c   net.Conn
	err error
}

const (
	// refuseTimeout bounds the time spent on a refused connection.
	refuseTimeout = 5 * time.Second
	// connReserveShare is the share of the connection cap kept for
	// light identities (1/connReserveShare).
	connReserveShare = 8
	// refuseHeadBuf bounds the head of a request read to tell its
	// identity; a longer head is refused.
	refuseHeadBuf = 8 << 10
	// refuseDelay is how long a connection over the cap waits for a slot
	// before it is refused (as long as a request waits for admission).
	refuseDelay = admitWait
)

// reserve is the number of slots kept for light identities.
func (l *connLimitListener) reserve() int64 { return l.max / connReserveShare }

// lightConns is the number of connections below which an identity is
// light: a third of the reserve, at least 1.
func (l *connLimitListener) lightConns() int { return int(max(l.reserve()/3, 1)) }

func (l *connLimitListener) init() {
	l.initOnce.Do(func() {
		l.ready = make(chan acceptResult)
		l.refusers = make(chan struct{}, max(4*l.max, 1))
		l.closed = make(chan struct{})
		l.held = map[string]int{}
		go l.acceptLoop()
	})
}

func (l *connLimitListener) Accept() (net.Conn, error) {
	l.init()
	select {
	case r := <-l.ready:
		return r.c, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// deliver hands r to Accept; false if the listener closed first.
func (l *connLimitListener) deliver(r acceptResult) bool {
	select {
	case l.ready <- r:
		return true
	case <-l.closed:
		if r.c != nil {
			_ = r.c.Close()
		}
		return false
	}
}

// acceptLoop accepts connections: those that find a slot outside the
// reserve go to Accept, the others to a refuser (which may serve them from
// the reserve), waiting for one while all are busy.
func (l *connLimitListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !l.deliver(acceptResult{err: err}) {
				return
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				continue // http.Server backs off and accepts again
			}
			return
		}
		if lc := l.open(c, "", false); lc != nil {
			if !l.deliver(acceptResult{c: lc}) {
				return
			}
			continue
		}
		if l.refusal == nil {
			_ = c.Close()
			continue
		}
		select {
		case l.refusers <- struct{}{}:
		case <-l.closed:
			_ = c.Close()
			return
		}
		go l.refuse(c)
	}
}

// open takes a slot for c if one is free to it: outside the reserve for
// anyone, in the reserve for a light identity (key known). It returns the
// served connection, or nil.
func (l *connLimitListener) open(c net.Conn, key string, keyed bool) *limitedConn {
	l.mu.Lock()
	free := l.active < l.max-l.reserve() ||
		keyed && l.active < l.max && l.held[key] < l.lightConns()
	if !free {
		l.mu.Unlock()
		return nil
	}
	l.active++
	lc := &limitedConn{Conn: c, l: l}
	if keyed {
		lc.key = key
		lc.keyed.Store(true)
		l.held[key]++
	}
	l.mu.Unlock()
	l.onOpen(1)
	return lc
}

// Close closes the listener and ends an Accept waiting for a refuser.
func (l *connLimitListener) Close() error {
	l.init()
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	l     *connLimitListener
	keyed atomic.Bool
	key   string // set once, under l.mu
	once  sync.Once
}

// identify records the identity of c's first request (later ones do not
// change it).
func (c *limitedConn) identify(key string) {
	if c.keyed.Load() {
		return
	}
	c.l.mu.Lock()
	if !c.keyed.Load() {
		c.key = key
		c.keyed.Store(true)
		c.l.held[key]++
	}
	c.l.mu.Unlock()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.active--
		if c.keyed.Load() {
			if c.l.held[c.key]--; c.l.held[c.key] <= 0 {
				delete(c.l.held, c.key)
			}
		}
		c.l.mu.Unlock()
		c.l.onOpen(-1)
	})
	return err
}

// connCtxKey is the request context key of the *limitedConn serving it.
type connCtxKey struct{}

// withConn is http.Server's ConnContext: it makes a request's connection
// known to identifyConn.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitedConn); ok {
		return context.WithValue(ctx, connCtxKey{}, lc)
	}
	return ctx
}

// identifyConn records r's identity as its connection's, if it is the
// connection's first request.
func identifyConn(r *http.Request) {
	if lc, ok := r.Context().Value(connCtxKey{}).(*limitedConn); ok && !lc.keyed.Load() {
		lc.identify(connKey(r))
	}
}

// connKey is the identity connections are shared out by: clientKey, with
// an unsigned request's connection replaced by its host.
func connKey(r *http.Request) string {
	k := clientKey(r)
	if k == r.RemoteAddr {
		if host, _, err := net.SplitHostPort(k); err == nil {
			return host
		}
	}
	return k
}

// bufferedConn is a connection whose first bytes were read into br.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// peekHead returns the head of the first request buffered in br (up to
// and including the blank line) without consuming it.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for {
		p, err := br.Peek(br.Buffered())
		if err != nil {
			return nil, err
		}
		if i := bytes.Index(p, []byte("\r\n\r\n")); i >= 0 {
			return p[:i+4], nil
		}
		if len(p) == br.Size() {
			return nil, errors.New("request head too long")
		}
		if _, err := br.Peek(len(p) + 1); err != nil { // wait for more
			return nil, err
		}
	}
}

// refuse reads the head of c's first request: it serves c from the
// reserve if the request's identity is light (or a slot freed). Otherwise
// c waits refuseDelay, reading nothing, and is served if a slot freed
// meanwhile, or else answered with the refusal and closed. The refuser is
// given back once the answer is written: lingering on a large body after
// it (linger.go) holds none, so refusers stay free to tell new
// connections' identities.
func (l *connLimitListener) refuse(c net.Conn) {
	held := true
	release := func() {
		if held {
			held = false
			<-l.refusers
		}
	}
	defer release()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	br := bufio.NewReaderSize(c, refuseHeadBuf)
	// HTTP/2 prior knowledge, and a TLS handshake (a record of type 22:
	// the refuser speaks no TLS), are closed at once.
	if p, err := br.Peek(len(http2Preface)); err != nil || string(p) == http2Preface || p[0] == 0x16 {
		_ = c.Close()
		return
	}
	if head, err := peekHead(br); err == nil {
		if req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head))); err == nil {
			req.RemoteAddr = c.RemoteAddr().String()
			key := connKey(req)
			if l.promote(c, br, key) {
				return
			}
			// The wait paces a client that reconnects as soon as it is
			// refused: one refusal per connection per refuseDelay.
			t := time.NewTimer(refuseDelay)
			select {
			case <-t.C:
			case <-l.closed:
				t.Stop()
				_ = c.Close()
				return
			}
			if l.promote(c, br, key) {
				return
			}
		}
	}
	defer c.Close()
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	// A small body is read before the answer: closing under a client
	// still sending would reset the connection before it reads the
	// answer. A large one is answered first, then lingered on.
	if req.ContentLength >= 0 && req.ContentLength <= drainAtOnce || l.linger == nil {
		if _, err := io.CopyN(io.Discard, req.Body, l.maxBody+1); err != nil && err != io.EOF {
			return
		}
		_, _ = c.Write(l.refusal(req))
		return
	}
	if _, err := c.Write(l.refusal(req)); err != nil {
		return
	}
	release()
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	deadline := time.Now().Add(lingerTime)
	_ = c.SetReadDeadline(deadline)
	l.linger.discard(req.Body, l.maxBody, deadline)
}

// promote serves c (its first bytes in br) if a slot is free to key.
func (l *connLimitListener) promote(c net.Conn, br *bufio.Reader, key string) bool {
	lc := l.open(&bufferedConn{Conn: c, br: br}, key, true)
	if lc == nil {
		return false
	}
	_ = c.SetDeadline(time.Time{})
	l.deliver(acceptResult{c: lc})
	return true
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
