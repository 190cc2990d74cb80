package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// scEnv is a DB on an in-memory FS with a clock the test moves, for the
// registered stream consumer tests. reopen closes and reopens the DB.
type scEnv struct {
	t    *testing.T
	db   *engine.DB
	opts *engine.Options
	mu   sync.Mutex
	now  time.Time
}

func newSCEnv(t *testing.T) *scEnv {
	e := &scEnv{t: t, now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	e.opts = &engine.Options{FS: vfs.NewMem(), TrimInterval: time.Hour, Clock: e.clock}
	db, err := engine.Open("db", e.opts)
	require.NoError(t, err)
	e.db = db
	t.Cleanup(func() { _ = e.db.Close() })
	return e
}

func (e *scEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *scEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func (e *scEnv) reopen() {
	require.NoError(e.t, e.db.Close())
	db, err := engine.Open("db", e.opts)
	require.NoError(e.t, err)
	e.db = db
}

func consumerNames(cs []engine.StreamConsumer) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestStreamConsumerLifecycle(t *testing.T) {
	e := newSCEnv(t)
	db := e.db
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	desc, err := db.DescribeStream("s")
	require.NoError(t, err)

	c, err := db.RegisterStreamConsumer("s", "app-1", engine.StreamConsumerConfig{})
	require.NoError(t, err)
	require.Equal(t, "s", c.Stream)
	require.Equal(t, "app-1", c.Name)
	require.Equal(t, engine.StreamConsumerActive, c.Status)
	require.True(t, c.CreatedAt.Equal(e.clock()), "%v", c.CreatedAt)
	require.True(t, c.StreamCreatedAt.Equal(desc.CreatedAt))

	got, err := db.DescribeStreamConsumer("s", "app-1")
	require.NoError(t, err)
	require.Equal(t, c, got)

	// A duplicate name is ResourceInUse; the same name on another stream is fine.
	_, err = db.RegisterStreamConsumer("s", "app-1", engine.StreamConsumerConfig{})
	require.ErrorIs(t, err, engine.ErrResourceInUse)
	ee := asError(t, err)
	require.Equal(t, engine.ReasonConsumerExists, ee.Reason)
	require.Equal(t, []string{"s", "app-1"}, []string{ee.Stream, ee.Consumer})
	require.NoError(t, db.CreateStream("other", engine.StreamConfig{ShardCount: 1}))
	_, err = db.RegisterStreamConsumer("other", "app-1", engine.StreamConsumerConfig{})
	require.NoError(t, err)

	e.advance(1500 * time.Millisecond)
	_, err = db.RegisterStreamConsumer("s", "app-0", engine.StreamConsumerConfig{})
	require.NoError(t, err)
	list, err := db.ListStreamConsumers("s")
	require.NoError(t, err)
	require.Equal(t, []string{"app-0", "app-1"}, consumerNames(list))
	require.Greater(t, list[0].CreatedAt.Unix(), list[1].CreatedAt.Unix())

	// Bad names, missing streams and consumers.
	for _, bad := range []string{"", "a b", "ü", string(make([]byte, 129))} {
		_, err = db.RegisterStreamConsumer("s", bad, engine.StreamConsumerConfig{})
		require.ErrorIs(t, err, engine.ErrValidation, "%q", bad)
	}
	_, err = db.RegisterStreamConsumer("nope", "x", engine.StreamConsumerConfig{})
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
	_, err = db.DescribeStreamConsumer("s", "nope")
	require.ErrorIs(t, err, engine.ErrConsumerNotFound)
	require.ErrorIs(t, db.DeregisterStreamConsumer("s", "nope"), engine.ErrConsumerNotFound)
	_, err = db.ListStreamConsumers("nope")
	require.ErrorIs(t, err, engine.ErrStreamNotFound)

	// Deregister: gone at once by default, and the name is free again.
	require.NoError(t, db.DeregisterStreamConsumer("s", "app-1"))
	_, err = db.DescribeStreamConsumer("s", "app-1")
	require.ErrorIs(t, err, engine.ErrConsumerNotFound)
	require.ErrorIs(t, db.DeregisterStreamConsumer("s", "app-1"), engine.ErrConsumerNotFound)
	e.advance(time.Second)
	again, err := db.RegisterStreamConsumer("s", "app-1", engine.StreamConsumerConfig{})
	require.NoError(t, err)
	require.Greater(t, again.CreatedAt.Unix(), c.CreatedAt.Unix(), "a new registration gets a new creation second (and ARN)")

	// Registered consumers are not durable consumers, and vice versa.
	_, err = db.Consumer("s", "durable", nil)
	require.NoError(t, err)
	durable, err := db.ListConsumers("s")
	require.NoError(t, err)
	require.Equal(t, []string{"durable"}, durable)
	list, err = db.ListStreamConsumers("s")
	require.NoError(t, err)
	require.Equal(t, []string{"app-0", "app-1"}, consumerNames(list))
}

func TestStreamConsumersPersistAcrossReopen(t *testing.T) {
	e := newSCEnv(t)
	require.NoError(t, e.db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	a, err := e.db.RegisterStreamConsumer("s", "a", engine.StreamConsumerConfig{})
	require.NoError(t, err)
	_, err = e.db.RegisterStreamConsumer("s", "b", engine.StreamConsumerConfig{ActivationDelay: time.Minute, DeletionDelay: time.Minute})
	require.NoError(t, err)
	e.reopen()
	got, err := e.db.DescribeStreamConsumer("s", "a")
	require.NoError(t, err)
	require.Equal(t, a, got)
	b, err := e.db.DescribeStreamConsumer("s", "b")
	require.NoError(t, err)
	require.Equal(t, engine.StreamConsumerCreating, b.Status)
	e.advance(time.Minute)
	require.NoError(t, e.db.DeregisterStreamConsumer("s", "b"))
	e.reopen()
	b, err = e.db.DescribeStreamConsumer("s", "b")
	require.NoError(t, err)
	require.Equal(t, engine.StreamConsumerDeleting, b.Status, "the deletion delay survives a reopen")
	e.advance(time.Minute)
	_, err = e.db.DescribeStreamConsumer("s", "b")
	require.ErrorIs(t, err, engine.ErrConsumerNotFound)
}

func TestStreamConsumerStatesWithDelays(t *testing.T) {
	e := newSCEnv(t)
	db := e.db
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	cfg := engine.StreamConsumerConfig{ActivationDelay: 2 * time.Second, DeletionDelay: 3 * time.Second}
	c, err := db.RegisterStreamConsumer("s", "c", cfg)
	require.NoError(t, err)
	require.Equal(t, engine.StreamConsumerCreating, c.Status)
	e.advance(1999 * time.Millisecond)
	c, err = db.DescribeStreamConsumer("s", "c")
	require.NoError(t, err)
	require.Equal(t, engine.StreamConsumerCreating, c.Status)
	e.advance(time.Millisecond)
	c, err = db.DescribeStreamConsumer("s", "c")
	require.NoError(t, err)
	require.Equal(t, engine.StreamConsumerActive, c.Status)

	require.NoError(t, db.DeregisterStreamConsumer("s", "c"))
	c, err = db.DescribeStreamConsumer("s", "c")
	require.NoError(t, err)
	require.Equal(t, engine.StreamConsumerDeleting, c.Status)
	require.NoError(t, db.DeregisterStreamConsumer("s", "c"), "deregistering a DELETING consumer is a no-op")
	list, err := db.ListStreamConsumers("s")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, engine.StreamConsumerDeleting, list[0].Status)
	// A DELETING consumer still holds its name.
	_, err = db.RegisterStreamConsumer("s", "c", engine.StreamConsumerConfig{})
	require.ErrorIs(t, err, engine.ErrResourceInUse)

	e.advance(3 * time.Second)
	_, err = db.DescribeStreamConsumer("s", "c")
	require.ErrorIs(t, err, engine.ErrConsumerNotFound)
	list, err = db.ListStreamConsumers("s")
	require.NoError(t, err)
	require.Empty(t, list)
	c, err = db.RegisterStreamConsumer("s", "c", engine.StreamConsumerConfig{})
	require.NoError(t, err)
	require.Equal(t, engine.StreamConsumerActive, c.Status)

	// A clock that steps back does not make an ACTIVE consumer CREATING.
	e.advance(-time.Hour)
	c, err = db.DescribeStreamConsumer("s", "c")
	require.NoError(t, err)
	require.Equal(t, engine.StreamConsumerActive, c.Status)

	_, err = db.RegisterStreamConsumer("s", "neg", engine.StreamConsumerConfig{ActivationDelay: -time.Second})
	require.ErrorIs(t, err, engine.ErrValidation)
}

func TestStreamConsumerLimits(t *testing.T) {
	e := newSCEnv(t)
	db := e.db
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))

	// At most 5 CREATING at once.
	slow := engine.StreamConsumerConfig{ActivationDelay: time.Minute}
	for i := range 5 {
		_, err := db.RegisterStreamConsumer("s", fmt.Sprintf("slow%d", i), slow)
		require.NoError(t, err)
	}
	_, err := db.RegisterStreamConsumer("s", "slow5", slow)
	require.ErrorIs(t, err, engine.ErrLimitExceeded)
	e.advance(time.Minute)

	// At most MaxStreamConsumers in all.
	for i := 5; i < engine.MaxStreamConsumers; i++ {
		_, err := db.RegisterStreamConsumer("s", fmt.Sprintf("c%02d", i), engine.StreamConsumerConfig{})
		require.NoError(t, err)
	}
	_, err = db.RegisterStreamConsumer("s", "one-too-many", engine.StreamConsumerConfig{})
	require.ErrorIs(t, err, engine.ErrLimitExceeded)
	require.Equal(t, engine.ReasonConsumerLimit, asError(t, err).Reason)
	require.Equal(t, int64(20), asError(t, err).Actual)
	// Deregistering makes room; the limit is per stream.
	require.NoError(t, db.DeregisterStreamConsumer("s", "slow0"))
	_, err = db.RegisterStreamConsumer("s", "one-more", engine.StreamConsumerConfig{})
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("t", engine.StreamConfig{ShardCount: 1}))
	_, err = db.RegisterStreamConsumer("t", "one-too-many", engine.StreamConsumerConfig{})
	require.NoError(t, err)

	// A DELETING consumer still counts.
	require.NoError(t, db.CreateStream("u", engine.StreamConfig{ShardCount: 1}))
	for i := range engine.MaxStreamConsumers {
		_, err := db.RegisterStreamConsumer("u", fmt.Sprintf("c%02d", i), engine.StreamConsumerConfig{DeletionDelay: time.Second})
		require.NoError(t, err)
	}
	require.NoError(t, db.DeregisterStreamConsumer("u", "c00"))
	_, err = db.RegisterStreamConsumer("u", "x", engine.StreamConsumerConfig{})
	require.ErrorIs(t, err, engine.ErrLimitExceeded)
	e.advance(time.Second)
	_, err = db.RegisterStreamConsumer("u", "x", engine.StreamConsumerConfig{})
	require.NoError(t, err)
}

// TestStreamConsumerConcurrentRegistration races registrations of
// distinct names and of one name: exactly the limit succeed in all, and
// the shared name at most once.
func TestStreamConsumerConcurrentRegistration(t *testing.T) {
	e := newSCEnv(t)
	db := e.db
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	var okDistinct, okSame atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			_, err := db.RegisterStreamConsumer("s", fmt.Sprintf("d%02d", i), engine.StreamConsumerConfig{})
			if err == nil {
				okDistinct.Add(1)
			} else if !errors.Is(err, engine.ErrLimitExceeded) {
				t.Errorf("register d%02d: %v", i, err)
			}
		})
	}
	for range 10 {
		wg.Go(func() {
			_, err := db.RegisterStreamConsumer("s", "same", engine.StreamConsumerConfig{})
			if err == nil {
				okSame.Add(1)
			} else if !errors.Is(err, engine.ErrLimitExceeded) && !errors.Is(err, engine.ErrResourceInUse) {
				t.Errorf("register same: %v", err)
			}
		})
	}
	wg.Wait()
	list, err := db.ListStreamConsumers("s")
	require.NoError(t, err)
	require.Len(t, list, engine.MaxStreamConsumers)
	require.LessOrEqual(t, okSame.Load(), int32(1))
	require.Equal(t, int32(engine.MaxStreamConsumers), okDistinct.Load()+okSame.Load())
}

func TestStreamConsumersDeletedWithStream(t *testing.T) {
	e := newSCEnv(t)
	db := e.db
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	_, err := db.RegisterStreamConsumer("s", "a", engine.StreamConsumerConfig{})
	require.NoError(t, err)
	require.NoError(t, db.DeleteStream(context.Background(), "s"))
	_, err = db.DescribeStreamConsumer("s", "a")
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
	_, err = db.RegisterStreamConsumer("s", "a", engine.StreamConsumerConfig{})
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	list, err := db.ListStreamConsumers("s")
	require.NoError(t, err)
	require.Empty(t, list)
	e.reopen()
	list, err = e.db.ListStreamConsumers("s")
	require.NoError(t, err)
	require.Empty(t, list)
}

func TestStreamConsumerOnCreatingStream(t *testing.T) {
	e := newSCEnv(t)
	db := e.db
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, ActivationDelay: time.Second}))
	_, err := db.RegisterStreamConsumer("s", "a", engine.StreamConsumerConfig{})
	require.ErrorIs(t, err, engine.ErrResourceInUse)
	ee := asError(t, err)
	require.Equal(t, engine.ReasonStreamNotActive, ee.Reason)
	require.Equal(t, []string{"s", "CREATING"}, []string{ee.Stream, ee.State})
	e.advance(time.Second)
	_, err = db.RegisterStreamConsumer("s", "a", engine.StreamConsumerConfig{})
	require.NoError(t, err)
}

func TestChildShards(t *testing.T) {
	e := newSCEnv(t)
	db := e.db
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	cs, err := db.ChildShards("s", 0)
	require.NoError(t, err)
	require.Empty(t, cs, "an open shard has no children")
	require.NoError(t, db.SplitShard("s", 0, "170141183460469231731687303715884105728"))
	cs, err = db.ChildShards("s", 0)
	require.NoError(t, err)
	require.Len(t, cs, 2)
	require.Equal(t, engine.ShardID(1), cs[0].ShardID)
	require.Equal(t, []engine.ShardID{0}, cs[0].ParentShards)
	require.Equal(t, "170141183460469231731687303715884105727", cs[0].HashKeyRange.End.String())
	require.Equal(t, engine.ShardID(2), cs[1].ShardID)
	require.NoError(t, db.MergeShards("s", 1, 2))
	cs, err = db.ChildShards("s", 2)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.Equal(t, []engine.ShardID{1, 2}, cs[0].ParentShards)
	require.NoError(t, db.DeleteStream(context.Background(), "s"))
	_, err = db.ChildShards("s", 0)
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
}
