package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// targetPrefix starts every X-Amz-Target the server answers.
const targetPrefix = "Kinesis_20131202."

// request is one API call being served.
type request struct {
	ctx   context.Context
	op    string
	codec codec
	body  []byte
	// scratch is a per-request buffer ops may use to build a response;
	// it returns to a pool when the response is written.
	scratch *bytes.Buffer
	// hold is the request's share of the memory budget, released when
	// the response is written; ops may grow it for large responses.
	hold *hold
}

// rawBody is a response already encoded in the request's codec.
type rawBody []byte

// built returns a response an op appended to rq.scratch.AvailableBuffer()
// as it is when it fit there (it stays in the scratch buffer's spare room
// until the response is written), and otherwise after copying it into
// the scratch buffer, so that the pooled buffer grows to fit the next one.
func (rq *request) built(dst []byte) rawBody {
	if avail := rq.scratch.AvailableBuffer(); len(dst) <= cap(avail) && (len(dst) == 0 || &dst[0] == &avail[:1][0]) {
		return dst
	}
	rq.scratch.Write(dst)
	return rawBody(rq.scratch.Bytes())
}

// opFunc serves one operation. It returns the response struct (nil for
// an empty body, rawBody for a pre-encoded one) or the error to answer.
type opFunc func(s *Server, rq *request) (any, *apiError)

// operations maps an X-Amz-Target operation name to its handler.
var operations = map[string]opFunc{
	"CreateStream":                  (*Server).createStream,
	"DeleteStream":                  (*Server).deleteStream,
	"DescribeStream":                (*Server).describeStream,
	"DescribeStreamSummary":         (*Server).describeStreamSummary,
	"ListStreams":                   (*Server).listStreams,
	"ListShards":                    (*Server).listShards,
	"PutRecord":                     (*Server).putRecord,
	"PutRecords":                    (*Server).putRecords,
	"GetShardIterator":              (*Server).getShardIterator,
	"GetRecords":                    (*Server).getRecords,
	"IncreaseStreamRetentionPeriod": (*Server).increaseRetention,
	"DecreaseStreamRetentionPeriod": (*Server).decreaseRetention,
	"SplitShard":                    (*Server).splitShard,
	"MergeShards":                   (*Server).mergeShards,
	"UpdateShardCount":              (*Server).updateShardCount,
	"AddTagsToStream":               (*Server).addTagsToStream,
	"RemoveTagsFromStream":          (*Server).removeTagsFromStream,
	"ListTagsForStream":             (*Server).listTagsForStream,
	"TagResource":                   (*Server).tagResource,
	"UntagResource":                 (*Server).untagResource,
	"ListTagsForResource":           (*Server).listTagsForResource,
	"StartStreamEncryption":         (*Server).startStreamEncryption,
	"StopStreamEncryption":          (*Server).stopStreamEncryption,
	"EnableEnhancedMonitoring":      (*Server).enableEnhancedMonitoring,
	"DisableEnhancedMonitoring":     (*Server).disableEnhancedMonitoring,
	"DescribeLimits":                (*Server).describeLimits,
	"UpdateStreamMode":              (*Server).updateStreamMode,
	"RegisterStreamConsumer":        (*Server).registerStreamConsumer,
	"DescribeStreamConsumer":        (*Server).describeStreamConsumer,
	"ListStreamConsumers":           (*Server).listStreamConsumers,
	"DeregisterStreamConsumer":      (*Server).deregisterStreamConsumer,
	// Added to the API since 2020.
	"DescribeAccountSettings":    (*Server).describeAccountSettings,
	"UpdateAccountSettings":      (*Server).updateAccountSettings,
	"UpdateMaxRecordSize":        (*Server).updateMaxRecordSize,
	"UpdateStreamWarmThroughput": (*Server).updateStreamWarmThroughput,
	"PutResourcePolicy":          (*Server).putResourcePolicy,
	"GetResourcePolicy":          (*Server).getResourcePolicy,
	"DeleteResourcePolicy":       (*Server).deleteResourcePolicy,
	// ops_channels.go, ops_distribution.go
	"CreateChannel":                          (*Server).createChannel,
	"DescribeChannel":                        (*Server).describeChannel,
	"ListChannels":                           (*Server).listChannels,
	"UpdateChannel":                          (*Server).updateChannel,
	"DeleteChannel":                          (*Server).deleteChannel,
	"UpdateStreamRecordDistributionStrategy": (*Server).updateRecordDistribution,
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf keeps huge buffers out of the pool.
const maxPooledBuf = 8 << 20

func getBuf() *bytes.Buffer { b := bufPool.Get().(*bytes.Buffer); b.Reset(); return b }

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		bufPool.Put(b)
	}
}

// serveAPI serves one Kinesis API call: check the signature's headers,
// read the body within the memory budget, check the signature, dispatch
// on X-Amz-Target, answer in the request's codec.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := codecFor(r.Header.Get("Content-Type"))
	name, hasPrefix := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	fn, sfn := operations[name], streamingOperations[name]
	if !hasPrefix || (fn == nil && sfn == nil) {
		name = "Unknown"
	}
	om := s.metrics.op(name)
	authFailed := func(aerr *apiError) {
		if !strings.Contains(r.Header.Get("Content-Type"), "amz") {
			aerr.Status = http.StatusForbidden
		}
		s.finish(w, c, om, start, nil, aerr)
	}

	// With SigV4 on, everything but the payload hash is checked before a
	// byte of the body is read.
	var sig *pendingSig
	if s.auth != nil && !trusted(r) {
		var aerr *apiError
		if sig, aerr = s.auth.begin(r); aerr != nil {
			authFailed(aerr)
			return
		}
		if sig.claimedHash != "" {
			if aerr := sig.check(sig.claimedHash); aerr != nil {
				authFailed(aerr)
				return
			}
		}
	}
	if s.auth == nil && s.refuseUnsigned(w, r, c, om, start) {
		return
	}
	// The reader gate (admission.go): a bounded number of bodies are read
	// at once, shared out by client identity; the rest wait parked.
	key := clientKey(r)
	identifyConn(r) // the connection's identity, for the connection cap (memory.go)
	gated := time.Now()
	doneReading, ok := s.readers.acquire(r.Context(), key, readerCost(r), 0)
	gateWait := time.Since(gated)
	if !ok {
		s.answerUnread(w, r, c, om, start, s.throttleError(name)) // linger.go
		return
	}
	reading := true
	defer func() {
		if reading {
			doneReading()
		}
	}()
	h := s.budget.newHold(r.Context())
	defer h.release()
	body := getBuf()
	defer putBuf(body)
	var sum hash.Hash
	if sig != nil {
		sum = sha256.New()
	}
	if aerr := s.readBody(body, r, h, sum, sig != nil && sig.claimedHash == "", name); aerr != nil {
		// Over HTTP/1.x, a body left unread (throttled, too large) makes
		// net/http close the connection after the answer; a client still
		// sending may see the connection reset instead, which the SDKs
		// retry as they retry the throttle. A throttled body is lingered
		// on (linger.go).
		h.release()
		if aerr.Type != errRequestEntityTooLarge {
			s.answerUnread(w, r, c, om, start, aerr)
			return
		}
		s.finish(w, c, om, start, nil, aerr)
		return
	}
	if sig != nil {
		got := hex.EncodeToString(sum.Sum(nil))
		if sig.claimedHash != "" {
			if got != sig.claimedHash {
				authFailed(newAPIError(errInvalidSignature, "The provided 'x-amz-content-sha256' header does not match what was computed."))
				return
			}
		} else if aerr := sig.check(got); aerr != nil {
			authFailed(aerr)
			return
		}
		h.verified()
	}
	// Fair admission (admission.go): bounded work at once, shared out by
	// client identity.
	// SubscribeToShard's stream holds its own share (efo.go), not this,
	// and gives its reader back now: a subscription runs for minutes.
	if sfn != nil {
		reading = false
		doneReading()
	} else {
		// A small request gives its reader back before admission; a bulk
		// one keeps it until admitted, so bulk bodies are not read faster
		// than admission takes them: a client's bodies read and waiting
		// are bounded by its share of the reader gate, and a flood's
		// further bodies wait unread (and cost nothing when throttled).
		cost := s.admit.cost(body.Len())
		if cost == 1 {
			reading = false
			doneReading()
		}
		// The two gates' waits together are bounded by admitWait, so a
		// throttled request is answered within about that (plus its body).
		done, ok := s.admit.acquireWithin(r.Context(), key, cost, body.Len(), admitWait-gateWait)
		if reading {
			reading = false
			doneReading()
		}
		if !ok {
			h.release()
			s.finish(w, c, om, start, nil, s.throttleError(name))
			return
		}
		defer done()
	}
	// AWS's checks of the content type, body, target and signature's
	// presence, in AWS's order (protocol.go). With SigV4 verification on,
	// the signature was checked first, before the body was read.
	if typ := s.screen(w, r, body.Bytes()); typ != "" {
		om.done(start, typ)
		return
	}
	if fn == nil && sfn == nil {
		s.finish(w, c, om, start, nil, newAPIError(errUnknownOperation, ""))
		return
	}
	s.settle() // apply the stream changes that are due (lifecycle.go)
	scratch := getBuf()
	defer putBuf(scratch)
	rq := &request{ctx: r.Context(), op: name, codec: c, body: body.Bytes(), scratch: scratch, hold: h}
	if sfn != nil {
		// A streamed response: the op writes it; only an error before
		// the stream starts is answered here.
		if aerr := sfn(s, w, rq, func() { om.done(start, "") }); aerr != nil {
			s.finish(w, c, om, start, nil, aerr)
		}
		return
	}
	resp, aerr := fn(s, rq)
	s.finish(w, c, om, start, resp, aerr)
}

// readBody reads r's body into buf in steps of bodyStep, taking each
// step's share of the memory budget into h first (and of the unverified
// allowance while unverified), feeding sum if non-nil. A declared
// Content-Length over MaxBodyBytes is refused at once (413), a body that
// turns out longer too; Content-Length is never used to size anything.
func (s *Server) readBody(buf *bytes.Buffer, r *http.Request, h *hold, sum hash.Hash, unverified bool, op string) *apiError {
	limit := s.cfg.MaxBodyBytes
	tooLarge := newAPIError(errRequestEntityTooLarge, "Request body must be at most "+strconv.FormatInt(limit, 10)+" bytes")
	if r.ContentLength > limit {
		return tooLarge
	}
	h.small = r.ContentLength >= 0 && bodyCharge*(r.ContentLength+1) <= smallCharge
	for {
		step := min(int64(bodyStep), limit+1-int64(buf.Len()))
		if r.ContentLength >= 0 {
			// A hint for the step only: a body longer than declared
			// costs more steps, never an allocation made up front.
			step = min(step, max(r.ContentLength+1-int64(buf.Len()), 512))
		}
		if !h.grow(bodyCharge*(int64(buf.Len())+step), unverified) {
			return s.throttleError(op)
		}
		// Read straight into the buffer's spare room (the MinRead more
		// keeps ReadFrom from growing it at the step's end).
		buf.Grow(int(step) + bytes.MinRead)
		before := buf.Len()
		_, err := buf.ReadFrom(&io.LimitedReader{R: r.Body, N: step})
		n := buf.Len() - before
		if sum != nil {
			sum.Write(buf.Bytes()[before:])
		}
		if int64(buf.Len()) > limit {
			return tooLarge
		}
		if err != nil {
			return newAPIError(errSerialization, "Unable to read the request body: the client stopped sending it or sent it too slowly.")
		}
		if int64(n) < step { // the body ended
			return nil
		}
	}
}

// refuseUnsigned answers, without reading the body, a request that carries
// no signature (with verification off; with it on, the verifier refuses it
// before the body) when its body is over bodyStep: AWS's answer to it is
// MissingAuthenticationTokenException whatever the body holds, and reading
// megabytes to say so would let unsigned clients spend the budget. A
// smaller body is read and screened as AWS orders its checks (protocol.go).
// The connection is closed after the answer.
func (s *Server) refuseUnsigned(w http.ResponseWriter, r *http.Request, c codec, om *opMetrics, start time.Time) bool {
	if r.ContentLength >= 0 && r.ContentLength <= bodyStep {
		return false
	}
	if mt := mediaType(r.Header.Get("Content-Type")); mt != mediaJSON11 && mt != mediaCBOR11 {
		return false
	}
	if !parseTarget(r).known {
		return false
	}
	typ, msg := authPresence(r)
	if typ == "" {
		return false
	}
	w.Header().Set("Connection", "close")
	s.finish(w, c, om, start, nil, newAPIError(typ, msg))
	return true
}

// finish writes the response or error and records metrics.
func (s *Server) finish(w http.ResponseWriter, c codec, om *opMetrics, start time.Time, resp any, aerr *apiError) {
	h := w.Header()
	if _, ok := h["X-Amzn-Requestid"]; !ok {
		h["X-Amzn-Requestid"] = []string{requestID()}
	}
	if aerr == nil {
		var body []byte
		switch v := resp.(type) {
		case nil:
		case rawBody:
			body = v
		default:
			var err error
			if body, err = c.encode(v); err != nil {
				aerr = newAPIError(errInternalFailure, "Internal service failure.")
				s.cfg.Logger.Error("kvstream server: encode response", "err", err)
			}
		}
		if aerr == nil {
			h["Content-Type"] = []string{c.contentType()}
			h["Content-Length"] = []string{strconv.Itoa(len(body))}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
			om.done(start, "")
			return
		}
	}
	writeError(w, c, aerr)
	om.done(start, aerr.Type)
	if aerr.Type == errThroughputExceeded {
		s.metrics.throttles.WithLabelValues(om.name).Inc()
	}
}

// errorBody is the body of an error response.
type errorBody struct {
	Type    string `json:"__type"`
	Message string `json:"message,omitempty"`
}

// serializationBody is the body of a SerializationException: AWS's
// deserializer writes "Message" with a capital M.
type serializationBody struct {
	Type    string `json:"__type"`
	Message string `json:"Message,omitempty"`
}

// writeError writes aerr in codec c with X-Amzn-ErrorType set.
func writeError(w http.ResponseWriter, c codec, aerr *apiError) {
	var eb any = errorBody{Type: aerr.Type, Message: aerr.Msg}
	if aerr.Type == errSerialization {
		eb = serializationBody{Type: aerr.Type, Message: aerr.Msg}
	}
	body, err := c.encode(eb)
	if err != nil {
		body = []byte(`{"__type":"InternalFailure"}`)
		c = codecJSON
	}
	h := w.Header()
	h["X-Amzn-Errortype"] = []string{aerr.Type}
	h["Content-Type"] = []string{c.contentType()}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(aerr.Status)
	_, _ = w.Write(body)
}

// requestID returns a random version-4 UUID.
func requestID() string {
	const hex = "0123456789abcdef"
	a, b := rand.Uint64(), rand.Uint64()
	var u [16]byte
	for i := range 8 {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var out [36]byte
	j := 0
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hex[x>>4], hex[x&0xf]
		j += 2
	}
	return string(out[:])
}

// errCanceled reports whether err is a cancelled or timed-out context.
func errCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
