package engine_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func batchOf(n, size int) []engine.Entry {
	entries := make([]engine.Entry, n)
	data := make([]byte, size)
	for i := range entries {
		entries[i] = engine.Entry{PartitionKey: strconv.Itoa(i), Data: data}
	}
	return entries
}

// BenchmarkThrottleOverhead compares PutRecords (500 × 100 B, 4 shards,
// no fsync) on a stream without limits against one whose token buckets
// exist but never throttle, alternating rounds in one run. Target: the
// buckets cost < 3 % (ratio ≥ 0.97).
func BenchmarkThrottleOverhead(b *testing.B) {
	db, err := engine.Open(b.TempDir(), &engine.Options{NoSync: true, Profile: engine.ProfileThroughput})
	require.NoError(b, err)
	defer db.Close()
	huge := engine.Limits{WriteRecordsPerSec: math.MaxInt32, WriteBytesPerSec: math.MaxInt32, ReadBytesPerSec: math.MaxInt32, ReadCallsPerSec: math.MaxInt32} // 32-bit int: 2 G/s never throttles here
	require.NoError(b, db.CreateStream("none", engine.StreamConfig{ShardCount: 4}))
	require.NoError(b, db.CreateStream("buckets", engine.StreamConfig{ShardCount: 4, Limits: huge}))
	entries := batchOf(500, 100)
	ctx := context.Background()
	var tNone, tBuckets time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := []string{"none", "buckets"}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, s := range order {
			start := time.Now()
			_, err := db.PutRecords(ctx, s, entries)
			if err != nil {
				b.Fatal(err)
			}
			if s == "none" {
				tNone += time.Since(start)
			} else {
				tBuckets += time.Since(start)
			}
		}
	}
	b.ReportMetric(float64(b.N*500)/tNone.Seconds(), "rec/s-no-buckets")
	b.ReportMetric(float64(b.N*500)/tBuckets.Seconds(), "rec/s-buckets")
	b.ReportMetric(tNone.Seconds()/tBuckets.Seconds(), "ratio")
}

// BenchmarkPutLatencyWhileTrimming measures single-record put latency
// (fsync'd) while the background trimmer deletes an expired backlog,
// against the same puts with nothing to trim, in one run. Target: p99
// while trimming within 2× of idle. The backlog size is
// KVSTREAM_TRIM_BENCH_RECORDS (default 1,000,000; the 10 M takes
// a few minutes to load).
func BenchmarkPutLatencyWhileTrimming(b *testing.B) {
	backlog := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("KVSTREAM_TRIM_BENCH_RECORDS")); err == nil && v > 0 {
		backlog = v
	}
	var clkMu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { clkMu.Lock(); defer clkMu.Unlock(); return now }
	db, err := engine.Open(b.TempDir(), &engine.Options{Clock: clock, Profile: engine.ProfileThroughput, TrimInterval: time.Hour})
	require.NoError(b, err)
	defer db.Close()
	ctx := context.Background()
	require.NoError(b, db.CreateStream("s", engine.StreamConfig{ShardCount: 4, Retention: time.Hour}))
	entries := batchOf(500, 100)
	for n := 0; n < backlog; n += len(entries) {
		_, err := db.PutRecords(ctx, "s", entries)
		require.NoError(b, err)
	}
	measure := func(n int) []time.Duration {
		lat := make([]time.Duration, 0, n)
		for i := range n {
			start := time.Now()
			_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: strconv.Itoa(i), Data: entries[0].Data})
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	n := max(b.N, 2000)
	b.ResetTimer()
	idle := measure(n)
	clkMu.Lock()
	now = now.Add(2 * time.Hour) // the whole backlog expires
	clkMu.Unlock()
	trimDone := make(chan time.Duration)
	go func() {
		start := time.Now()
		if err := db.Trim(ctx, "s"); err != nil {
			b.Error(err)
		}
		trimDone <- time.Since(start)
	}()
	var busy []time.Duration
	var trimTook time.Duration
loop:
	for {
		busy = append(busy, measure(100)...)
		select {
		case trimTook = <-trimDone:
			break loop
		default:
		}
	}
	d, err := db.DescribeStream("s")
	require.NoError(b, err)
	require.Less(b, d.Records, int64(backlog), "the trim deleted the backlog")
	b.ReportMetric(float64(percentile(idle, 0.99).Microseconds()), "p99-idle-µs")
	b.ReportMetric(float64(percentile(busy, 0.99).Microseconds()), "p99-trimming-µs")
	b.ReportMetric(float64(percentile(busy, 0.99))/float64(percentile(idle, 0.99)), "p99-ratio")
	b.ReportMetric(trimTook.Seconds(), "trim-s")
	b.ReportMetric(float64(len(busy)), "puts-during-trim")
}

// BenchmarkTailLatency paces one writer at 10,000 records/s and measures
// how long a tail reader (Iterator.Wait, woken by the commit path) takes
// to see each record after PutRecord was called, with fsync off and on.
// Targets: p99 ≤ 2 ms without fsync; ≤ fsync p99 + 1 ms with fsync.
func BenchmarkTailLatency(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", sync), func(b *testing.B) {
			db, err := engine.Open(b.TempDir(), &engine.Options{NoSync: !sync})
			require.NoError(b, err)
			defer db.Close()
			ctx := context.Background()
			require.NoError(b, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
			it, err := db.Iterate("s", 0, engine.Latest())
			require.NoError(b, err)
			defer it.Close()
			n := max(b.N, 5000)
			epoch := time.Now()
			lat := make([]time.Duration, 0, n)
			putLat := make([]time.Duration, 0, n)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for len(lat) < n {
					for it.Next() {
						sent := time.Duration(binary.BigEndian.Uint64(it.Record().Data))
						lat = append(lat, time.Since(epoch)-sent)
					}
					if len(lat) >= n {
						return
					}
					if err := it.Wait(ctx); err != nil {
						return
					}
				}
			}()
			b.ResetTimer()
			tick := time.NewTicker(100 * time.Microsecond) // 10 k/s
			defer tick.Stop()
			buf := make([]byte, 100)
			for range n {
				<-tick.C
				start := time.Since(epoch)
				binary.BigEndian.PutUint64(buf, uint64(start))
				if _, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: buf}); err != nil {
					b.Fatal(err)
				}
				putLat = append(putLat, time.Since(epoch)-start)
			}
			<-done
			b.ReportMetric(float64(percentile(lat, 0.50).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(percentile(putLat, 0.99).Microseconds()), "put-p99-µs")
		})
	}
}
