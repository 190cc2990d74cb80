package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/server"
	"github.com/stretchr/testify/require"
)

// startServer starts kvstream's wire server over a fresh NoSync engine on
// 127.0.0.1 and returns its URL and DB.
func startServer(t *testing.T) (string, *engine.DB) {
	t.Helper()
	db, err := engine.Open(t.TempDir(), &engine.Options{Profile: engine.ProfileSmall, NoSync: true})
	require.NoError(t, err)
	srv, err := server.New(db, server.Config{})
	require.NoError(t, err)
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.Protocols = server.Protocols()
	hs.Start()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		require.NoError(t, db.Close())
	})
	return hs.URL, db
}

// quickEndpointConfig is a short run: tiny phases, few workers.
func quickEndpointConfig(url string) EndpointConfig {
	return EndpointConfig{
		Endpoint: url, Shards: 2, Workers: 2, BatchSize: 50, RecordSize: 32,
		Duration: 100 * time.Millisecond, Limit: 500, Preload: 1000, Rounds: 2, Ceiling: true,
	}
}

func TestEndpointAgainstServer(t *testing.T) {
	url, db := startServer(t)
	ctx := context.Background()
	b, err := OpenEndpoint(ctx, quickEndpointConfig(url))
	require.NoError(t, err)
	require.NotEmpty(t, b.Ceiling())
	names, err := db.ListStreams()
	require.NoError(t, err)
	require.Equal(t, []string{b.Stream()}, names, "the benchmark stream is created on the server")
	require.True(t, b.target.metrics, "kvstream serve exports process_cpu_seconds_total")

	var progressCalls int
	for _, w := range EndpointWorkloads {
		r, err := b.Run(ctx, w, func(done, total int64) {
			progressCalls++
			require.LessOrEqual(t, done, total)
		})
		require.NoError(t, err, w)
		t.Log(r)
		require.Equal(t, w, r.Workload)
		require.Equal(t, 2, r.Rounds)
		require.Len(t, r.RoundRates, 2)
		require.Len(t, r.RoundRatios, 2)
		for _, m := range []EndpointMeasurement{r.Target, *r.Ceiling} {
			require.Positive(t, m.Records, w)
			require.Positive(t, m.Ops, w)
			require.Positive(t, m.RecordsPerSec, w)
			require.Positive(t, m.P50, w)
			require.LessOrEqual(t, m.P50, m.P99, w)
			require.LessOrEqual(t, m.P99, m.P999, w)
			require.Zero(t, m.Failed, w)
		}
		require.Positive(t, r.Ratio, w)
		require.LessOrEqual(t, r.RatioMin, r.Ratio)
		require.GreaterOrEqual(t, r.RatioMax, r.Ratio)
	}
	require.Positive(t, progressCalls)

	// The puts reached the server: the stream holds at least the preload.
	d, err := db.DescribeStream(b.Stream())
	require.NoError(t, err)
	var stored int64
	for _, sh := range d.Shards {
		it, err := db.Iterate(b.Stream(), sh.ShardID, engine.TrimHorizon())
		require.NoError(t, err)
		for it.Next() {
			stored++
		}
		require.NoError(t, it.Err())
		require.NoError(t, it.Close())
	}
	require.GreaterOrEqual(t, stored, int64(1000))

	require.NoError(t, b.Close())
	names, err = db.ListStreams()
	require.NoError(t, err)
	require.Empty(t, names, "Close deletes the stream it created")
}

func TestEndpointExistingStream(t *testing.T) {
	url, db := startServer(t)
	require.NoError(t, db.CreateStream("mine", engine.StreamConfig{ShardCount: 1}))
	cfg := quickEndpointConfig(url)
	cfg.Stream, cfg.Ceiling, cfg.Rounds = "mine", false, 1
	res, err := RunEndpoint(context.Background(), cfg, EndpointPutRecords)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Positive(t, res[0].Target.Records)
	require.Nil(t, res[0].Ceiling)
	require.Zero(t, res[0].Ratio)
	names, err := db.ListStreams()
	require.NoError(t, err)
	require.Equal(t, []string{"mine"}, names, "a given stream is kept")

	var buf bytes.Buffer
	require.NoError(t, WriteEndpointTable(&buf, res...))
	require.Contains(t, buf.String(), "putrecords  endpoint")
	require.NotContains(t, buf.String(), "no-op")
}

func TestEndpointNoop(t *testing.T) {
	n, err := StartNoop(NoopConfig{Shards: 3, RecordSize: 10})
	require.NoError(t, err)
	defer func() { require.NoError(t, n.Close()) }()
	cfg := quickEndpointConfig(n.URL)
	cfg.Ceiling = false
	res, err := RunEndpoint(context.Background(), cfg)
	require.NoError(t, err)
	require.Len(t, res, len(EndpointWorkloads))
	for _, r := range res {
		require.Positive(t, r.Target.Records, r.Workload)
		require.Zero(t, r.Target.ServerCPUPerRecord, "the no-op endpoint has no /metrics")
	}
	var buf bytes.Buffer
	require.NoError(t, json.NewEncoder(&buf).Encode(res))
	var back []EndpointResult
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	require.Equal(t, res, back)
}

func TestEndpointBadConfig(t *testing.T) {
	for _, cfg := range []EndpointConfig{
		{Endpoint: "127.0.0.1:4567"},
		{Endpoint: "ftp://x"},
		{Endpoint: "http://127.0.0.1:1", BatchSize: 501},
		{Endpoint: "http://127.0.0.1:1", Limit: 10001},
		{Endpoint: "http://127.0.0.1:1", Workers: -1},
	} {
		_, err := OpenEndpoint(context.Background(), cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

func TestNoopCountJSONRecords(t *testing.T) {
	for _, tc := range []struct {
		body string
		n    int
		ok   bool
	}{
		{`{"StreamName":"s","Records":[]}`, 0, true},
		{`{"Records":[{"Data":"AA==","PartitionKey":"a"}],"StreamName":"s"}`, 1, true},
		{`{"Records": [ {"Data":"AA==","PartitionKey":"{[\"}"} , {"PartitionKey":"}]","Data":""} ]}`, 2, true},
		{`{"StreamName":"{\\","Records":[{},{},{}]}`, 3, true},
		{`{"Records":[{"PartitionKey":"a`, 0, false},
		{`{"Records":[{}]`, 0, false},
		{`]]`, 0, false},
	} {
		n, ok := countJSONRecords([]byte(tc.body))
		require.Equal(t, tc.ok, ok, tc.body)
		if ok {
			require.Equal(t, tc.n, n, tc.body)
		}
	}
}

func TestNoopCBOR(t *testing.T) {
	n, err := StartNoop(NoopConfig{})
	require.NoError(t, err)
	defer func() { require.NoError(t, n.Close()) }()
	post := func(op string, in any) (int, []byte) {
		body, err := cbor.Marshal(in)
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, n.URL, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Amz-Target", "Kinesis_20131202."+op)
		req.Header.Set("Content-Type", "application/x-amz-cbor-1.1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "application/x-amz-cbor-1.1", resp.Header.Get("Content-Type"))
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, b
	}
	type entry struct {
		Data         []byte
		PartitionKey string
	}
	code, b := post("PutRecords", map[string]any{"StreamName": "s", "Records": []entry{{[]byte("a"), "k"}, {[]byte("b"), "k"}}})
	require.Equal(t, http.StatusOK, code)
	var put struct {
		FailedRecordCount int
		Records           []struct{ SequenceNumber, ShardId string }
	}
	require.NoError(t, cbor.Unmarshal(b, &put))
	require.Zero(t, put.FailedRecordCount)
	require.Len(t, put.Records, 2)
	require.NotEmpty(t, put.Records[1].SequenceNumber)

	code, b = post("GetRecords", map[string]any{"ShardIterator": "x", "Limit": 3})
	require.Equal(t, http.StatusOK, code)
	var get struct {
		Records []struct {
			Data                        []byte
			ApproximateArrivalTimestamp cbor.Tag
		}
		NextShardIterator string
	}
	require.NoError(t, cbor.Unmarshal(b, &get))
	require.Len(t, get.Records, 3)
	require.Len(t, get.Records[0].Data, 100)
	require.EqualValues(t, 1, get.Records[0].ApproximateArrivalTimestamp.Number, "timestamps are tag 1")
	require.NotEmpty(t, get.NextShardIterator)

	code, _ = post("NoSuchOperation", map[string]any{})
	require.Equal(t, http.StatusBadRequest, code)
}
