package server

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Answering a request whose body is left unread.
//
// A request throttled before its body was read (the reader gate, the
// memory budget, a connection over the cap) may still be sending it. Over
// HTTP/1.x the client must see the answer rather than a reset, and a
// client that writes its whole body before reading the answer sees it only
// once the server has taken the body. Reading every throttled body in full
// before answering did that, but made a flood of large bodies cost the
// server a copy of every byte sent: under 200 writers of 1 MiB PutRecords,
// reading and discarding throttled and refused bodies took two thirds of
// the server's CPU, and a well-behaved client kept a tenth of its rate.
//
// So a small body (declared at most drainAtOnce) is still read at once and
// the connection kept; a larger one is answered first, with Connection:
// close (clients that read while they send, as the Go and Java SDKs do,
// have the answer at once and close), and what the client goes on sending
// is then read and dropped through one byte rate shared by all such
// connections (lingerRate), for at most lingerTime. A client that sends
// everything before reading still gets its answer while the flood is small;
// under a large one its connection is closed after lingerTime (a reset,
// which the SDKs retry like the throttle), and the flood's unread bodies
// cost a bounded share of the CPU.

const (
	drainAtOnce = 64 << 10
	lingerRate  = 16 << 20 // bytes per second, across connections
	lingerChunk = 16 << 10
	lingerTime  = time.Second
)

// lingerer discards what clients send after their answer, at a shared
// rate. It is safe for concurrent use.
type lingerer struct {
	lim *rate.Limiter
}

func newLingerer() *lingerer {
	return &lingerer{lim: rate.NewLimiter(lingerRate, lingerChunk)}
}

var lingerBufs = sync.Pool{New: func() any { return new([lingerChunk]byte) }}

// discard reads and drops at most limit bytes from r at the shared rate,
// until r ends or fails or deadline passes (a read blocked past it must be
// ended by the caller's read deadline).
func (l *lingerer) discard(r io.Reader, limit int64, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	buf := lingerBufs.Get().(*[lingerChunk]byte)
	defer lingerBufs.Put(buf)
	for limit > 0 {
		n := int(min(int64(len(buf)), limit))
		if l.lim.WaitN(ctx, n) != nil {
			return // the deadline comes before the rate allows more
		}
		m, err := r.Read(buf[:n])
		limit -= int64(m)
		if err != nil {
			return
		}
	}
}

// answerUnread answers r with aerr, its body left (partly) unread: a
// small HTTP/1.x body is read first and the connection kept, a larger one
// is answered first and then lingered on (see above). HTTP/2 resets the
// stream's unread body cleanly.
func (s *Server) answerUnread(w http.ResponseWriter, r *http.Request, c codec, om *opMetrics, start time.Time, aerr *apiError) {
	if r.ProtoMajor != 1 {
		s.finish(w, c, om, start, nil, aerr)
		return
	}
	if r.ContentLength >= 0 && r.ContentLength <= drainAtOnce {
		_, _ = io.CopyN(io.Discard, r.Body, drainAtOnce+1)
		s.finish(w, c, om, start, nil, aerr)
		return
	}
	rc := http.NewResponseController(w)
	if rc.EnableFullDuplex() != nil {
		s.finish(w, c, om, start, nil, aerr) // net/http closes after the answer
		return
	}
	w.Header().Set("Connection", "close")
	s.finish(w, c, om, start, nil, aerr)
	if rc.Flush() != nil {
		return
	}
	deadline := time.Now().Add(lingerTime)
	_ = rc.SetReadDeadline(deadline)
	s.linger.discard(r.Body, s.cfg.MaxBodyBytes, deadline)
}
