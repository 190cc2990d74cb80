package engine_test

import (
	"context"
	"errors"
	"math/big"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// stepClock is an injectable clock that only moves when the test moves it
// (forwards or backwards). It is safe for concurrent use.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

// newStepClock starts at a fixed, millisecond-aligned instant.
func newStepClock() *stepClock {
	return &stepClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *stepClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// memOpts returns options on a fresh in-memory FS with the clock.
func memOpts(clk *stepClock) *engine.Options {
	o := &engine.Options{FS: vfs.NewMem(), TrimInterval: time.Hour}
	if clk != nil {
		o.Clock = clk.Now
	}
	return o
}

// openDB opens dir with opts and closes it at the end of the test if the
// test did not (a second Close returns ErrClosed, which is ignored).
func openDB(t testing.TB, dir string, opts *engine.Options) *engine.DB {
	t.Helper()
	db, err := engine.Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := db.Close(); err != nil && !errors.Is(err, engine.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

// newDB opens a DB on a fresh in-memory FS with a stepClock.
func newDB(t testing.TB) (*engine.DB, *stepClock, *engine.Options) {
	t.Helper()
	clk := newStepClock()
	opts := memOpts(clk)
	return openDB(t, "db", opts), clk, opts
}

// shardRecords reads every visible record of a shard with the Iterator.
func shardRecords(t testing.TB, db *engine.DB, stream string, id engine.ShardID) []engine.Record {
	t.Helper()
	it, err := db.Iterate(stream, id, engine.TrimHorizon())
	require.NoError(t, err)
	defer it.Close()
	var out []engine.Record
	for r := range it.All() {
		out = append(out, r.Clone())
	}
	require.NoError(t, it.Err())
	return out
}

// pageAll follows NextShardIterator from tok with the given page limit
// until a page comes back empty (open shard) or there is no next iterator
// (closed shard). It returns the records and the last output.
func pageAll(t testing.TB, db *engine.DB, tok string, limit int) ([]engine.Record, engine.GetRecordsOutput) {
	t.Helper()
	var recs []engine.Record
	for range 100000 {
		out, err := db.GetRecords(context.Background(), tok, limit)
		require.NoError(t, err)
		recs = append(recs, out.Records...)
		if out.NextShardIterator == "" || len(out.Records) == 0 {
			return recs, out
		}
		tok = out.NextShardIterator
	}
	t.Fatal("pageAll: no end after 100000 pages")
	return nil, engine.GetRecordsOutput{}
}

func put(t testing.TB, db *engine.DB, stream, key, data string) engine.PutResult {
	t.Helper()
	r, err := db.PutRecord(context.Background(), stream, engine.Entry{PartitionKey: key, Data: []byte(data)})
	require.NoError(t, err)
	return r
}

func putEHK(t testing.TB, db *engine.DB, stream, ehk, data string) engine.PutResult {
	t.Helper()
	r, err := db.PutRecord(context.Background(), stream, engine.Entry{PartitionKey: "k", ExplicitHashKey: ehk, Data: []byte(data)})
	require.NoError(t, err)
	return r
}

// datas returns the records' payloads as strings (nil for none).
func datas(recs []engine.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Data))
	}
	return out
}

func seqs(recs []engine.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.SequenceNumber.String()
	}
	return out
}

// bigOf converts a hash key to a big.Int through its decimal form.
func bigOf(t testing.TB, h engine.HashKey) *big.Int {
	t.Helper()
	b, ok := new(big.Int).SetString(h.String(), 10)
	require.True(t, ok, h.String())
	return b
}

// soakEnvOn (KVSTREAM_SOAK=1) turns the concurrency tests into long soaks;
// by default the package's tests stay well under 30 s under -race.
var (
	two128    = new(big.Int).Lsh(big.NewInt(1), 128)
	maxHash   = new(big.Int).Sub(two128, big.NewInt(1))
	bigOne    = big.NewInt(1)
	soakEnvOn = os.Getenv("KVSTREAM_SOAK") != ""
)

// requireTiling checks that the open shards' ranges tile [0, 2^128-1]
// exactly (sorted by start, no gap, no overlap) and returns them sorted.
func requireTiling(t testing.TB, shards []engine.ShardDescription) []engine.ShardDescription {
	t.Helper()
	var open []engine.ShardDescription
	for _, s := range shards {
		if s.Open() {
			open = append(open, s)
		}
	}
	require.NotEmpty(t, open)
	sortByStart(open)
	next := big.NewInt(0)
	for _, s := range open {
		start, end := bigOf(t, s.HashKeyRange.Start), bigOf(t, s.HashKeyRange.End)
		require.Zero(t, next.Cmp(start), "open %s starts at %s, want %s", s.ShardID, start, next)
		require.True(t, start.Cmp(end) <= 0, "open %s has an empty range", s.ShardID)
		next = new(big.Int).Add(end, bigOne)
	}
	require.Zero(t, next.Cmp(two128), "open ranges end at %s, want 2^128-1", new(big.Int).Sub(next, bigOne))
	return open
}

func sortByStart(s []engine.ShardDescription) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].HashKeyRange.Start.Cmp(s[j-1].HashKeyRange.Start) < 0; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// asError returns err as an *engine.Error, failing the test if it is not
// one.
func asError(t testing.TB, err error) *engine.Error {
	t.Helper()
	var e *engine.Error
	require.ErrorAs(t, err, &e)
	return e
}
