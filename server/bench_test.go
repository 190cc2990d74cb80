package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/fxamacker/cbor/v2"
	"github.com/kvstream/kvstream/engine"
)

// Benchmark setup, as the issue specifies: PutRecords of 500 records of
// 100 bytes into a 4-shard stream, from several client goroutines. The
// engine uses ProfileThroughput with the default durability (fsync before
// every acknowledgement, group commit).
const (
	benchBatch      = 500
	benchRecordSize = 100
	benchShards     = 4
	// benchParallelism × GOMAXPROCS client goroutines.
	benchParallelism = 4
)

func benchEngineOptions() *engine.Options {
	return &engine.Options{Profile: engine.ProfileThroughput}
}

// benchEntries returns n batches of distinct random keys and payloads.
func benchBatches(n int) [][]engine.Entry {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][]engine.Entry, n)
	for i := range out {
		out[i] = make([]engine.Entry, benchBatch)
		for j := range out[i] {
			data := make([]byte, benchRecordSize)
			for k := range data {
				data[k] = byte(r.Uint32())
			}
			out[i][j] = engine.Entry{PartitionKey: fmt.Sprintf("key-%d", r.Uint64()), Data: data}
		}
	}
	return out
}

// embeddedRate is the embedded path's records/s in this run, for the ratio.
var embeddedRate atomic.Uint64

// BenchmarkServerPutRecords compares PutRecords through the wire server
// (aws-sdk-go-v2 client, JSON 1.1, HTTP/1.1 on loopback) with the embedded
// engine path, in the same run. It reports records/s for each, and for the
// server the ratio to the embedded path.
func BenchmarkServerPutRecords(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		db, err := engine.Open(b.TempDir(), benchEngineOptions())
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if err := db.CreateStream("bench", engine.StreamConfig{ShardCount: benchShards, Partitioner: engine.PartitionerMD5}); err != nil {
			b.Fatal(err)
		}
		batches := benchBatches(16)
		var next atomic.Uint64
		b.SetParallelism(benchParallelism)
		b.SetBytes(benchBatch * benchRecordSize)
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			entries := make([]engine.Entry, benchBatch)
			for pb.Next() {
				copy(entries, batches[next.Add(1)%uint64(len(batches))])
				res, err := db.PutRecords(ctx, "bench", entries)
				if err != nil {
					b.Error(err)
					return
				}
				for _, r := range res {
					if r.Err != nil {
						b.Error(r.Err)
						return
					}
				}
			}
		})
		rate := float64(b.N*benchBatch) / time.Since(start).Seconds()
		b.ReportMetric(rate, "records/s")
		embeddedRate.Store(uint64(rate))
	})

	b.Run("server-sdk", func(b *testing.B) {
		env := newEnvSync(b, Config{}, benchEngineOptions(), true) // fsync'd, like the embedded side
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		// The SDK's standard retryer, as a real producer runs with: under
		// heavy machine load a transport error was seen once in the run.
		kc := env.client(func(o *kinesis.Options) {
			o.HTTPClient = &http.Client{Transport: tr}
			o.Retryer = retry.NewStandard()
		})
		ctx := context.Background()
		if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("bench"), ShardCount: aws.Int32(benchShards)}); err != nil {
			b.Fatal(err)
		}
		var reqs []*kinesis.PutRecordsInput
		for _, batch := range benchBatches(16) {
			in := &kinesis.PutRecordsInput{StreamName: aws.String("bench"), Records: make([]types.PutRecordsRequestEntry, len(batch))}
			for i, e := range batch {
				in.Records[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(e.PartitionKey), Data: e.Data}
			}
			reqs = append(reqs, in)
		}
		var next atomic.Uint64
		b.SetParallelism(benchParallelism)
		b.SetBytes(benchBatch * benchRecordSize)
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				out, err := kc.PutRecords(ctx, reqs[next.Add(1)%uint64(len(reqs))])
				if err != nil {
					b.Error(err)
					return
				}
				if *out.FailedRecordCount != 0 {
					b.Errorf("%d records failed", *out.FailedRecordCount)
					return
				}
			}
		})
		rate := float64(b.N*benchBatch) / time.Since(start).Seconds()
		b.ReportMetric(rate, "records/s")
		if e := embeddedRate.Load(); e > 0 {
			b.ReportMetric(rate/float64(e), "ratio-to-embedded")
		}
	})
}

// BenchmarkHandlerPutRecords measures the server's own cost for one
// 500 × 100 B PutRecords (decode, validate, engine call, encode) by
// calling ServeHTTP directly, without a network or a client, on a NoSync
// DB. It reports records/s and allocations per request.
func BenchmarkHandlerPutRecords(b *testing.B) {
	o := benchEngineOptions()
	o.NoSync = true
	env := newEnv(b, Config{}, o)
	if err := env.db.CreateStream("bench", engine.StreamConfig{ShardCount: benchShards, Partitioner: engine.PartitionerMD5}); err != nil {
		b.Fatal(err)
	}
	body := benchPutRecordsBody()
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("X-Amz-Target", targetPrefix+"PutRecords")
		req.Header.Set("Content-Type", contentTypeJSON)
		fakeSign(req)
		clear(w.h)
		w.code = 0
		env.srv.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "records/s")
}

// benchPutRecordsBody is a 500 × 100 B PutRecords JSON body for stream
// "bench", as the SDKs write it.
func benchPutRecordsBody() []byte { return putRecordsBody(benchBatches(1)[0]) }

// putRecordsBody is the PutRecords JSON body of batch for stream "bench",
// members in the order aws-sdk-go-v2 writes them.
func putRecordsBody(batch []engine.Entry) []byte {
	body := []byte(`{"Records":[`)
	for i, e := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"Data":"`...)
		body = base64.StdEncoding.AppendEncode(body, e.Data)
		body = append(body, `","PartitionKey":"`...)
		body = append(body, e.PartitionKey...)
		body = append(body, `"}`...)
	}
	return append(body, `],"StreamName":"bench"}`...)
}

// BenchmarkDecodePutRecordsJSON measures the fast decoder alone on a
// 500 × 100 B PutRecords body, reusing one batch as the server's pool does.
func BenchmarkDecodePutRecordsJSON(b *testing.B) {
	body := benchPutRecordsBody()
	var batch putBatch
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !decodePutRecordsJSON(body, &batch) || len(batch.entries) != benchBatch {
			b.Fatal("not decoded")
		}
		clear(batch.entries)
	}
}

// BenchmarkDecodePutRecordsCBOR measures the CBOR decode (codecCBOR, as
// the Java SDKs and KCL send it) of a 500 × 100 B PutRecords body.
func BenchmarkDecodePutRecordsCBOR(b *testing.B) {
	in := putRecordsInput{StreamName: aws.String("bench")}
	for _, e := range benchBatches(1)[0] {
		in.Records = append(in.Records, putRecordsEntry{Data: e.Data, PartitionKey: aws.String(e.PartitionKey)})
	}
	body, err := cbor.Marshal(in)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var out putRecordsInput
		if aerr := codecCBOR.decode(body, &out); aerr != nil || len(out.Records) != len(in.Records) {
			b.Fatal("not decoded", aerr)
		}
	}
}

// BenchmarkAppendPutRecordsJSON measures encoding a 500-record
// PutRecords response, numbered as the engine numbers one batch: each
// shard's records get consecutive counters.
func BenchmarkAppendPutRecordsJSON(b *testing.B) {
	results := make([]engine.PutResult, benchBatch)
	var counters [benchShards]uint64
	for i := range results {
		sh := i % benchShards
		counters[sh]++
		results[i].ShardID = engine.ShardID(sh)
		results[i].SequenceNumber.ShardCreated = 1_700_000_000
		results[i].SequenceNumber.Shard = uint32(sh)
		results[i].SequenceNumber.Counter = 1_000_000 + counters[sh]
		results[i].SequenceNumber.Written = 1_700_000_100
	}
	var dst []byte
	b.ReportAllocs()
	for b.Loop() {
		dst = appendPutRecordsJSON(dst[:0], 0, results, nil, "NONE")
	}
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkDecodePutRecordJSON compares the fast PutRecord decoder with
// the generic one (codecJSON: AWS's type checks, then encoding/json) on
// an SDK-shaped body of one 100 B record.
func BenchmarkDecodePutRecordJSON(b *testing.B) {
	e := benchBatches(1)[0][0]
	body := []byte(`{"Data":"`)
	body = base64.StdEncoding.AppendEncode(body, e.Data)
	body = append(body, `","PartitionKey":"`+e.PartitionKey+`","StreamName":"bench"}`...)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in putRecordInput
			if !decodePutRecordJSON(body, &in) {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in putRecordInput
			if err := codecJSON.decode(body, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendGetRecordsJSON measures encoding a GetRecords page of
// 10,000 records of 100 B (one shard's consecutive records, as the engine
// returns them).
func BenchmarkAppendGetRecordsJSON(b *testing.B) {
	var out engine.GetRecordsOutput
	for _, batch := range benchBatches(20) {
		for _, e := range batch {
			n := len(out.Records)
			out.Records = append(out.Records, engine.Record{
				SequenceNumber: engine.SequenceNumber{ShardCreated: 1_700_000_000, Shard: 1, Counter: uint64(1_000_000 + n), Written: uint64(1_700_000_100 + n/4000)},
				Timestamp:      time.UnixMilli(int64(1_700_000_100_000 + n/4)),
				Data:           e.Data,
				PartitionKey:   e.PartitionKey,
			})
		}
	}
	out.NextShardIterator = "AAAAAAAAAAGr2xHHwvGTkx2GxDsXeBRVbFwBn9rhMuyfq4kw"
	var dst []byte
	b.ReportAllocs()
	for b.Loop() {
		dst = appendGetRecordsJSON(dst[:0], &out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(out.Records)), "ns/record")
}
