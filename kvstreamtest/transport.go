package kvstreamtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"
)

// transport is an http.RoundTripper that serves each request in-process
// by calling an http.Handler on a goroutine of its own: no socket, no
// HTTP encoding. The handler reads the request body as the caller wrote
// it. The response is buffered until the handler flushes, returns, or
// has written streamAfter bytes; from then on it streams to the caller
// through an io.Pipe, so a SubscribeToShard event stream (flushed after
// every event) reaches the client event by event, and a handler blocks
// when its client stops reading, as over a connection.
//
// The handler's request context ends when the caller's context does, when
// the caller closes a streamed response body, when the handler returns,
// and when the transport closes. It is safe for concurrent use.
type transport struct {
	h  http.Handler
	tb testing.TB
	wg sync.WaitGroup // one per exchange whose handler is running
	mu struct {
		sync.Mutex
		closed bool
		live   map[*exchange]struct{}
	}
}

// streamAfter is how much of an unflushed response is buffered before it
// starts streaming (net/http's server buffers 4 KiB; more here saves pipe
// hand-offs, as nothing is framed).
const streamAfter = 64 << 10

var (
	errClosed     = errors.New("kvstreamtest: the test's Kinesis is closed (a call after the test ended?)")
	errAborted    = errors.New("kvstreamtest: the server aborted the response")
	errBodyClosed = errors.New("kvstreamtest: read on closed response body")
)

func newTransport(h http.Handler, tb testing.TB) *transport {
	t := &transport{h: h, tb: tb}
	t.mu.live = make(map[*exchange]struct{})
	return t
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	body := &requestBody{rc: req.Body}
	if err := ctx.Err(); err != nil {
		_ = body.Close()
		return nil, err
	}
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		_ = body.Close()
		return nil, errClosed
	}
	ex := &exchange{t: t, req: req, body: body, header: make(http.Header), head: make(chan *http.Response, 1), aborted: make(chan struct{})}
	t.mu.live[ex] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()

	ex.pr, ex.pw = io.Pipe()
	sctx, cancel := context.WithCancel(context.Background())
	ex.cancel = cancel
	ex.sreq = serverRequest(sctx, req, body)
	ex.stop = context.AfterFunc(ctx, func() { ex.abort(ctx.Err()) })
	go ex.serve()
	select {
	case resp := <-ex.head:
		return resp, nil
	case <-ex.aborted:
		return nil, ex.err
	}
}

// close aborts the exchanges in flight (their callers get errClosed),
// refuses new ones, and waits for every handler to return.
func (t *transport) close() {
	t.mu.Lock()
	t.mu.closed = true
	live := make([]*exchange, 0, len(t.mu.live))
	for ex := range t.mu.live {
		live = append(live, ex)
	}
	t.mu.Unlock()
	for _, ex := range live {
		ex.abort(errClosed)
	}
	t.wg.Wait()
}

// serverRequest is the request as a server's handler sees it (net/http
// server conventions: a path-only URL, RequestURI, Host out of Header,
// ContentLength -1 when unknown).
func serverRequest(ctx context.Context, req *http.Request, body *requestBody) *http.Request {
	u := &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	if u.Path == "" {
		u.Path = "/"
	}
	h := req.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	delete(h, "Host")
	var b io.ReadCloser = http.NoBody
	n := int64(0)
	var te []string
	if req.Body != nil && req.Body != http.NoBody {
		b, n = body, req.ContentLength
		switch {
		case n > 0:
			h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		default: // 0 with a body is "unknown" for client requests
			n, te = -1, []string{"chunked"}
		}
	}
	sr := &http.Request{
		Method:           cmp.Or(req.Method, http.MethodGet),
		URL:              u,
		Proto:            "HTTP/1.1",
		ProtoMajor:       1,
		ProtoMinor:       1,
		Header:           h,
		Body:             b,
		ContentLength:    n,
		TransferEncoding: te,
		Host:             cmp.Or(req.Host, req.URL.Host),
		RemoteAddr:       "127.0.0.1:0",
		RequestURI:       u.RequestURI(),
	}
	return sr.WithContext(ctx)
}

// requestBody is the caller's request body as the handler reads it; the
// transport closes it (once) when the handler returns or the exchange is
// aborted, as a RoundTripper must.
type requestBody struct {
	once sync.Once
	rc   io.ReadCloser
	err  error
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.rc == nil {
		return 0, io.EOF
	}
	return b.rc.Read(p)
}

func (b *requestBody) Close() error {
	b.once.Do(func() {
		if b.rc != nil {
			b.err = b.rc.Close()
		}
	})
	return b.err
}

// exchange is one request being served. It is the handler's
// http.ResponseWriter (and http.Flusher); those methods run on the
// handler's goroutine only. abort may run on any goroutine.
type exchange struct {
	t      *transport
	req    *http.Request // the caller's
	sreq   *http.Request // the handler's
	body   *requestBody
	cancel context.CancelFunc // ends sreq's context
	stop   func() bool        // stops the caller-context watch
	pr     *io.PipeReader     // a streamed response body
	pw     *io.PipeWriter
	head   chan *http.Response // the response head, sent once (buffered)

	abortOnce sync.Once
	aborted   chan struct{} // closed by abort, after err is set
	err       error

	// The handler's goroutine only.
	header    http.Header
	sent      http.Header // header as of WriteHeader
	status    int         // 0 until WriteHeader
	streaming bool        // the head is out; the body goes through pw
	buf       []byte      // written, not yet handed to the caller
	werr      error       // sticky error of a streamed write
}

func (ex *exchange) serve() {
	defer ex.done()
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				// server.Server recovers its own panics; this is a bug.
				ex.t.tb.Errorf("kvstreamtest: the server panicked: %v\n%s", v, debug.Stack())
			}
			ex.abort(errAborted)
		}
	}()
	ex.t.h.ServeHTTP(ex, ex.sreq)
	ex.finish()
}

// done releases the exchange once its handler has returned.
func (ex *exchange) done() {
	ex.stop()
	ex.cancel()
	_ = ex.body.Close()
	ex.t.mu.Lock()
	delete(ex.t.mu.live, ex)
	ex.t.mu.Unlock()
	ex.t.wg.Done()
}

// abort ends the exchange with err: a caller still waiting for the head
// gets err, one reading a streamed body gets err from Read, and the
// handler's context ends and its writes fail.
func (ex *exchange) abort(err error) {
	ex.abortOnce.Do(func() {
		ex.err = err
		close(ex.aborted)
		ex.cancel()
		_ = ex.pw.CloseWithError(err)
		_ = ex.body.Close()
	})
}

// Header implements http.ResponseWriter.
func (ex *exchange) Header() http.Header { return ex.header }

// WriteHeader implements http.ResponseWriter. Informational (1xx) heads
// are dropped; a second call is ignored, as net/http does.
func (ex *exchange) WriteHeader(code int) {
	if ex.status != 0 || code < 200 {
		return
	}
	ex.status = code
	ex.sent = ex.header.Clone()
}

// Write implements http.ResponseWriter.
func (ex *exchange) Write(p []byte) (int, error) {
	if ex.status == 0 {
		ex.WriteHeader(http.StatusOK)
	}
	if ex.werr != nil {
		return 0, ex.werr
	}
	if len(ex.buf)+len(p) < streamAfter {
		ex.buf = append(ex.buf, p...)
		return len(p), nil
	}
	if err := ex.FlushError(); err != nil {
		return 0, err
	}
	n, err := ex.pw.Write(p)
	if err != nil {
		ex.werr = err
	}
	return n, err
}

// Flush implements http.Flusher.
func (ex *exchange) Flush() { _ = ex.FlushError() }

// FlushError sends the head if it is not out yet, then what was written
// since the last flush; it returns the error that ends a stream (the
// caller closed the body or went away). http.ResponseController uses it.
func (ex *exchange) FlushError() error {
	if ex.status == 0 {
		ex.WriteHeader(http.StatusOK)
	}
	if !ex.streaming {
		ex.streaming = true
		n := int64(-1)
		if v, err := strconv.ParseInt(ex.sent.Get("Content-Length"), 10, 64); err == nil && v >= 0 {
			n = v
		}
		ex.sendHead(streamBody{ex}, n)
	}
	if ex.werr != nil {
		return ex.werr
	}
	if len(ex.buf) > 0 {
		_, err := ex.pw.Write(ex.buf)
		ex.buf = ex.buf[:0]
		if err != nil {
			ex.werr = err
		}
	}
	return ex.werr
}

// finish completes the response once the handler has returned: the whole
// body at once if it never streamed, else the rest of the stream and its
// end.
func (ex *exchange) finish() {
	if ex.status == 0 {
		ex.WriteHeader(http.StatusOK)
	}
	if ex.streaming {
		_ = ex.FlushError()
		_ = ex.pw.Close()
		return
	}
	if _, ok := ex.sent["Content-Length"]; !ok {
		ex.sent["Content-Length"] = []string{strconv.Itoa(len(ex.buf))}
	}
	ex.sendHead(io.NopCloser(bytes.NewReader(ex.buf)), int64(len(ex.buf)))
	ex.buf = nil
}

// sendHead hands the response head to RoundTrip.
func (ex *exchange) sendHead(body io.ReadCloser, n int64) {
	h := ex.sent
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	if _, ok := h["Content-Type"]; !ok && len(ex.buf) > 0 {
		h["Content-Type"] = []string{http.DetectContentType(ex.buf)}
	}
	ex.head <- &http.Response{
		Status:        strconv.Itoa(ex.status) + " " + http.StatusText(ex.status),
		StatusCode:    ex.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          body,
		ContentLength: n,
		Request:       ex.req,
	}
}

// streamBody is a streamed response body as the caller reads it. Closing
// it ends the handler's context, as closing a connection would.
type streamBody struct{ ex *exchange }

func (b streamBody) Read(p []byte) (int, error) { return b.ex.pr.Read(p) }

func (b streamBody) Close() error {
	_ = b.ex.pr.CloseWithError(errBodyClosed)
	b.ex.cancel()
	return nil
}
