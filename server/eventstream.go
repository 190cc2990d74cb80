package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/kvstream/kvstream/engine"
)

// The SubscribeToShard response body: an application/vnd.amazon.eventstream
// stream of messages framed by aws-sdk-go-v2's event-stream encoder, with
// payloads in the request's codec (KINESIS.md §1):
//
//	:message-type=event     :event-type=initial-response        {}
//	:message-type=event     :event-type=SubscribeToShardEvent   {"Records":[…],"ContinuationSequenceNumber":…,"MillisBehindLatest":…,"ChildShards":[…]}
//	:message-type=exception :exception-type=ResourceInUseException  {"message":…}

// contentTypeEventStream is the Content-Type of a SubscribeToShard response.
const contentTypeEventStream = "application/vnd.amazon.eventstream"

// Event-stream header names and values.
const (
	hdrMessageType   = ":message-type"
	hdrEventType     = ":event-type"
	hdrExceptionType = ":exception-type"
	hdrContentType   = ":content-type"

	messageTypeEvent     = "event"
	messageTypeException = "exception"

	eventInitialResponse = "initial-response"
	eventSubscribe       = "SubscribeToShardEvent"
)

// eventWriter writes event-stream messages to a streaming HTTP response,
// flushing after each so the client sees every event as it is sent. It
// is not safe for concurrent use.
type eventWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	enc   *eventstream.Encoder
	codec codec
	// headers are reused across messages (values are replaced in place).
	headers eventstream.Headers
}

func newEventWriter(w http.ResponseWriter, c codec) *eventWriter {
	return &eventWriter{w: w, rc: http.NewResponseController(w), enc: eventstream.NewEncoder(), codec: c}
}

// sdkBodyRaceDelay is how long a subscription waits before its response
// head, for aws-sdk-go-v2 clients on plain http. The SDK (smithy-go
// v1.28.9) closes the request body as soon as the response head arrives,
// and its closed body's WriteTo returns io.EOF; over plain TCP, net/http
// writes the body straight to the socket and only then checks it for
// extra bytes (with WriteTo). If the SDK closed the body in between, that
// check fails with io.EOF and net/http closes the connection, killing the
// event stream (about 1 subscription in 30 on a loaded 2-core machine).
// Ordinary responses are read before that happens; a stream is not. A
// short pause lets the client finish writing first. TLS connections (real
// Kinesis) and HTTP/2 do not have the race.
const sdkBodyRaceDelay = 5 * time.Millisecond

// start writes the response head (HTTP 200, event-stream Content-Type)
// and the initial-response event. The http.Server's read and write
// deadlines are replaced: a subscription lasts minutes, longer than any
// request timeout, so there is no read deadline and each event gets a
// write deadline of its own (eventWriteTimeout).
func (ew *eventWriter) start() error {
	time.Sleep(sdkBodyRaceDelay)
	// Not every ResponseWriter supports deadlines (a test recorder, say);
	// then there is no deadline to lift.
	_ = ew.rc.SetReadDeadline(time.Time{})
	h := ew.w.Header()
	h["Content-Type"] = []string{contentTypeEventStream}
	ew.w.WriteHeader(http.StatusOK)
	payload := []byte("{}")
	if ew.codec == codecCBOR {
		payload = []byte{0xa0} // an empty map
	}
	return ew.event(eventInitialResponse, payload)
}

// event writes one event message.
func (ew *eventWriter) event(eventType string, payload []byte) error {
	ew.headers = ew.headers[:0]
	ew.headers.Set(hdrEventType, eventstream.StringValue(eventType))
	ew.headers.Set(hdrContentType, eventstream.StringValue(ew.codec.contentType()))
	ew.headers.Set(hdrMessageType, eventstream.StringValue(messageTypeEvent))
	return ew.write(payload)
}

// exception writes an exception message for aerr: the stream's terminal
// message. Its type is the event-stream name of the error (InternalFailure
// is InternalFailureException there).
func (ew *eventWriter) exception(aerr *apiError) error {
	typ := aerr.Type
	if typ == errInternalFailure {
		typ = "InternalFailureException"
	}
	payload, err := ew.codec.encode(struct {
		Message string `json:"message"`
	}{aerr.Msg})
	if err != nil {
		return err
	}
	ew.headers = ew.headers[:0]
	ew.headers.Set(hdrExceptionType, eventstream.StringValue(typ))
	ew.headers.Set(hdrContentType, eventstream.StringValue(ew.codec.contentType()))
	ew.headers.Set(hdrMessageType, eventstream.StringValue(messageTypeException))
	return ew.write(payload)
}

// eventWriteTimeout bounds the write of one event: a client that stops
// reading (but keeps its connection) is dropped rather than holding its
// subscription's goroutine and share of the memory budget. Its stream is
// reset (HTTP/2 RST_STREAM; over HTTP/1.1 the connection closes): the
// SDKs report a stream error, and KCL subscribes again from its last
// ContinuationSequenceNumber.
const eventWriteTimeout = 10 * time.Second

func (ew *eventWriter) write(payload []byte) error {
	_ = ew.rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
	if err := ew.enc.Encode(ew.w, eventstream.Message{Headers: ew.headers, Payload: payload}); err != nil {
		return err
	}
	return ew.rc.Flush()
}

// eventBuilder builds SubscribeToShardEvent payloads record by record, so
// records can be encoded straight from an engine.Iterator (whose data is
// borrowed until the next record) without being copied first. A builder
// is reused across events.
type eventBuilder struct {
	codec codec
	// buf is the JSON payload being built, or the CBOR records (the CBOR
	// array needs its length first; finish assembles the payload in out).
	buf []byte
	out []byte
	n   int
	// rc prints the records' sequence numbers and times, across events.
	rc recordCache
}

// reset starts a new event.
func (b *eventBuilder) reset() {
	b.n = 0
	b.buf = b.buf[:0]
	if b.codec == codecJSON {
		b.buf = append(b.buf, `{"Records":[`...)
	}
}

// add appends one record to the event.
func (b *eventBuilder) add(r *engine.Record) {
	if b.codec == codecJSON {
		if b.n > 0 {
			b.buf = append(b.buf, ',')
		}
		b.buf = appendRecordJSON(b.buf, r, &b.rc)
	} else {
		b.buf = appendRecordCBOR(b.buf, r, &b.rc.seqs)
	}
	b.n++
}

// records returns the records encoded since reset (for a feed segment);
// it is valid until the next reset.
func (b *eventBuilder) records() []byte {
	if b.codec == codecJSON {
		return b.buf[len(`{"Records":[`):]
	}
	return b.buf
}

// addEncoded appends n records encoded by another builder of the same
// codec (records of a feed segment).
func (b *eventBuilder) addEncoded(data []byte, n int) {
	if n == 0 {
		return
	}
	if b.codec == codecJSON && b.n > 0 {
		b.buf = append(b.buf, ',')
	}
	b.buf = append(b.buf, data...)
	b.n += n
}

// finish completes the event and returns its payload, valid until the
// next reset. cont is the ContinuationSequenceNumber (omitted when nil,
// as at the end of a closed shard, where children are the ChildShards).
func (b *eventBuilder) finish(cont *engine.SequenceNumber, millisBehind int64, children []engine.ChildShard) ([]byte, error) {
	if b.codec == codecJSON {
		b.buf = append(b.buf, ']')
		if cont != nil {
			b.buf = append(b.buf, `,"ContinuationSequenceNumber":"`...)
			b.buf = cont.AppendTo(b.buf)
			b.buf = append(b.buf, '"')
		}
		b.buf = append(b.buf, `,"MillisBehindLatest":`...)
		b.buf = strconv.AppendInt(b.buf, millisBehind, 10)
		b.buf = appendChildShardsJSON(b.buf, children)
		b.buf = append(b.buf, '}')
		return b.buf, nil
	}
	fields := uint64(2)
	if cont != nil {
		fields++
	}
	if len(children) > 0 {
		fields++
	}
	out := appendCBORHead(b.out[:0], 5, fields)
	out = appendCBORText(out, "Records")
	out = appendCBORHead(out, 4, uint64(b.n))
	out = append(out, b.buf...)
	if cont != nil {
		var seq [64]byte
		cs := cont.AppendTo(seq[:0])
		out = appendCBORText(out, "ContinuationSequenceNumber")
		out = appendCBORHead(out, 3, uint64(len(cs)))
		out = append(out, cs...)
	}
	out = appendCBORText(out, "MillisBehindLatest")
	out = appendCBORInt(out, millisBehind)
	if len(children) > 0 {
		enc, err := cborEnc.Marshal(childShards(children))
		if err != nil {
			return nil, err
		}
		out = appendCBORText(out, "ChildShards")
		out = append(out, enc...)
	}
	b.out = out
	return out, nil
}

// appendRecordCBOR appends one record as a CBOR map of the Record shape
// (the timestamp as tag 1 + epoch milliseconds, as the Java SDKs read it),
// its sequence number printed through seqs.
func appendRecordCBOR(dst []byte, r *engine.Record, seqs *seqDigits) []byte {
	dst = appendCBORHead(dst, 5, 4)
	dst = appendCBORText(dst, "SequenceNumber")
	var seq [64]byte
	s := seqs.appendSeq(seq[:0], r.SequenceNumber)
	dst = appendCBORHead(dst, 3, uint64(len(s)))
	dst = append(dst, s...)
	dst = appendCBORText(dst, "ApproximateArrivalTimestamp")
	dst = appendCBORTimestamp(dst, r.Timestamp)
	dst = appendCBORText(dst, "Data")
	dst = appendCBORHead(dst, 2, uint64(len(r.Data)))
	dst = append(dst, r.Data...)
	dst = appendCBORText(dst, "PartitionKey")
	return appendCBORText(dst, r.PartitionKey)
}

// appendCBORText appends a CBOR text string.
func appendCBORText(dst []byte, s string) []byte {
	dst = appendCBORHead(dst, 3, uint64(len(s)))
	return append(dst, s...)
}
