package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/fxamacker/cbor/v2"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// The SubscribeToShard wire format, read with a raw HTTP client and the
// SDK's event-stream decoder.

// rawStream is a SubscribeToShard response read message by message.
type rawStream struct {
	t    *testing.T
	resp *http.Response
	br   *bufio.Reader
	dec  *eventstream.Decoder
}

// rawSubscribe posts a SubscribeToShard request in codec c (body already
// encoded) and returns the response.
func rawSubscribe(t *testing.T, env *testEnv, contentType string, body []byte) *rawStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, env.url+"/", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-Amz-Target", targetPrefix+"SubscribeToShard")
	req.Header.Set("Content-Type", contentType)
	signTest(t, req, body)
	resp, err := env.hs.Client().Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return &rawStream{t: t, resp: resp, br: bufio.NewReader(resp.Body), dec: eventstream.NewDecoder()}
}

// next returns the next message's headers (as strings) and payload.
func (r *rawStream) next() (map[string]string, []byte) {
	r.t.Helper()
	m, err := r.dec.Decode(r.br, nil)
	require.NoError(r.t, err)
	h := make(map[string]string)
	for _, hd := range m.Headers {
		h[hd.Name] = hd.Value.String()
	}
	return h, m.Payload
}

// end checks the response ends after the last message.
func (r *rawStream) end() {
	r.t.Helper()
	rest, err := io.ReadAll(r.br)
	require.NoError(r.t, err)
	require.Empty(r.t, rest)
}

// jsonEvent is SubscribeToShardEvent decoded from JSON.
type jsonEvent struct {
	Records []struct {
		SequenceNumber              string
		ApproximateArrivalTimestamp float64
		Data                        []byte
		PartitionKey                string
	}
	ContinuationSequenceNumber *string
	MillisBehindLatest         *int64
	ChildShards                []childShardOut
}

func TestEventStreamJSONWire(t *testing.T) {
	e := newEFOEnv(t, Config{SubscriptionHeartbeat: time.Minute, SubscriptionTakeover: time.Millisecond}, 1)
	put := e.put("k", "hello\x00world")
	body := `{"ConsumerARN":"` + e.consumerARN + `","ShardId":"shardId-000000000000","StartingPosition":{"Type":"TRIM_HORIZON"}}`
	rs := rawSubscribe(t, e.testEnv, contentTypeJSON, []byte(body))
	require.Equal(t, http.StatusOK, rs.resp.StatusCode)
	require.Equal(t, contentTypeEventStream, rs.resp.Header.Get("Content-Type"))
	require.Len(t, rs.resp.Header.Get("X-Amzn-Requestid"), 36)

	h, p := rs.next()
	require.Equal(t, map[string]string{":message-type": "event", ":event-type": "initial-response", ":content-type": contentTypeJSON}, h)
	require.Equal(t, "{}", string(p))

	h, p = rs.next()
	require.Equal(t, map[string]string{":message-type": "event", ":event-type": "SubscribeToShardEvent", ":content-type": contentTypeJSON}, h)
	var ev jsonEvent
	require.NoError(t, json.Unmarshal(p, &ev), "%s", p)
	require.Len(t, ev.Records, 1)
	r := ev.Records[0]
	require.Equal(t, *put.SequenceNumber, r.SequenceNumber)
	require.Equal(t, "hello\x00world", string(r.Data))
	require.Equal(t, "k", r.PartitionKey)
	require.InDelta(t, float64(e.now().UnixMilli())/1000, r.ApproximateArrivalTimestamp, 0.001)
	require.Equal(t, *put.SequenceNumber, *ev.ContinuationSequenceNumber)
	require.Equal(t, int64(0), *ev.MillisBehindLatest)
	require.NotContains(t, string(p), "ChildShards")

	// A takeover ends this stream with an exception message.
	e.advance(time.Millisecond) // the takeover interval
	rawSubscribe(t, e.testEnv, contentTypeJSON, []byte(body)).next()
	h, p = rs.next()
	require.Equal(t, map[string]string{":message-type": "exception", ":exception-type": "ResourceInUseException", ":content-type": contentTypeJSON}, h)
	var msg struct{ Message string }
	require.NoError(t, json.Unmarshal(p, &msg))
	require.Contains(t, msg.Message, "took over")
	rs.end()
}

func TestEventStreamCBORWire(t *testing.T) {
	e := newEFOEnv(t, Config{SubscriptionHeartbeat: time.Minute}, 1)
	data := []byte{0, 1, 2, 0xff}
	res, err := e.db.PutRecord(context.Background(), "s", engine.Entry{PartitionKey: "ключ", Data: data})
	require.NoError(t, err)
	body := mustCBOR(t, map[string]any{"ConsumerARN": e.consumerARN, "ShardId": "shardId-000000000000",
		"StartingPosition": map[string]any{"Type": "AT_SEQUENCE_NUMBER", "SequenceNumber": res.SequenceNumber.String()}})
	rs := rawSubscribe(t, e.testEnv, contentTypeCBOR, body)
	require.Equal(t, http.StatusOK, rs.resp.StatusCode)

	h, p := rs.next()
	require.Equal(t, "initial-response", h[":event-type"])
	require.Equal(t, contentTypeCBOR, h[":content-type"])
	require.Equal(t, []byte{0xa0}, p)

	h, p = rs.next()
	require.Equal(t, "SubscribeToShardEvent", h[":event-type"])
	require.Equal(t, contentTypeCBOR, h[":content-type"])
	var ev struct {
		Records []struct {
			SequenceNumber              string
			ApproximateArrivalTimestamp cbor.Tag
			Data                        []byte
			PartitionKey                string
		}
		ContinuationSequenceNumber string
		MillisBehindLatest         int64
	}
	require.NoError(t, cbor.Unmarshal(p, &ev))
	require.Len(t, ev.Records, 1)
	r := ev.Records[0]
	require.Equal(t, res.SequenceNumber.String(), r.SequenceNumber)
	require.Equal(t, data, r.Data)
	require.Equal(t, "ключ", r.PartitionKey)
	require.Equal(t, uint64(1), r.ApproximateArrivalTimestamp.Number, "tag 1")
	require.EqualValues(t, res.SequenceNumber.Written, r.ApproximateArrivalTimestamp.Content.(uint64)/1000, "integer epoch milliseconds")
	require.Equal(t, res.SequenceNumber.String(), ev.ContinuationSequenceNumber)

	// An error before the stream starts is an ordinary CBOR error.
	bad := mustCBOR(t, map[string]any{"ConsumerARN": e.consumerARN, "ShardId": "shardId-000000000007",
		"StartingPosition": map[string]any{"Type": "LATEST"}})
	code, hdr, out := e.post("SubscribeToShard", contentTypeCBOR, bad)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, errResourceNotFound, hdr.Get("X-Amzn-Errortype"))
	var eb errorBody
	require.NoError(t, cbor.Unmarshal(out, &eb))
	require.Equal(t, errResourceNotFound, eb.Type)
}

// TestEventBuilder checks the hand-written event encoders against the
// generic ones: the JSON against encoding/json of the wire shape, the CBOR
// against fxamacker/cbor.
func TestEventBuilder(t *testing.T) {
	recs := []engine.Record{
		{SequenceNumber: engine.SequenceNumber{ShardCreated: 1748779200, Shard: 3, Counter: 7, Written: 1748779201},
			PartitionKey: "a\"b\\c\u2028", Data: []byte("x"), Timestamp: time.UnixMilli(1748779201123)},
		{SequenceNumber: engine.SequenceNumber{ShardCreated: 1748779200, Shard: 3, Counter: 8, Written: 1748779202},
			PartitionKey: "k", Data: nil, Timestamp: time.UnixMilli(1748779202000)},
		{SequenceNumber: engine.SequenceNumber{ShardCreated: 1748779200, Shard: 3, Counter: 9, Written: 1748779202},
			PartitionKey: "k", Data: bytes.Repeat([]byte{0xab}, 300), Timestamp: time.UnixMilli(1748779202999)},
	}
	h0, h1 := engine.HashKey{}, engine.MaxHashKey
	children := []engine.ChildShard{{ShardID: 4, ParentShards: []engine.ShardID{3}, HashKeyRange: engine.HashRange{Start: h0, End: h1}}}
	cont := recs[2].SequenceNumber

	type wantRecord struct {
		SequenceNumber              string     `json:"SequenceNumber"`
		ApproximateArrivalTimestamp *timestamp `json:"ApproximateArrivalTimestamp"`
		Data                        []byte     `json:"Data"`
		PartitionKey                string     `json:"PartitionKey"`
	}
	type wantEvent struct {
		Records                    []wantRecord    `json:"Records"`
		ContinuationSequenceNumber *string         `json:"ContinuationSequenceNumber,omitempty"`
		MillisBehindLatest         int64           `json:"MillisBehindLatest"`
		ChildShards                []childShardOut `json:"ChildShards,omitempty"`
	}
	for _, tc := range []struct {
		name     string
		n        int
		cont     *engine.SequenceNumber
		behind   int64
		children []engine.ChildShard
	}{
		{"empty", 0, &cont, 0, nil},
		{"records", 3, &cont, 1234, nil},
		{"shard end", 2, nil, 0, children},
	} {
		want := wantEvent{Records: []wantRecord{}, MillisBehindLatest: tc.behind, ChildShards: childShards(tc.children)}
		if tc.cont != nil {
			s := tc.cont.String()
			want.ContinuationSequenceNumber = &s
		}
		for _, r := range recs[:tc.n] {
			d := r.Data
			if d == nil {
				d = []byte{}
			}
			want.Records = append(want.Records, wantRecord{r.SequenceNumber.String(), ts(r.Timestamp), d, r.PartitionKey})
		}
		for _, c := range []codec{codecJSON, codecCBOR} {
			b := eventBuilder{codec: c}
			for range 2 { // a builder is reused
				b.reset()
				for i := range recs[:tc.n] {
					b.add(&recs[i])
				}
				got, err := b.finish(tc.cont, tc.behind, tc.children)
				require.NoError(t, err)
				wantEnc, err := c.encode(want)
				require.NoError(t, err)
				if c == codecJSON {
					require.JSONEq(t, string(wantEnc), string(got), tc.name)
				} else {
					var g, w any
					require.NoError(t, cbor.Unmarshal(got, &g), tc.name)
					require.NoError(t, cbor.Unmarshal(wantEnc, &w))
					require.Equal(t, w, g, tc.name)
				}
			}
		}
	}
}

// TestSubscribeToShardPlainSDKClient subscribes many times with an
// unmodified SDK client (plain net/http transport over TCP), which races
// with its own request-body check (see sdkBodyRaceDelay): every
// subscription must survive to deliver a record. Without the server's
// pause about one subscription in 30 dies, so this fails most of the
// time.
func TestSubscribeToShardPlainSDKClient(t *testing.T) {
	e := newEFOEnv(t, Config{SubscriptionHeartbeat: time.Minute, SubscriptionTakeover: time.Millisecond}, 1)
	kc := e.plainClient() // no efoClient workarounds but a codec per subscription
	for i := range 60 {
		e.advance(time.Millisecond) // the previous one may still run: take over
		sub := subscribe(t, kc, e.consumerARN, shard0, latest())
		sub.next(efoHangGuard)
		e.put("k", "r")
		recs, _ := sub.records(1, efoHangGuard)
		require.Equal(t, "r", string(recs[0].Data), "subscription %d", i)
		sub.close()
	}
}

// serveEFO runs Serve with cfg (on 127.0.0.1, in a temporary
// directory, without fsync) until the returned stop is called; stop
// returns Serve's error. It returns a client env for the address and the
// ARN of consumer "c" registered with stream "s" (one shard).
func serveEFO(t *testing.T, cfg Config) (env *testEnv, kc *kinesis.Client, arn string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg.Addr, cfg.DataDir, cfg.Engine = "127.0.0.1:0", t.TempDir(), &engine.Options{NoSync: true}
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, cfg, func(addr string) { addrc <- addr }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(efoHangGuard):
		t.Fatal("Serve did not become ready")
	}
	env = &testEnv{t: t, url: "http://" + addr}
	kc = efoClient(env)
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	reg, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{
		StreamARN: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/s"), ConsumerName: aws.String("c")})
	require.NoError(t, err)
	stop = func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(efoHangGuard):
			t.Fatal("Serve did not shut down")
			return nil
		}
	}
	return env, kc, *reg.Consumer.ConsumerARN, stop
}

// TestSubscribeToShardThroughServe runs a subscription through Serve, whose
// http.Server has read and write timeouts far shorter than a
// subscription: they must not cut it. It lives out its lifetime (on the
// wall clock, as the timeouts) and ends cleanly: the stream's end is
// written after the timeouts, so a deadline left on the connection would
// fail it. Only lower bounds on time: load makes the stream last longer.
func TestSubscribeToShardThroughServe(t *testing.T) {
	const timeouts = 300 * time.Millisecond
	_, kc, arn, stop := serveEFO(t, Config{ReadTimeout: timeouts, WriteTimeout: timeouts,
		SubscriptionHeartbeat: 100 * time.Millisecond, SubscriptionLifetime: 4 * timeouts})
	start := time.Now()
	sub := subscribe(t, kc, arn, shard0, latest())
	events := 0
	for sub.next(efoHangGuard) != nil {
		events++
	}
	require.NoError(t, sub.es.Err(), "the timeouts did not cut the stream")
	require.GreaterOrEqual(t, time.Since(start), 4*timeouts, "it lived out its lifetime")
	require.Positive(t, events)
	require.NoError(t, stop())
}

// TestSubscribeToShardServeShutdown: shutting Serve down ends running
// subscriptions at once. Their lifetime and Serve's shutdown timeout are
// far past the hang guard, so a shutdown that waited for them would fail.
func TestSubscribeToShardServeShutdown(t *testing.T) {
	_, kc, arn, stop := serveEFO(t, Config{SubscriptionLifetime: time.Hour, ShutdownTimeout: time.Hour})
	sub := subscribe(t, kc, arn, shard0, latest())
	sub.next(efoHangGuard)
	require.NoError(t, stop())
	err := sub.ended(efoHangGuard)
	if err != nil {
		// The connection may be cut rather than ended cleanly.
		require.False(t, errors.As(err, new(*types.ResourceInUseException)), "%v", err)
	}
}

// TestSubscribeToShardMetrics: running subscriptions and pushed records
// show on /metrics.
func TestSubscribeToShardMetrics(t *testing.T) {
	e := newEFOEnv(t, Config{SubscriptionHeartbeat: time.Minute}, 1)
	sub := subscribe(t, e.kc, e.consumerARN, shard0, latest())
	sub.next(efoHangGuard)
	e.put("k", "abc")
	sub.records(1, efoHangGuard)
	metrics := func() string {
		resp, err := e.hs.Client().Get(e.url + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// The server counts an event once written, which may be just after
	// the client has it.
	waitFor(t, "the record to be counted", func() bool {
		return strings.Contains(metrics(), "kvstream_server_subscribe_records_out_total 1\n")
	})
	m := metrics()
	require.Contains(t, m, "kvstream_server_subscriptions 1\n")
	require.Contains(t, m, "kvstream_server_subscribe_bytes_out_total 4\n")
	require.Contains(t, m, `kvstream_server_requests_total{error="none",op="SubscribeToShard"} 1`)
	require.True(t, strings.Contains(m, `op="RegisterStreamConsumer"`))
}
