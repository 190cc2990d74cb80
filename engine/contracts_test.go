package engine_test

// The engine's concurrency contracts (see the lock order on DB): readers
// never wait for a put, a throttle wait or a catalog commit, and reads
// during or after Close fail with ErrClosed instead of touching a closed
// Pebble.

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// parked is a hook that parks its caller until released.
type parked struct {
	once    sync.Once
	arrived chan struct{}
	release chan struct{}
}

func newParked() *parked { return &parked{arrived: make(chan struct{}), release: make(chan struct{})} }

func (p *parked) hook() {
	first := false
	p.once.Do(func() { first = true })
	if !first {
		return // only the first caller parks
	}
	close(p.arrived)
	<-p.release
}

// openHooked opens a DB with hooks installed for its lifetime.
func openHooked(t *testing.T, throttle, putCommit, catalog func()) (*engine.DB, *stepClock) {
	t.Helper()
	restore := engine.SetTestHooks(throttle, putCommit, catalog)
	t.Cleanup(restore) // runs after openDB's Close
	clk := newStepClock()
	return openDB(t, "db", memOpts(clk)), clk
}

// reads runs the reads that must not wait for writers and fails the test
// if they do not all return.
func reads(t *testing.T, db *engine.DB, stream string) {
	t.Helper()
	d, err := db.DescribeStream(stream)
	require.NoError(t, err)
	require.NotEmpty(t, d.Shards)
	_, err = db.ListShards(stream)
	require.NoError(t, err)
	_, err = db.ListStreams()
	require.NoError(t, err)
	tok, err := db.GetShardIterator(stream, 0, engine.TrimHorizon())
	require.NoError(t, err)
	_, err = db.GetRecords(context.Background(), tok, 10)
	require.NoError(t, err)
	_, err = db.Tags(stream)
	require.NoError(t, err)
}

// A put waiting for throughput holds no lock: a control-plane change and
// every read complete while it waits.
func TestReadsNotBlockedByThrottledPut(t *testing.T) {
	var hook func()
	p := newParked()
	db, _ := openHooked(t, func() {
		if hook != nil {
			hook()
		}
	}, nil, nil)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1,
		Limits: engine.Limits{WriteRecordsPerSec: 1, Wait: true}}))
	_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("a")}) // takes the token
	require.NoError(t, err)
	hook = p.hook

	putCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := db.PutRecord(putCtx, "s", engine.Entry{PartitionKey: "k", Data: []byte("b")})
		done <- err
	}()
	<-p.arrived // the put is about to wait for a token
	require.NoError(t, db.SetRetention("s", 48*time.Hour))
	reads(t, db, "s")
	select {
	case err := <-done:
		t.Fatalf("the put returned while parked: %v", err)
	default:
	}
	cancel()
	close(p.release)
	require.ErrorIs(t, <-done, context.Canceled)
}

// A put in its commit holds its stream's lock shared; a control-plane
// change then waits for it, but reads do not wait for either.
func TestReadsNotBlockedBySlowPutCommit(t *testing.T) {
	p := newParked()
	db, _ := openHooked(t, nil, p.hook, nil)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))

	done := make(chan error, 1)
	go func() {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("b")})
		done <- err
	}()
	<-p.arrived
	changed := make(chan error, 1)
	go func() { changed <- db.SetRetention("s", 48*time.Hour) }()
	// Let the change reach the stream's lock, so a reader that took it
	// would queue behind the pending writer.
	for range 100 {
		runtime.Gosched()
	}
	reads(t, db, "s")
	select {
	case err := <-changed:
		t.Fatalf("the control-plane change did not wait for the put's commit: %v", err)
	default:
	}
	close(p.release)
	require.NoError(t, <-done)
	require.NoError(t, <-changed)
}

// CreateStream and DeleteStream hold no DB-wide lock across their
// commits: other streams stay readable and listable meanwhile.
func TestReadsNotBlockedByCatalogCommit(t *testing.T) {
	for _, op := range []string{"create", "delete"} {
		t.Run(op, func(t *testing.T) {
			var hook func()
			p := newParked()
			db, _ := openHooked(t, nil, nil, func() {
				if hook != nil {
					hook()
				}
			})
			require.NoError(t, db.CreateStream("a", engine.StreamConfig{ShardCount: 1}))
			if op == "delete" {
				require.NoError(t, db.CreateStream("b", engine.StreamConfig{ShardCount: 1}))
			}
			hook = p.hook
			done := make(chan error, 1)
			go func() {
				if op == "create" {
					done <- db.CreateStream("b", engine.StreamConfig{ShardCount: 1})
				} else {
					done <- db.DeleteStream(context.Background(), "b")
				}
			}()
			<-p.arrived
			reads(t, db, "a")
			close(p.release)
			require.NoError(t, <-done)
		})
	}
}

// An Iterator used after Close fails with ErrClosed; so do reads started
// after Close, and closing the Iterator late is allowed.
func TestIteratorAfterClose(t *testing.T) {
	clk := newStepClock()
	db, err := engine.Open("db", memOpts(clk))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	for i := range 3 {
		put(t, db, "s", "k", itoa(i))
	}
	tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	it, err := db.Iterate("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	require.True(t, it.Next()) // holds an open Pebble iterator
	idle, err := db.Iterate("s", 0, engine.TrimHorizon())
	require.NoError(t, err)

	require.NoError(t, db.Close(), "Close releases the iterators still open")
	require.NotPanics(t, func() {
		require.False(t, it.Next())
		require.ErrorIs(t, it.Err(), engine.ErrClosed)
		require.False(t, idle.Next())
		require.ErrorIs(t, idle.Err(), engine.ErrClosed)
		require.NoError(t, it.Wait(ctx), "Wait returns at once; Next reports ErrClosed")
		require.NoError(t, it.Close())
		require.NoError(t, idle.Close())
		_, err = db.GetRecords(ctx, tok, 10)
		require.ErrorIs(t, err, engine.ErrClosed)
		_, err = db.GetShardIterator("s", 0, engine.TrimHorizon())
		require.ErrorIs(t, err, engine.ErrClosed)
		_, err = db.Iterate("s", 0, engine.TrimHorizon())
		require.ErrorIs(t, err, engine.ErrClosed)
	})
}

// Reads racing Close return records or ErrClosed, never panic.
func TestReadsRacingClose(t *testing.T) {
	for round := range 20 {
		clk := newStepClock()
		db, err := engine.Open("db", memOpts(clk))
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
		for i := range 20 {
			put(t, db, "s", "k", itoa(i))
		}
		tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
		require.NoError(t, err)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for {
					var err error
					if g%2 == 0 {
						_, err = db.GetRecords(ctx, tok, 5)
					} else {
						var it *engine.Iterator
						it, err = db.Iterate("s", 0, engine.TrimHorizon())
						if err == nil {
							for it.Next() {
							}
							err = it.Err()
							if cerr := it.Close(); err == nil {
								err = cerr
							}
						}
					}
					if err != nil {
						require.ErrorIs(t, err, engine.ErrClosed, "round %d", round)
						return
					}
				}
			}()
		}
		close(start)
		runtime.Gosched()
		require.NoError(t, db.Close())
		wg.Wait()
	}
}

// A control-plane change of a stream holds no lock its readers take
// across its commit: while the commit of a reshard, a setting, an
// attribute or the deletion of stream s is parked, s itself stays
// describable, listable and readable, by GetRecords, iterators and a
// durable consumer. Puts to s go on during a setting's commit, fail at
// once during its deletion, and wait only for a reshard's commit.
func TestStreamReadsNotBlockedByControlPlaneCommit(t *testing.T) {
	ops := map[string]func(db *engine.DB) error{
		"split":     func(db *engine.DB) error { return db.SplitShard("s", 0, "170141183460469231731687303715884105728") },
		"retention": func(db *engine.DB) error { return db.SetRetention("s", 48*time.Hour) },
		"attr":      func(db *engine.DB) error { return db.SetAttr("s", "k", []byte("v")) },
		"delete":    func(db *engine.DB) error { return db.DeleteStream(context.Background(), "s") },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			var hook func()
			p := newParked()
			db, _ := openHooked(t, nil, nil, func() {
				if hook != nil {
					hook()
				}
			})
			ctx := context.Background()
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
			put(t, db, "s", "k", "a")
			c, err := db.Consumer("s", "c", nil)
			require.NoError(t, err)
			hook = p.hook

			done := make(chan error, 1)
			go func() { done <- op(db) }()
			<-p.arrived // the change is about to commit
			reads(t, db, "s")
			_, err = db.Attrs("s", "")
			require.NoError(t, err)
			_ = c.Checkpoints()
			_, err = c.Lag()
			require.NoError(t, err)

			putDone := make(chan error, 1)
			go func() {
				_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("b")})
				putDone <- err
			}()
			switch name {
			case "split":
				for range 100 {
					runtime.Gosched()
				}
				select {
				case err := <-putDone:
					t.Fatalf("a put returned during a reshard's commit: %v", err)
				default:
				}
			case "delete":
				require.ErrorIs(t, recvGuarded(t, putDone), engine.ErrStreamNotFound)
			default:
				require.NoError(t, recvGuarded(t, putDone), "a put does not wait for a setting's commit")
			}
			select {
			case err := <-done:
				t.Fatalf("the change returned while its commit was parked: %v", err)
			default:
			}
			close(p.release)
			require.NoError(t, <-done)
			if name == "split" {
				require.NoError(t, <-putDone)
			}
		})
	}
}

// recvGuarded receives from ch; the deadline only guards against a hang
// (a put stuck behind the parked commit), it times nothing.
func recvGuarded(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(time.Minute):
		t.Fatal("blocked: still waiting after a minute")
		return nil
	}
}

// Writes racing Close (puts, catalog changes, attributes, checkpoints,
// trims, durable consumers) succeed or fail with ErrClosed, never panic
// and never reach a closed Pebble.
func TestWritesRacingClose(t *testing.T) {
	for round := range 10 {
		clk := newStepClock()
		db, err := engine.Open("db", memOpts(clk))
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
		put(t, db, "s", "k", "first")
		c, err := db.Consumer("s", "c", nil)
		require.NoError(t, err)
		rec := shardRecords(t, db, "s", 0)
		if len(rec) == 0 {
			rec = shardRecords(t, db, "s", 1)
		}
		require.NotEmpty(t, rec)

		writes := []func(i int) error{
			func(i int) error {
				_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: itoa(i), Data: []byte("x")})
				return err
			},
			func(i int) error {
				res, err := db.PutRecords(ctx, "s", []engine.Entry{{PartitionKey: "a", Data: []byte("y")}, {PartitionKey: itoa(i), Data: []byte("z")}})
				for _, r := range res {
					if err == nil {
						err = r.Err
					}
				}
				return err
			},
			func(i int) error {
				name := "t" + itoa(round) + "-" + itoa(i)
				if err := db.CreateStream(name, engine.StreamConfig{ShardCount: 1}); err != nil {
					return err
				}
				return db.DeleteStream(ctx, name)
			},
			func(i int) error {
				if err := db.SetAttr("s", "k", []byte(itoa(i))); err != nil {
					return err
				}
				if err := db.SetAttr("", "k", []byte(itoa(i))); err != nil {
					return err
				}
				return db.SetRetention("s", time.Duration(24+i%2)*time.Hour)
			},
			func(int) error { return c.Checkpoint(rec[0]) },
			func(int) error { return db.Trim(ctx, "s") },
			func(i int) error {
				if _, err := db.Consumer("s", "d"+itoa(i), nil); err != nil {
					return err
				}
				return db.DeleteConsumer("s", "d"+itoa(i))
			},
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g, w := range writes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; ; i++ {
					if err := w(i); err != nil {
						require.ErrorIs(t, err, engine.ErrClosed, "round %d, write %d: %v", round, g, err)
						return
					}
				}
			}()
		}
		close(start)
		runtime.Gosched()
		require.NoError(t, db.Close())
		wg.Wait()
	}
}
