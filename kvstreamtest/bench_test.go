package kvstreamtest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/kvstream/kvstream/internal/procstat"
	"github.com/kvstream/kvstream/kvstreamtest"
)

// scope is a testing.TB whose cleanups run when end is called, so a
// benchmark can create and close one client per iteration.
type scope struct {
	testing.TB
	cleanups []func()
}

func (s *scope) Cleanup(f func()) { s.cleanups = append(s.cleanups, f) }

func (s *scope) end() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = s.cleanups[:0]
}

// BenchmarkNewClientRoundTrip is what a test pays for its Kinesis: a new
// client with a fresh engine, a stream, and one put and get round trip
// (PutRecord, GetShardIterator, GetRecords). ns/op includes closing it
// all; setup+rt-ms is the time until the record is read back; cpu-ms is
// the process's CPU time per op (user+system, all goroutines and GC),
// which a loaded machine does not inflate as it does wall time.
func BenchmarkNewClientRoundTrip(b *testing.B) {
	for _, mem := range []bool{true, false} {
		name := map[bool]string{true: "InMemory", false: "TempDir"}[mem]
		b.Run(name, func(b *testing.B) {
			var opts []kvstreamtest.Option
			if mem {
				opts = append(opts, kvstreamtest.WithInMemory())
			}
			s := &scope{TB: b}
			var untilRead time.Duration
			b.ReportAllocs()
			cpu0 := procstat.CPU()
			for b.Loop() {
				start := time.Now()
				kc := kvstreamtest.NewClient(s, opts...)
				createStream(b, kc, "s", 1)
				put(b, kc, "s", "hello")
				got := readAll(b, kc, iterator(b, kc, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon))
				if len(got) != 1 {
					b.Fatalf("read %v", got)
				}
				untilRead += time.Since(start)
				s.end()
			}
			b.ReportMetric(float64(untilRead.Microseconds())/1000/float64(b.N), "setup+rt-ms")
			b.ReportMetric(float64(procstat.CPU()-cpu0)/1e6/float64(b.N), "cpu-ms")
		})
	}
}

// BenchmarkCall is the cost of one call in-process (NewClient) and over
// loopback HTTP (NewServer and an SDK client with its own connection
// pool), on the same in-memory engine settings: the difference is the
// in-process transport's saving per call. cpu-µs is the process's CPU
// time per call (client, server and engine).
func BenchmarkCall(b *testing.B) {
	calls := []struct {
		name string
		call func(b *testing.B, kc *kinesis.Client, it *string)
	}{
		{"DescribeStreamSummary", func(b *testing.B, kc *kinesis.Client, _ *string) {
			if _, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")}); err != nil {
				b.Fatal(err)
			}
		}},
		{"PutRecord100B", func(b *testing.B, kc *kinesis.Client, _ *string) {
			if _, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: make([]byte, 100)}); err != nil {
				b.Fatal(err)
			}
		}},
		{"GetRecords100x1KiB", func(b *testing.B, kc *kinesis.Client, it *string) {
			out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(100)})
			if err != nil || len(out.Records) != 100 {
				b.Fatal(err, len(out.Records))
			}
		}},
	}
	for _, c := range calls {
		for _, be := range backends {
			b.Run(fmt.Sprintf("%s/%s", c.name, be.name), func(b *testing.B) {
				kc := be.client(b, kvstreamtest.WithInMemory())
				createStream(b, kc, "s", 1)
				var entries []types.PutRecordsRequestEntry
				for range 100 {
					entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String("k"), Data: make([]byte, 1024)})
				}
				if _, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: entries}); err != nil {
					b.Fatal(err)
				}
				it := iterator(b, kc, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon)
				b.ReportAllocs()
				cpu0 := procstat.CPU()
				for b.Loop() {
					c.call(b, kc, it)
				}
				b.ReportMetric(float64(procstat.CPU()-cpu0)/1e3/float64(b.N), "cpu-µs")
			})
		}
	}
}
