package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/procstat"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// BenchmarkPutPath measures the CPU the engine's put path adds to Pebble:
// PutRecords of 500 × 100 B and PutRecord of 1 × 100 B (from 1 and from 64
// goroutines) on a 4-shard stream, NoSync (so the disk does not hide the
// CPU), beside raw Pebble committing the same records under the engine's
// key and value layout (per-shard counters, batches in key order, one
// batch per call). ns/op is per record; cpu-ns/rec is the process' CPU
// time per record, steadier on a shared machine. Profile one side with
// -cpuprofile and -bench 'PutPath/.*/engine'.
func BenchmarkPutPath(b *testing.B) {
	ctx := context.Background()
	const shards = 4
	entries := randomBatches(8)
	for _, wl := range []struct {
		name       string
		batch      int
		goroutines int
	}{{"PutRecords500", 500, 1}, {"PutRecord", 1, 1}, {"PutRecordx64", 1, 64}} {
		b.Run(wl.name+"/engine", func(b *testing.B) {
			db, err := engine.Open(b.TempDir(), &engine.Options{NoSync: true, Profile: engine.ProfileThroughput})
			require.NoError(b, err)
			defer db.Close()
			require.NoError(b, db.CreateStream("s", engine.StreamConfig{ShardCount: shards}))
			b.ReportAllocs()
			b.ResetTimer()
			runPutPath(b, wl.batch, wl.goroutines, entries, func(_ int, es []engine.Entry) error {
				if len(es) == 1 {
					_, err := db.PutRecord(ctx, "s", es[0])
					return err
				}
				_, err := db.PutRecords(ctx, "s", es)
				return err
			})
		})
		b.Run(wl.name+"/pebble", func(b *testing.B) {
			db, err := pebble.Open(b.TempDir(), engine.PebbleOptions(engine.ProfileThroughput))
			require.NoError(b, err)
			defer db.Close()
			var mu sync.Mutex
			next := make([]uint64, shards)
			bs := make([]*pebble.Batch, wl.goroutines)
			for i := range bs {
				bs[i] = db.NewBatch()
			}
			b.ReportAllocs()
			b.ResetTimer()
			runPutPath(b, wl.batch, wl.goroutines, entries, func(w int, es []engine.Entry) error {
				batch := bs[w]
				mu.Lock()
				first := [shards]uint64{}
				for s := range next {
					n := (len(es) - s + shards - 1) / shards
					first[s] = next[s] + 1
					next[s] += uint64(n)
				}
				mu.Unlock()
				now := time.Now().UnixMilli()
				for s := range shards {
					for j := s; j < len(es); j += shards {
						e := &es[j]
						op := batch.SetDeferred(shard.RecordKeyLen, shard.ValueLen(e.PartitionKey, false, e.Data))
						shard.PutRecordKey(op.Key, 1, uint32(s), first[s])
						first[s]++
						shard.PutValue(op.Value, now, e.PartitionKey, nil, e.Data)
						_ = op.Finish()
					}
				}
				err := batch.Commit(pebble.NoSync)
				batch.Reset()
				return err
			})
		})
	}
}

// runPutPath calls put from goroutines goroutines with windows of batch
// entries until b.N records are stored; ns/op is per record.
func runPutPath(b *testing.B, batch, goroutines int, batches [][]engine.Entry, put func(w int, es []engine.Entry) error) {
	var mu sync.Mutex
	left := b.N
	claim := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := min(left, batch)
		left -= n
		return n
	}
	cpu := procstat.CPU()
	defer func() {
		if b.N > 0 {
			b.ReportMetric(float64(procstat.CPU()-cpu)/float64(b.N), "cpu-ns/rec")
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, goroutines)
	for w := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				n := claim()
				if n == 0 {
					return
				}
				src := batches[i%len(batches)]
				off := (i * batch) % (len(src) - n + 1)
				if err := put(w, src[off:off+n]); err != nil {
					errs[w] = fmt.Errorf("put: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}
