package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// collect ranges over c.Records until n records arrived, checkpointing
// each one when checkpoint is set.
func collect(t *testing.T, c *engine.Consumer, n int, checkpoint bool) []engine.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []engine.Record
	if n == 0 {
		return nil
	}
	for r, err := range c.Records(ctx) {
		require.NoError(t, err)
		out = append(out, r)
		if checkpoint {
			require.NoError(t, c.Checkpoint(r))
		}
		if len(out) == n {
			break
		}
	}
	return out
}

func TestConsumerResumesAfterCheckpointAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := engine.Open(dir, &engine.Options{NoSync: true})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3}))
	for i := range 30 {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: fmt.Sprint(i), Data: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
	}
	c, err := db.Consumer("s", "billing", nil)
	require.NoError(t, err)
	first := collect(t, c, 10, true)
	require.Len(t, first, 10)
	require.NoError(t, db.Close())

	db, err = engine.Open(dir, &engine.Options{NoSync: true})
	require.NoError(t, err)
	defer db.Close()
	c, err = db.Consumer("s", "billing", nil)
	require.NoError(t, err)
	rest := collect(t, c, 20, true)
	seen := map[string]bool{}
	for _, r := range append(first, rest...) {
		require.False(t, seen[string(r.Data)], "duplicate %s", r.Data)
		seen[string(r.Data)] = true
	}
	require.Len(t, seen, 30)
	names, err := db.ListConsumers("s")
	require.NoError(t, err)
	require.Equal(t, []string{"billing"}, names)
	lag, err := c.Lag()
	require.NoError(t, err)
	for _, l := range lag {
		require.Zero(t, l.Behind)
	}
	require.NoError(t, db.DeleteConsumer("s", "billing"))
	require.ErrorIs(t, db.DeleteConsumer("s", "billing"), engine.ErrConsumerNotFound)
}

func TestConsumerReadsParentBeforeChildren(t *testing.T) {
	db, err := engine.Open(t.TempDir(), &engine.Options{NoSync: true})
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	put := func(i int) {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "same-key", Data: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
	}
	for i := range 5 {
		put(i)
	}
	require.NoError(t, db.SplitShard("s", 0, "170141183460469231731687303715884105728"))
	for i := 5; i < 10; i++ {
		put(i)
	}
	require.NoError(t, db.MergeShards("s", 1, 2))
	for i := 10; i < 15; i++ {
		put(i)
	}
	c, err := db.Consumer("s", "ordered", nil)
	require.NoError(t, err)
	recs := collect(t, c, 15, true)
	for i, r := range recs {
		require.Equal(t, fmt.Sprint(i), string(r.Data), "same key keeps its order across split and merge")
	}
}

func TestConsumerWaitsForNewRecordsAndStopsOnCancel(t *testing.T) {
	db, err := engine.Open(t.TempDir(), &engine.Options{NoSync: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	c, err := db.Consumer("s", "tail", &engine.ConsumerConfig{Start: engine.Latest()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan engine.Record, 10)
	done := make(chan error, 1)
	go func() {
		for r, err := range c.Records(ctx) {
			if err != nil {
				done <- err
				return
			}
			got <- r
		}
		done <- nil
	}()
	_, err = db.PutRecord(context.Background(), "s", engine.Entry{PartitionKey: "a", Data: []byte("x")})
	require.NoError(t, err)
	select {
	case r := <-got:
		require.Equal(t, "x", string(r.Data))
	case <-time.After(10 * time.Second):
		t.Fatal("consumer was not woken by the put")
	}
	cancel()
	require.True(t, errors.Is(<-done, context.Canceled))
}

func TestIteratorWaitWakesOnPutAndReturnsOnCancel(t *testing.T) {
	db, err := engine.Open(t.TempDir(), &engine.Options{NoSync: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	it, err := db.Iterate("s", 0, engine.Latest())
	require.NoError(t, err)
	defer it.Close()
	require.False(t, it.Next())
	woke := make(chan error, 1)
	go func() { woke <- it.Wait(context.Background()) }()
	_, err = db.PutRecord(context.Background(), "s", engine.Entry{PartitionKey: "a", Data: []byte("y")})
	require.NoError(t, err)
	require.NoError(t, <-woke)
	require.True(t, it.Next())
	require.Equal(t, "y", string(it.Record().Data))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, it.Wait(ctx), context.Canceled)
}

func TestConsumerCheckpointIntoTrimmedDataResumesAtHorizon(t *testing.T) {
	clk := newStepClock()
	db := openClocked(t, t.TempDir(), clk)
	defer db.Close()
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Retention: time.Hour}))
	put := func(v string) {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte(v)})
		require.NoError(t, err)
	}
	put("old-1")
	put("old-2")
	c, err := db.Consumer("s", "slow", nil)
	require.NoError(t, err)
	first := collect(t, c, 1, true)
	require.Equal(t, "old-1", string(first[0].Data))
	clk.Add(2 * time.Hour) // old-2 expires unread
	require.NoError(t, db.Trim(ctx, "s"))
	put("new-1")
	c, err = db.Consumer("s", "slow", nil)
	require.NoError(t, err)
	got := collect(t, c, 1, true)
	require.Equal(t, "new-1", string(got[0].Data))
}

func TestConsumerStartAtTimestamp(t *testing.T) {
	clk := newStepClock()
	db := openClocked(t, t.TempDir(), clk)
	defer db.Close()
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	for i := range 6 {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: fmt.Sprint(i), Data: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
		clk.Add(time.Second)
	}
	c, err := db.Consumer("s", "ts", &engine.ConsumerConfig{Start: engine.AtTimestamp(clk.Now().Add(-3 * time.Second))})
	require.NoError(t, err)
	got := map[string]bool{}
	for _, r := range collect(t, c, 3, false) {
		got[string(r.Data)] = true
	}
	require.Equal(t, map[string]bool{"3": true, "4": true, "5": true}, got)
	_, err = db.Consumer("s", "bad", &engine.ConsumerConfig{Start: engine.AtSequenceNumber(engine.SequenceNumber{})})
	require.ErrorIs(t, err, engine.ErrValidation)
}
