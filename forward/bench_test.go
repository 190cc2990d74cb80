package forward

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// BenchmarkForward measures how fast a Forwarder drains a backlog of
// b.N 100-byte records (1000 keys) into a kvstream server on loopback
// (httptest, the real aws-sdk-go-v2 client, JSON 1.1), in the same
// process. Both engines keep their default durability (fsync'd puts and
// checkpoints); the memory profile of both is a sub-benchmark parameter.
func BenchmarkForward(b *testing.B) {
	for _, bc := range []struct {
		profile engine.Profile
		shards  int
	}{
		{engine.ProfileSmall, 1},
		{engine.ProfileSmall, 4},
		{engine.ProfileThroughput, 4},
	} {
		name := map[engine.Profile]string{engine.ProfileSmall: "small", engine.ProfileThroughput: "throughput"}[bc.profile]
		shards := bc.shards
		b.Run(fmt.Sprintf("profile=%s/shards=%d", name, shards), func(b *testing.B) {
			dir := b.TempDir()
			db, err := engine.Open(dir, &engine.Options{Profile: bc.profile})
			require.NoError(b, err)
			defer db.Close()
			require.NoError(b, db.CreateStream(localStream, engine.StreamConfig{ShardCount: shards}))
			up := newUpstream(b, shards)
			up.opts = &engine.Options{Profile: bc.profile}
			up.start()

			rng := rand.New(rand.NewPCG(1, 1))
			data := make([]byte, 100)
			batch := make([]engine.Entry, 0, 500)
			for n := b.N; n > 0; n -= len(batch) {
				batch = batch[:0]
				for range min(n, 500) {
					batch = append(batch, engine.Entry{PartitionKey: "key-" + strconv.Itoa(rng.IntN(1000)), Data: data})
				}
				_, err := db.PutRecords(context.Background(), localStream, batch)
				require.NoError(b, err)
			}

			cfg := Config{Stream: localStream, TargetStream: upstreamStream}
			f, err := New(db, up.client(), cfg)
			require.NoError(b, err)
			b.ResetTimer()
			start := time.Now()
			r := runForwarder(b, f)
			for f.forwardedRecords.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			require.NoError(b, r.stop())
			st, err := f.Stats()
			require.NoError(b, err)
			require.Zero(b, st.LagRecords)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(st.Requests), "calls")
		})
	}
}
