package engine_test

// Stream lifecycle and robustness: CREATING with an ActivationDelay,
// concurrent control-plane calls (no deadlock, consistent catalog),
// iterators that outlive their DB, and SequenceNumberForOrdering.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

func TestActivationDelay(t *testing.T) {
	db, clk, _ := newDB(t)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2, ActivationDelay: 10 * time.Second}))
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	require.Equal(t, engine.StatusCreating, d.Status)
	require.Empty(t, d.Shards)
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
	_, err = db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.ErrorIs(t, err, engine.ErrShardNotFound)
	require.ErrorIs(t, db.SplitShard("s", 0, "1000"), engine.ErrResourceInUse)
	require.ErrorIs(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}), engine.ErrStreamExists)

	clk.Add(10 * time.Second)
	d, err = db.DescribeStream("s")
	require.NoError(t, err)
	require.Equal(t, engine.StatusActive, d.Status)
	require.Len(t, d.Shards, 2)
	put(t, db, "s", "k", "x")
}

// TestControlPlaneConcurrency runs creates, deletes, retention changes,
// reshards and puts on several streams at once. Nothing deadlocks, every
// error is one of the documented kinds, and the catalog is consistent and
// survives a restart.
func TestControlPlaneConcurrency(t *testing.T) {
	clk := newStepClock()
	opts := memOpts(clk)
	db := openDB(t, "db", opts)
	ctx := context.Background()
	const streams = 4
	for i := range streams {
		require.NoError(t, db.CreateStream("s"+itoa(i), engine.StreamConfig{ShardCount: 2}))
	}
	iters := 40
	if soakEnvOn {
		iters = 2000
	}
	done := make(chan struct{})
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for range iters {
				name := "s" + itoa(rng.IntN(streams))
				var err error
				switch rng.IntN(8) {
				case 0:
					err = db.CreateStream(name, engine.StreamConfig{ShardCount: 1 + rng.IntN(3)})
				case 1:
					err = db.DeleteStream(ctx, name)
				case 2:
					err = db.SetRetention(name, time.Duration(24+rng.IntN(24))*time.Hour)
				case 3:
					err = db.UpdateShardCount(name, 1+rng.IntN(3))
				case 4:
					var d engine.StreamDescription
					if d, err = db.DescribeStream(name); err == nil {
						for _, s := range d.Shards {
							if s.Open() {
								err = db.SplitShard(name, s.ShardID, midOfRange(s.HashKeyRange))
								break
							}
						}
					}
				case 5:
					_, err = db.ListStreams()
				default:
					_, err = db.PutRecord(ctx, name, engine.Entry{PartitionKey: fmt.Sprint(rng.Uint64()), Data: []byte("d")})
				}
				if err != nil && !isExpected(err) {
					errs <- fmt.Errorf("%s: %w", name, err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("control-plane calls deadlocked (see the goroutine dump of a -timeout run)")
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	check := func(db *engine.DB) map[string]int {
		names, err := db.ListStreams()
		require.NoError(t, err)
		counts := map[string]int{}
		for _, n := range names {
			d, err := db.DescribeStream(n)
			require.NoError(t, err)
			requireTiling(t, d.Shards)
			for _, s := range d.Shards {
				counts[n] += len(shardRecords(t, db, n, s.ShardID))
			}
		}
		return counts
	}
	before := check(db)
	require.NoError(t, db.Close())
	db = openDB(t, "db", opts)
	require.Equal(t, before, check(db))
}

func isExpected(err error) bool {
	for _, k := range []error{engine.ErrStreamNotFound, engine.ErrStreamExists, engine.ErrShardNotFound,
		engine.ErrResourceInUse, engine.ErrInvalidArgument, engine.ErrLimitExceeded} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

func midOfRange(r engine.HashRange) string {
	m := engine.HashKey{Hi: r.Start.Hi/2 + r.End.Hi/2, Lo: 0}
	if m.Cmp(r.Start.Add(2)) < 0 {
		m = r.Start.Add(2)
	}
	return m.String()
}

// TestIteratorOutlivesDB: closing the DB wakes tail readers, and an
// iterator used after Close fails cleanly instead of crashing.
func TestIteratorOutlivesDB(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	for i := range 3 {
		put(t, db, "s", "k", itoa(i))
	}
	tail, err := db.Iterate("s", 0, engine.Latest())
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() { waited <- tail.Wait(context.Background()) }()

	mid, err := db.Iterate("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	require.True(t, mid.Next(), "an iterator in the middle of the shard")
	tok := shardIter(t, db, "s", 0, engine.TrimHorizon())

	require.NotPanics(t, func() { _ = db.Close() })
	select {
	case err := <-waited:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake a tail reader")
	}
	require.NotPanics(t, func() {
		for tail.Next() {
		}
		for mid.Next() {
		}
		_ = tail.Close()
		_ = mid.Close()
	})
	_, err = db.GetRecords(context.Background(), tok, 1)
	require.ErrorIs(t, err, engine.ErrClosed)
	_, err = db.Iterate("s", 0, engine.TrimHorizon())
	require.ErrorIs(t, err, engine.ErrClosed)
}

func TestSequenceNumberForOrdering(t *testing.T) {
	db, _, _ := newDB(t)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	a := put(t, db, "s", "k", "a")
	b, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("b"), SequenceNumberForOrdering: a.SequenceNumber})
	require.NoError(t, err)
	require.Greater(t, b.SequenceNumber.String(), a.SequenceNumber.String())
	// A number of this shard that was never issued is refused.
	future := b.SequenceNumber
	future.Counter += 100
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", SequenceNumberForOrdering: future})
	require.ErrorIs(t, err, engine.ErrInvalidArgument)
	e := asError(t, err)
	require.Equal(t, engine.ReasonOrderingNumber, e.Reason)
	require.Equal(t, future, e.Sequence)
	require.Equal(t, []string{"a", "b"}, datas(shardRecords(t, db, "s", 0)))
}
