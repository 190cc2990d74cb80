package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/fxamacker/cbor/v2"
)

// NoopConfig configures a no-op Kinesis endpoint (StartNoop).
type NoopConfig struct {
	// Shards is the number of shards ListShards and DescribeStreamSummary
	// report for every stream. Default 4.
	Shards int
	// RecordSize is the data size of the records GetRecords returns.
	// Default 100.
	RecordSize int
}

// Noop is a Kinesis endpoint that stores nothing: it accepts the Kinesis
// JSON 1.1 and CBOR 1.1 calls a benchmark makes (CreateStream,
// DeleteStream, DescribeStreamSummary, ListShards, PutRecord, PutRecords,
// GetShardIterator, GetRecords, RegisterStreamConsumer,
// DescribeStreamConsumer, DeregisterStreamConsumer, SubscribeToShard) and
// answers each with a minimal valid response, doing as little work as it
// can, so a client driven against it runs at the client's own limit (the
// ceiling RunEndpoint reports beside a real endpoint).
//
// What it answers: every stream exists, is ACTIVE and has
// NoopConfig.Shards shards; every put succeeds (PutRecords answers as many
// entries as the request has, counted without decoding the records);
// GetRecords returns a full page (the request's Limit, default 10,000) of
// NoopConfig.RecordSize-byte records, always behind the tip, so a reader
// never runs out; consumers are ACTIVE at once; a subscription gets each
// record later sent by PutRecord (to any stream or shard) as one
// SubscribeToShardEvent, and PutRecords records are not pushed. Unknown
// operations get UnknownOperationException.
//
// It listens on 127.0.0.1 (HTTP/1.1 and h2c) and is safe for concurrent
// use; Close stops it.
type Noop struct {
	// URL is the endpoint's base URL, http://127.0.0.1:port.
	URL string

	cfg    NoopConfig
	hs     *http.Server
	errc   chan error
	done   chan struct{}
	shards []noopShard
	// pages caches encoded GetRecords responses by codec and limit.
	pages sync.Map // noopPageKey → []byte

	mu   sync.Mutex
	subs map[chan []noopRecord]struct{}
}

type noopShard struct {
	ShardID      string            `json:"ShardId"`
	HashKeyRange noopHashKeyRange  `json:"HashKeyRange"`
	SeqRange     noopSequenceRange `json:"SequenceNumberRange"`
}

type noopHashKeyRange struct {
	Start string `json:"StartingHashKey"`
	End   string `json:"EndingHashKey"`
}

type noopSequenceRange struct {
	Start string `json:"StartingSequenceNumber"`
}

type noopPageKey struct {
	cbor  bool
	limit int
}

// noopSeq is the sequence number the no-op endpoint gives every record: a
// valid Kinesis-shaped 56-digit number.
const noopSeq = "49600000000000000000000000000000000000000000000000000002"

// noopMaxBody caps request bodies, as Kinesis does (7 MiB).
const noopMaxBody = 7 << 20

// StartNoop starts a no-op endpoint on a free 127.0.0.1 port.
func StartNoop(cfg NoopConfig) (*Noop, error) {
	if cfg.Shards == 0 {
		cfg.Shards = 4
	}
	if cfg.RecordSize == 0 {
		cfg.RecordSize = 100
	}
	if cfg.Shards < 1 || cfg.RecordSize < 0 {
		return nil, fmt.Errorf("kvstream: bench: invalid NoopConfig %+v", cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kvstream: bench: no-op endpoint: %w", err)
	}
	n := &Noop{
		URL:    "http://" + ln.Addr().String(),
		cfg:    cfg,
		errc:   make(chan error, 1),
		done:   make(chan struct{}),
		shards: noopShards(cfg.Shards),
		subs:   make(map[chan []noopRecord]struct{}),
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	n.hs = &http.Server{Handler: n, Protocols: protocols, ReadHeaderTimeout: 30 * time.Second}
	go func() { n.errc <- n.hs.Serve(ln) }()
	return n, nil
}

// Close stops the endpoint: running subscriptions end, and Close waits for
// the listener to stop. It returns nil after a clean stop.
func (n *Noop) Close() error {
	select {
	case <-n.done:
		return nil
	default:
	}
	close(n.done)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.hs.Shutdown(ctx); err != nil {
		_ = n.hs.Close()
	}
	if err := <-n.errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// noopShards splits the 128-bit hash-key space evenly into count shards,
// as CreateStream does.
func noopShards(count int) []noopShard {
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	step := new(big.Int).Div(space, big.NewInt(int64(count)))
	out := make([]noopShard, count)
	for i := range out {
		start := new(big.Int).Mul(step, big.NewInt(int64(i)))
		end := new(big.Int).Sub(new(big.Int).Add(start, step), big.NewInt(1))
		if i == count-1 {
			end.Sub(space, big.NewInt(1))
		}
		out[i] = noopShard{
			ShardID:      fmt.Sprintf("shardId-%012d", i),
			HashKeyRange: noopHashKeyRange{Start: start.String(), End: end.String()},
			SeqRange:     noopSequenceRange{Start: noopSeq},
		}
	}
	return out
}

// noopBufs pools request bodies.
var noopBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP implements http.Handler.
func (n *Noop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	isCBOR := strings.Contains(r.Header.Get("Content-Type"), "cbor")
	buf := noopBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer noopBufs.Put(buf)
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, noopMaxBody+1)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if buf.Len() > noopMaxBody {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	body := buf.Bytes()
	op, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	switch op {
	case "PutRecords":
		n.putRecords(w, body, isCBOR)
	case "PutRecord":
		n.putRecord(w, body, isCBOR)
	case "GetRecords":
		n.getRecords(w, body, isCBOR)
	case "GetShardIterator":
		n.reply(w, isCBOR, struct {
			ShardIterator string `json:"ShardIterator"`
		}{"noop"})
	case "SubscribeToShard":
		n.subscribe(w, r, isCBOR)
	case "CreateStream", "DeleteStream", "DeregisterStreamConsumer":
		n.reply(w, isCBOR, nil)
	case "DescribeStreamSummary":
		var in struct {
			StreamName string `json:"StreamName"`
			StreamARN  string `json:"StreamARN"`
		}
		if !n.decode(w, body, isCBOR, &in) {
			return
		}
		name := in.StreamName
		if name == "" {
			_, name, _ = strings.Cut(in.StreamARN, ":stream/")
		}
		type summary struct {
			StreamName              string   `json:"StreamName"`
			StreamARN               string   `json:"StreamARN"`
			StreamStatus            string   `json:"StreamStatus"`
			StreamModeDetails       any      `json:"StreamModeDetails"`
			RetentionPeriodHours    int      `json:"RetentionPeriodHours"`
			StreamCreationTimestamp noopTime `json:"StreamCreationTimestamp"`
			EnhancedMonitoring      []any    `json:"EnhancedMonitoring"`
			EncryptionType          string   `json:"EncryptionType"`
			OpenShardCount          int      `json:"OpenShardCount"`
			ConsumerCount           int      `json:"ConsumerCount"`
		}
		n.reply(w, isCBOR, struct {
			S summary `json:"StreamDescriptionSummary"`
		}{summary{
			StreamName: name, StreamARN: noopStreamARN(name), StreamStatus: "ACTIVE",
			StreamModeDetails:    map[string]string{"StreamMode": "PROVISIONED"},
			RetentionPeriodHours: 24, StreamCreationTimestamp: noopTime(time.Now()),
			EnhancedMonitoring: []any{}, EncryptionType: "NONE", OpenShardCount: len(n.shards),
		}})
	case "ListShards":
		n.reply(w, isCBOR, struct {
			Shards []noopShard `json:"Shards"`
		}{n.shards})
	case "RegisterStreamConsumer", "DescribeStreamConsumer":
		var in struct {
			StreamARN    string `json:"StreamARN"`
			ConsumerName string `json:"ConsumerName"`
			ConsumerARN  string `json:"ConsumerARN"`
		}
		if !n.decode(w, body, isCBOR, &in) {
			return
		}
		arn := in.ConsumerARN
		if arn == "" {
			arn = in.StreamARN + "/consumer/" + in.ConsumerName + ":1700000000"
		}
		name := in.ConsumerName
		if name == "" {
			_, after, _ := strings.Cut(arn, "/consumer/")
			name, _, _ = strings.Cut(after, ":")
		}
		type consumer struct {
			ConsumerName              string   `json:"ConsumerName"`
			ConsumerARN               string   `json:"ConsumerARN"`
			ConsumerStatus            string   `json:"ConsumerStatus"`
			ConsumerCreationTimestamp noopTime `json:"ConsumerCreationTimestamp"`
			StreamARN                 string   `json:"StreamARN,omitempty"`
		}
		c := consumer{ConsumerName: name, ConsumerARN: arn, ConsumerStatus: "ACTIVE", ConsumerCreationTimestamp: noopTime(time.Now())}
		if op == "RegisterStreamConsumer" {
			n.reply(w, isCBOR, struct {
				C consumer `json:"Consumer"`
			}{c})
			return
		}
		c.StreamARN, _, _ = strings.Cut(arn, "/consumer/")
		n.reply(w, isCBOR, struct {
			C consumer `json:"ConsumerDescription"`
		}{c})
	default:
		n.fail(w, isCBOR, http.StatusBadRequest, "UnknownOperationException", "")
	}
}

func noopStreamARN(name string) string {
	return "arn:aws:kinesis:us-east-1:000000000000:stream/" + name
}

// reply writes v (nil: an empty body) in the request's codec.
func (n *Noop) reply(w http.ResponseWriter, isCBOR bool, v any) {
	var b []byte
	var err error
	if v != nil {
		if isCBOR {
			b, err = cbor.Marshal(v)
		} else {
			b, err = json.Marshal(v)
		}
		if err != nil {
			n.fail(w, isCBOR, http.StatusInternalServerError, "InternalFailure", err.Error())
			return
		}
	}
	n.write(w, isCBOR, b)
}

func (n *Noop) write(w http.ResponseWriter, isCBOR bool, b []byte) {
	h := w.Header()
	if isCBOR {
		h["Content-Type"] = []string{"application/x-amz-cbor-1.1"}
	} else {
		h["Content-Type"] = []string{"application/x-amz-json-1.1"}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	_, _ = w.Write(b)
}

// fail writes a Kinesis error response.
func (n *Noop) fail(w http.ResponseWriter, isCBOR bool, status int, typ, msg string) {
	v := struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{typ, msg}
	var b []byte
	if isCBOR {
		b, _ = cbor.Marshal(v)
	} else {
		b, _ = json.Marshal(v)
	}
	h := w.Header()
	if isCBOR {
		h["Content-Type"] = []string{"application/x-amz-cbor-1.1"}
	} else {
		h["Content-Type"] = []string{"application/x-amz-json-1.1"}
	}
	h.Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decode decodes a request body into v, or answers SerializationException.
func (n *Noop) decode(w http.ResponseWriter, body []byte, isCBOR bool, v any) bool {
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	var err error
	if isCBOR {
		err = cbor.Unmarshal(body, v)
	} else {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		n.fail(w, isCBOR, http.StatusBadRequest, "SerializationException", err.Error())
		return false
	}
	return true
}

// noopPutEntry is one PutRecords result entry in JSON.
var noopPutEntry = []byte(`{"SequenceNumber":"` + noopSeq + `","ShardId":"shardId-000000000000"}`)

func (n *Noop) putRecords(w http.ResponseWriter, body []byte, isCBOR bool) {
	if isCBOR {
		var in struct {
			Records []cbor.RawMessage `json:"Records"`
		}
		if !n.decode(w, body, true, &in) {
			return
		}
		type entry struct {
			SequenceNumber string `json:"SequenceNumber"`
			ShardID        string `json:"ShardId"`
		}
		out := struct {
			FailedRecordCount int     `json:"FailedRecordCount"`
			Records           []entry `json:"Records"`
		}{Records: make([]entry, len(in.Records))}
		for i := range out.Records {
			out.Records[i] = entry{noopSeq, "shardId-000000000000"}
		}
		n.reply(w, true, out)
		return
	}
	count, ok := countJSONRecords(body)
	if !ok {
		n.fail(w, false, http.StatusBadRequest, "SerializationException", "malformed PutRecords request")
		return
	}
	buf := noopBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer noopBufs.Put(buf)
	buf.Grow(len(`{"FailedRecordCount":0,"Records":[]}`) + count*(len(noopPutEntry)+1))
	buf.WriteString(`{"FailedRecordCount":0,"Records":[`)
	for i := range count {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(noopPutEntry)
	}
	buf.WriteString(`]}`)
	n.write(w, false, buf.Bytes())
}

// countJSONRecords counts the elements of the array of a PutRecords JSON
// body (the only array in it) by scanning its structure: it counts the
// objects that open directly inside an array at depth 2. It reports false
// for unbalanced input; it does not otherwise validate.
func countJSONRecords(body []byte) (int, bool) {
	depth, count := 0, 0
	inArray := false
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			// Skip the string; an escaped quote does not end it.
			for i++; i < len(body) && body[i] != '"'; i++ {
				if body[i] == '\\' {
					i++
				}
			}
			if i >= len(body) {
				return 0, false
			}
		case '{':
			depth++
			if depth == 3 && inArray {
				count++
			}
		case '[':
			depth++
			if depth == 2 {
				inArray = true
			}
		case '}', ']':
			depth--
			if depth == 1 {
				inArray = false
			}
			if depth < 0 {
				return 0, false
			}
		}
	}
	return count, depth == 0
}

// noopRecord is a record as GetRecords and SubscribeToShard return it.
type noopRecord struct {
	SequenceNumber string   `json:"SequenceNumber"`
	Arrival        noopTime `json:"ApproximateArrivalTimestamp"`
	Data           []byte   `json:"Data"`
	PartitionKey   string   `json:"PartitionKey"`
}

func (n *Noop) putRecord(w http.ResponseWriter, body []byte, isCBOR bool) {
	n.mu.Lock()
	subscribed := len(n.subs) > 0
	n.mu.Unlock()
	if subscribed {
		var in struct {
			Data         []byte `json:"Data"`
			PartitionKey string `json:"PartitionKey"`
		}
		if !n.decode(w, body, isCBOR, &in) {
			return
		}
		rec := []noopRecord{{SequenceNumber: noopSeq, Arrival: noopTime(time.Now()), Data: in.Data, PartitionKey: in.PartitionKey}}
		n.mu.Lock()
		for c := range n.subs {
			select {
			case c <- rec:
			default: // a subscriber that is this far behind loses records
			}
		}
		n.mu.Unlock()
	}
	if isCBOR {
		n.reply(w, true, struct {
			SequenceNumber string `json:"SequenceNumber"`
			ShardID        string `json:"ShardId"`
		}{noopSeq, "shardId-000000000000"})
		return
	}
	n.write(w, false, noopPutEntry)
}

func (n *Noop) getRecords(w http.ResponseWriter, body []byte, isCBOR bool) {
	var in struct {
		Limit *int `json:"Limit"`
	}
	if !n.decode(w, body, isCBOR, &in) {
		return
	}
	limit := 10000
	if in.Limit != nil && *in.Limit >= 1 && *in.Limit < limit {
		limit = *in.Limit
	}
	key := noopPageKey{cbor: isCBOR, limit: limit}
	if b, ok := n.pages.Load(key); ok {
		n.write(w, isCBOR, b.([]byte))
		return
	}
	data := make([]byte, n.cfg.RecordSize)
	for i := range data {
		data[i] = byte(i*131 + 7)
	}
	recs := make([]noopRecord, limit)
	for i := range recs {
		recs[i] = noopRecord{SequenceNumber: noopSeq, Arrival: noopTime(time.Unix(1700000000, 0)), Data: data, PartitionKey: fmt.Sprintf("%016x", i)}
	}
	out := struct {
		Records            []noopRecord `json:"Records"`
		NextShardIterator  string       `json:"NextShardIterator"`
		MillisBehindLatest int64        `json:"MillisBehindLatest"`
	}{recs, "noop", 1000}
	var b []byte
	var err error
	if isCBOR {
		b, err = cbor.Marshal(out)
	} else {
		b, err = json.Marshal(out)
	}
	if err != nil {
		n.fail(w, isCBOR, http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	n.pages.Store(key, b)
	n.write(w, isCBOR, b)
}

// noopSubscribeDelay is how long a subscription waits before its response
// head: aws-sdk-go-v2 closes the request body of an event-stream call as
// soon as the response head arrives, and over plain HTTP/1.1 net/http can
// then fail its after-body check and close the connection (see the
// server's sdkBodyRaceDelay). A short pause lets the client finish.
const noopSubscribeDelay = 5 * time.Millisecond

// subscribe serves SubscribeToShard: the initial response, then one event
// per record PutRecord receives, until the client goes or Close.
func (n *Noop) subscribe(w http.ResponseWriter, r *http.Request, isCBOR bool) {
	c := make(chan []noopRecord, 1024)
	n.mu.Lock()
	n.subs[c] = struct{}{}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.subs, c)
		n.mu.Unlock()
	}()
	time.Sleep(noopSubscribeDelay)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	contentType := "application/x-amz-json-1.1"
	initial := []byte("{}")
	if isCBOR {
		contentType, initial = "application/x-amz-cbor-1.1", []byte{0xa0}
	}
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.WriteHeader(http.StatusOK)
	enc := eventstream.NewEncoder()
	send := func(eventType string, payload []byte) error {
		var h eventstream.Headers
		h.Set(":event-type", eventstream.StringValue(eventType))
		h.Set(":content-type", eventstream.StringValue(contentType))
		h.Set(":message-type", eventstream.StringValue("event"))
		if err := enc.Encode(w, eventstream.Message{Headers: h, Payload: payload}); err != nil {
			return err
		}
		return rc.Flush()
	}
	if send("initial-response", initial) != nil {
		return
	}
	for {
		select {
		case recs := <-c:
			ev := struct {
				Records                    []noopRecord `json:"Records"`
				ContinuationSequenceNumber string       `json:"ContinuationSequenceNumber"`
				MillisBehindLatest         int64        `json:"MillisBehindLatest"`
			}{recs, noopSeq, 0}
			var b []byte
			var err error
			if isCBOR {
				b, err = cbor.Marshal(ev)
			} else {
				b, err = json.Marshal(ev)
			}
			if err != nil || send("SubscribeToShardEvent", b) != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-n.done:
			return
		}
	}
}

// noopTime is a timestamp on the wire: epoch seconds in JSON, tag 1 with
// epoch milliseconds in CBOR (as the Kinesis CBOR protocol has it).
type noopTime time.Time

func (t noopTime) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	return fmt.Appendf(nil, "%d.%03d", ms/1000, ms%1000), nil
}

func (t noopTime) MarshalCBOR() ([]byte, error) {
	return cbor.Marshal(cbor.Tag{Number: 1, Content: time.Time(t).UnixMilli()})
}
