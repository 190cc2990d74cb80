package engine_test

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// benchShardCounts are the shard counts of the shard-scaling benchmarks.
var benchShardCounts = []int{4, 256, 2048}

// randomBatches returns n PutRecords batches of 500 entries of 100 B with
// random 32-hex-digit partition keys (seeded: the same in every run).
func randomBatches(n int) [][]engine.Entry {
	rng := rand.New(rand.NewPCG(17, 17))
	data := make([]byte, 100)
	out := make([][]engine.Entry, n)
	var k [16]byte
	for i := range out {
		out[i] = make([]engine.Entry, 500)
		for j := range out[i] {
			for x := range k {
				k[x] = byte(rng.Uint32())
			}
			out[i][j] = engine.Entry{PartitionKey: hex.EncodeToString(k[:]), Data: data}
		}
	}
	return out
}

// BenchmarkPutRecordsShards measures PutRecords (500 × 100 B, random
// partition keys, NoSync, throughput profile) on streams of 4, 256 and
// 2048 shards in one DB, one batch per stream in turn, so the machine's
// noise hits every shard count alike. It reports each stream's rate and
// the ratio of each to the 4-shard rate. Target (issue 17): 2048 shards
// ≥ 0.8 × the 4-shard rate. Sub-benchmarks of one shard count each are
// for profiling (-cpuprofile).
func BenchmarkPutRecordsShards(b *testing.B) {
	batches := randomBatches(64)
	ctx := context.Background()
	open := func(b *testing.B, counts []int) *engine.DB {
		db, err := engine.Open(b.TempDir(), &engine.Options{NoSync: true, Profile: engine.ProfileThroughput})
		require.NoError(b, err)
		for _, n := range counts {
			require.NoError(b, db.CreateStream(fmt.Sprint(n), engine.StreamConfig{ShardCount: n}))
		}
		return db
	}
	b.Run("interleaved", func(b *testing.B) {
		db := open(b, benchShardCounts)
		defer db.Close()
		took := make([]time.Duration, len(benchShardCounts))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for k := range benchShardCounts {
				// Rotate the order so no count always follows another.
				j := (k + i) % len(benchShardCounts)
				start := time.Now()
				if _, err := db.PutRecords(ctx, fmt.Sprint(benchShardCounts[j]), batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
				took[j] += time.Since(start)
			}
		}
		for j, n := range benchShardCounts {
			b.ReportMetric(float64(b.N*500)/took[j].Seconds(), fmt.Sprintf("rec/s-%d", n))
			if j > 0 {
				b.ReportMetric(took[0].Seconds()/took[j].Seconds(), fmt.Sprintf("ratio-%d/%d", n, benchShardCounts[0]))
			}
		}
	})
	b.Run("pebble", func(b *testing.B) {
		// The raw-Pebble ceiling of the same batches: each record under the
		// engine's key and value layout in the shard its key hashes to,
		// the batch in key order, one Pebble batch per call, no engine.
		db, err := pebble.Open(b.TempDir(), engine.PebbleOptions(engine.ProfileThroughput))
		require.NoError(b, err)
		defer db.Close()
		type rec struct {
			shard   uint32
			counter uint64
			e       *engine.Entry
		}
		next := make([][]uint64, len(benchShardCounts))
		for j, n := range benchShardCounts {
			next[j] = make([]uint64, n)
		}
		recs := make([]rec, 0, 500)
		batch := db.NewBatch()
		took := make([]time.Duration, len(benchShardCounts))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for k := range benchShardCounts {
				j := (k + i) % len(benchShardCounts)
				n := uint64(benchShardCounts[j])
				start := time.Now()
				recs = recs[:0]
				entries := batches[i%len(batches)]
				for x := range entries {
					hi, _ := bits.Mul64(shard.PartitionerXXHash.Hash(entries[x].PartitionKey).Hi, n)
					next[j][hi]++
					recs = append(recs, rec{uint32(hi), next[j][hi], &entries[x]})
				}
				slices.SortFunc(recs, func(a, b rec) int {
					return cmp.Or(cmp.Compare(a.shard, b.shard), cmp.Compare(a.counter, b.counter))
				})
				now := time.Now().UnixMilli()
				for _, r := range recs {
					op := batch.SetDeferred(shard.RecordKeyLen, shard.ValueLen(r.e.PartitionKey, false, r.e.Data))
					shard.PutRecordKey(op.Key, uint32(j+1), r.shard, r.counter)
					shard.PutValue(op.Value, now, r.e.PartitionKey, nil, r.e.Data)
					_ = op.Finish()
				}
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
				took[j] += time.Since(start)
			}
		}
		for j, n := range benchShardCounts {
			b.ReportMetric(float64(b.N*500)/took[j].Seconds(), fmt.Sprintf("rec/s-%d", n))
			if j > 0 {
				b.ReportMetric(took[0].Seconds()/took[j].Seconds(), fmt.Sprintf("ratio-%d/%d", n, benchShardCounts[0]))
			}
		}
	})
	for _, n := range benchShardCounts {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db := open(b, []int{n})
			defer db.Close()
			name := fmt.Sprint(n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := db.PutRecords(ctx, name, batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "rec/s")
		})
	}
}

// BenchmarkOpenShards measures Open of a data directory holding one
// stream of 4, 256 or 2048 shards and 1,000,000 records of random keys
// (KVSTREAM_OPEN_BENCH_RECORDS), closed cleanly. Target (issue 17): 2048
// shards open in < 200 ms.
func BenchmarkOpenShards(b *testing.B) {
	for _, n := range benchShardCounts {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := b.TempDir()
			opts := &engine.Options{NoSync: true, Profile: engine.ProfileThroughput}
			db, err := engine.Open(dir, opts)
			require.NoError(b, err)
			fillOpenBench(b, db, n)
			require.NoError(b, db.Close())
			benchmarkOpens(b, dir, func() *engine.Options { return opts })
		})
	}
}

// BenchmarkOpenAfterCrash measures Open of a data directory whose last
// session ended without Close, after 1,000,000 records
// (KVSTREAM_OPEN_BENCH_RECORDS) in a 4-shard stream: the records the
// persisted shard counts leave out (up to about shard.StatsBacklog) are
// counted by reading them, and the WAL is replayed. In memory
// (vfs.NewCrashableMem), so it measures CPU, not the disk; the clean
// case is BenchmarkOpenShards.
func BenchmarkOpenAfterCrash(b *testing.B) {
	mem := vfs.NewCrashableMem()
	opts := &engine.Options{FS: mem, Profile: engine.ProfileThroughput}
	db, err := engine.Open("db", opts)
	require.NoError(b, err)
	fillOpenBench(b, db, 4)
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // what a kill -9 here leaves
	require.NoError(b, db.Close())
	benchmarkOpens(b, "db", func() *engine.Options {
		o := *opts
		o.FS = crashed.CrashClone(vfs.CrashCloneCfg{})
		return &o
	})
}

// fillOpenBench creates stream "s" of shards shards in db and puts
// 1,000,000 records of random keys (KVSTREAM_OPEN_BENCH_RECORDS) into it.
func fillOpenBench(b *testing.B, db *engine.DB, shards int) {
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("KVSTREAM_OPEN_BENCH_RECORDS")); err == nil && v > 0 {
		total = v
	}
	require.NoError(b, db.CreateStream("s", engine.StreamConfig{ShardCount: shards}))
	batches := randomBatches(64)
	for i := 0; i*500 < total; i++ {
		_, err := db.PutRecords(context.Background(), "s", batches[i%len(batches)])
		require.NoError(b, err)
	}
}

// benchmarkOpens times b.N Opens of dir, each with the options opts
// returns (made outside the timer), and reports ms/open; Close is not
// timed.
func benchmarkOpens(b *testing.B, dir string, opts func() *engine.Options) {
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		o := opts()
		b.StartTimer()
		db, err := engine.Open(dir, o)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		require.NoError(b, db.Close())
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/open")
}
