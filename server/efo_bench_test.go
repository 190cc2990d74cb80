package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/kvstream/kvstream/engine"
)

// Enhanced fan-out benchmarks, on the test server (newEnv: 127.0.0.1,
// HTTP/1.1, the engine with ProfileThroughput and NoSync, so the numbers
// are the push path's, not the disk's).
//
//	go test -run XXX -bench SubscribeToShard -benchtime 2s ./server/

// BenchmarkSubscribeToShardLatency measures put→event latency: one
// aws-sdk-go-v2 client puts a record (PutRecord over HTTP/1.1) and waits
// until an aws-sdk-go-v2 subscriber (SubscribeToShard at LATEST) has it,
// one record at a time. It reports the p50 and p99 of that latency and of
// the PutRecord round trip alone, so the push path's own cost is the
// difference.
func BenchmarkSubscribeToShardLatency(b *testing.B) {
	env := newEnv(b, Config{}, benchEngineOptions())
	b.Cleanup(env.srv.Close)
	kc := efoClient(env)
	ctx := context.Background()
	if err := env.db.CreateStream("lat", engine.StreamConfig{ShardCount: 1, Partitioner: engine.PartitionerMD5}); err != nil {
		b.Fatal(err)
	}
	reg, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(env.srv.streamARN("lat")), ConsumerName: aws.String("c")})
	if err != nil {
		b.Fatal(err)
	}
	sub := subscribe(b, kc, *reg.Consumer.ConsumerARN, shard0, latest())
	sub.next(5 * time.Second)
	got := make(chan int, 1)
	go func() {
		for ev := range sub.es.Events() {
			e, ok := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
			if !ok {
				continue
			}
			for _, r := range e.Value.Records {
				i, _ := strconv.Atoi(string(r.Data))
				got <- i
			}
		}
		close(got)
	}()
	lat := make([]time.Duration, 0, b.N)
	put := make([]time.Duration, 0, b.N)
	data := make([]byte, 0, 16)
	b.ResetTimer()
	for i := range b.N {
		data = strconv.AppendInt(data[:0], int64(i), 10)
		start := time.Now()
		if _, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("lat"), PartitionKey: aws.String("k"), Data: data}); err != nil {
			b.Fatal(err)
		}
		put = append(put, time.Since(start))
		select {
		case j, ok := <-got:
			if !ok {
				b.Fatalf("the subscription ended: %v", sub.es.Err())
			}
			if j != i {
				b.Fatalf("got record %d, want %d", j, i)
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("record %d was not pushed", i)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(percentile(put, 0.50)), "put-p50-ms")
	b.ReportMetric(ms(percentile(put, 0.99)), "put-p99-ms")
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fanOutSingle is the per-consumer rate with one consumer in this run,
// for the 8-consumer ratio.
var fanOutSingle atomic.Uint64

// BenchmarkSubscribeToShardFanOut measures fan-out at saturation: k
// consumers subscribe to one shard at LATEST, then a producer commits b.N
// records of 100 B (engine PutRecords, 500 per batch) as fast as it can,
// and each consumer times how long it takes to receive all of them.
// Consumers are raw HTTP/1.1 clients that decode the event stream with the
// SDK's decoder and count records without decoding them, so the client's
// CPU does not hide the server's. It reports the slowest consumer's
// records/s and MB/s, the producer's records/s, and with 8 consumers the
// ratio of the slowest consumer's rate to the single consumer's rate in
// the same run. At saturation every consumer costs CPU (reading, encoding,
// framing, the socket), so on a 2-core machine the ratio is well below 1:
// see BenchmarkSubscribeToShardFanOutPaced for throughput per consumer at
// a given write rate.
func BenchmarkSubscribeToShardFanOut(b *testing.B) {
	for _, k := range []int{1, 8} {
		b.Run(fmt.Sprintf("consumers=%d", k), func(b *testing.B) {
			r := runFanOut(b, k, 0)
			b.ReportMetric(r.consumerRate, "records/s/consumer")
			b.ReportMetric(r.consumerRate*benchRecordSize/1e6, "MB/s/consumer")
			b.ReportMetric(r.producerRate, "producer-records/s")
			if k == 1 {
				fanOutSingle.Store(uint64(r.consumerRate))
			} else if one := fanOutSingle.Load(); one > 0 {
				b.ReportMetric(r.consumerRate/float64(one), "ratio-to-1-consumer")
			}
		})
	}
}

// BenchmarkSubscribeToShardFanOutPaced measures throughput per consumer
// at a fixed write rate: the producer commits 100-byte records at rate
// records/s (batches every 5 ms) and 1 or 8 consumers read them as they
// commit. 20,000 records/s of 100 B is 2 MB/s, the read throughput
// Kinesis guarantees each enhanced fan-out consumer per shard; 100,000 is
// five times that. It reports the slowest consumer's records/s, its ratio
// to the producer's rate (1.0: every consumer keeps up, no loss of
// throughput per consumer), and the p99 delay from a batch's commit to its
// arrival at a consumer, over all batches and consumers.
func BenchmarkSubscribeToShardFanOutPaced(b *testing.B) {
	for _, rate := range []int{20000, 100000} {
		for _, k := range []int{1, 8} {
			b.Run(fmt.Sprintf("rate=%d/consumers=%d", rate, k), func(b *testing.B) {
				r := runFanOut(b, k, rate)
				b.ReportMetric(r.consumerRate, "records/s/consumer")
				b.ReportMetric(r.consumerRate/r.producerRate, "ratio-to-producer")
				b.ReportMetric(ms(r.lagP99), "lag-p99-ms")
			})
		}
	}
}

type fanOutResult struct {
	consumerRate float64 // the slowest consumer's records/s
	producerRate float64
	lagP99       time.Duration
}

// runFanOut subscribes k raw consumers to a one-shard stream, writes b.N
// records of benchRecordSize bytes (at rate records/s, or as fast as
// possible when rate is 0), and waits until every consumer has them.
func runFanOut(b *testing.B, k, rate int) fanOutResult {
	env := newEnv(b, Config{}, benchEngineOptions())
	b.Cleanup(env.srv.Close)
	if err := env.db.CreateStream("fan", engine.StreamConfig{ShardCount: 1, Partitioner: engine.PartitionerMD5}); err != nil {
		b.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * k
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	batch := benchBatch
	if rate > 0 {
		batch = max(1, rate/200) // a batch every 5 ms
	}
	nBatches := (b.N + batch - 1) / batch
	committed := make([]atomic.Int64, nBatches) // unix ns of each batch's commit
	type result struct {
		arrived []int64 // unix ns at which each batch was complete
		err     error
	}
	var ready sync.WaitGroup
	results := make(chan result, k)
	for c := range k {
		cons, aerr := env.srv.registerConsumer("fan", fmt.Sprintf("c%d", c))
		if aerr != nil {
			b.Fatal(aerr)
		}
		arn := env.srv.consumerARN("fan", cons.Name, cons.CreatedAt)
		ready.Add(1)
		go func() {
			arrived, err := rawFanOutConsumer(ctx, hc, env.url, arn, b.N, batch, ready.Done)
			results <- result{arrived, err}
		}()
	}
	ready.Wait() // every consumer is subscribed and has had its first event

	batches := benchBatches(8)
	for i := range batches {
		for j := range batches[i] {
			batches[i][j].PartitionKey = "k"
		}
	}
	b.SetBytes(benchRecordSize)
	b.ResetTimer()
	start := time.Now()
	for i, n := 0, 0; n < b.N; i++ {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(n) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
		m := min(batch, b.N-n)
		src := batches[i%len(batches)]
		res, err := env.db.PutRecords(ctx, "fan", src[:m]) // m ≤ batch ≤ benchBatch
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		committed[i].Store(time.Now().UnixNano())
		n += m
	}
	producerRate := float64(b.N) / time.Since(start).Seconds()
	var slowest time.Duration
	var lags []time.Duration
	for range k {
		r := <-results
		if r.err != nil {
			b.Fatal(r.err)
		}
		slowest = max(slowest, time.Duration(r.arrived[len(r.arrived)-1]-start.UnixNano()))
		for i, t := range r.arrived {
			lags = append(lags, time.Duration(max(0, t-committed[i].Load())))
		}
	}
	b.StopTimer()
	return fanOutResult{consumerRate: float64(b.N) / slowest.Seconds(), producerRate: producerRate, lagP99: percentile(lags, 0.99)}
}

// rawFanOutConsumer subscribes at LATEST, calls ready after the first
// event, and reads until want records came. It returns, for each batch of
// batch records, the time (unix ns) at which its last record arrived.
func rawFanOutConsumer(ctx context.Context, hc *http.Client, url, arn string, want, batch int, ready func()) ([]int64, error) {
	readyOnce := sync.OnceFunc(ready)
	defer readyOnce()
	body := `{"ConsumerARN":"` + arn + `","ShardId":"shardId-000000000000","StartingPosition":{"Type":"LATEST"}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Amz-Target", targetPrefix+"SubscribeToShard")
	req.Header.Set("Content-Type", contentTypeJSON)
	fakeSign(req)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("SubscribeToShard: HTTP %d", resp.StatusCode)
	}
	br := bufio.NewReaderSize(resp.Body, 1<<20)
	dec := eventstream.NewDecoder()
	var payload []byte
	for range 2 { // initial-response, first event
		if _, err := dec.Decode(br, payload[:0]); err != nil {
			return nil, err
		}
	}
	readyOnce()
	marker := []byte(`"SequenceNumber"`)
	arrived := make([]int64, 0, (want+batch-1)/batch)
	got := 0
	for got < want {
		m, err := dec.Decode(br, payload[:0])
		if err != nil {
			return nil, fmt.Errorf("after %d of %d records: %w", got, want, err)
		}
		payload = m.Payload
		if v := m.Headers.Get(":message-type"); v == nil || v.String() != "event" {
			return nil, fmt.Errorf("unexpected message %v: %s", m.Headers, m.Payload)
		}
		got += bytes.Count(m.Payload, marker)
		now := time.Now().UnixNano()
		for len(arrived) < cap(arrived) && (got >= (len(arrived)+1)*batch || got >= want) {
			arrived = append(arrived, now)
		}
	}
	return arrived, nil
}
