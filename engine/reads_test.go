package engine_test

// Reads at the edges: iterator tokens (tampered, truncated, garbage,
// foreign, expired, across restarts), every start position at its edges,
// GetRecords paging and NextShardIterator chaining, MillisBehindLatest,
// and the SHARD_END signal of a closed shard.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

func getRecords(t *testing.T, db *engine.DB, tok string, limit int) engine.GetRecordsOutput {
	t.Helper()
	out, err := db.GetRecords(context.Background(), tok, limit)
	require.NoError(t, err)
	return out
}

func shardIter(t *testing.T, db *engine.DB, stream string, id engine.ShardID, pos engine.StartPosition) string {
	t.Helper()
	tok, err := db.GetShardIterator(stream, id, pos)
	require.NoError(t, err)
	return tok
}

// iterData reads every visible record from pos with the Go iterator.
func iterData(t *testing.T, db *engine.DB, stream string, id engine.ShardID, pos engine.StartPosition) []string {
	t.Helper()
	it, err := db.Iterate(stream, id, pos)
	require.NoError(t, err)
	defer it.Close()
	var out []string
	for r := range it.All() {
		out = append(out, string(r.Data))
	}
	require.NoError(t, it.Err())
	return out
}

// tokData reads every visible record from pos with GetRecords.
func tokData(t *testing.T, db *engine.DB, stream string, id engine.ShardID, pos engine.StartPosition) []string {
	t.Helper()
	recs, _ := pageAll(t, db, shardIter(t, db, stream, id, pos), 3)
	return datas(recs)
}

func TestIteratorTokens(t *testing.T) {
	clk := newStepClock()
	opts := memOpts(clk)
	db := openDB(t, "db", opts)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	for i := range 3 {
		put(t, db, "s", "k", itoa(i))
	}
	tok := shardIter(t, db, "s", 0, engine.TrimHorizon())
	require.LessOrEqual(t, len(tok), 512)
	for _, pos := range []engine.StartPosition{engine.Latest(), engine.AtTimestamp(clk.Now())} {
		require.LessOrEqual(t, len(shardIter(t, db, "s", 0, pos)), 512)
	}
	// Stateless: the same token reads the same records again.
	require.Equal(t, []string{"0", "1", "2"}, datas(getRecords(t, db, tok, 100).Records))
	require.Equal(t, []string{"0", "1", "2"}, datas(getRecords(t, db, tok, 100).Records))

	invalid := func(s string) {
		t.Helper()
		var err error
		require.NotPanics(t, func() { _, err = db.GetRecords(ctx, s, 10) })
		require.ErrorIs(t, err, engine.ErrInvalidArgument, "%.60q", s)
		require.Equal(t, engine.ReasonInvalidToken, asError(t, err).Reason)
	}
	// Flip each character to another one of the token alphabet.
	for i := range len(tok) {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		invalid(string(b))
	}
	invalid(tok[:len(tok)-1])
	invalid(tok[:10])
	invalid(tok + "A")
	invalid("")
	invalid("not a token")
	invalid(strings.Repeat("A", len(tok)))
	invalid(strings.Repeat("\xff", len(tok)))
	invalid(strings.Repeat("x", 512))
	invalid(strings.Repeat("x", 1<<20))

	// A token of another data directory (another secret), for the same
	// stream name, stream id and shard.
	other := openDB(t, "other", memOpts(clk))
	require.NoError(t, other.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	put(t, other, "s", "k", "x")
	_, err := other.GetRecords(ctx, tok, 10)
	require.ErrorIs(t, err, engine.ErrInvalidArgument)
	_, err = db.GetRecords(ctx, shardIter(t, other, "s", 0, engine.TrimHorizon()), 10)
	require.ErrorIs(t, err, engine.ErrInvalidArgument)

	// Valid across Close/Open (the secret is stored in the DB).
	require.NoError(t, db.Close())
	db = openDB(t, "db", opts)
	require.Equal(t, []string{"0", "1", "2"}, datas(getRecords(t, db, tok, 100).Records))

	// Expiry: valid up to the TTL (5 minutes by default), expired after.
	clk.Add(5 * time.Minute)
	out := getRecords(t, db, tok, 1)
	require.Len(t, out.Records, 1)
	clk.Add(time.Millisecond)
	_, err = db.GetRecords(ctx, tok, 1)
	require.ErrorIs(t, err, engine.ErrExpiredIterator)
	require.Equal(t, engine.ReasonIteratorExpired, asError(t, err).Reason)
	// NextShardIterator is issued fresh: 5 minutes from its own call.
	clk.Add(4 * time.Minute)
	out = getRecords(t, db, out.NextShardIterator, 1)
	require.Equal(t, []string{"1"}, datas(out.Records))
	clk.Add(4 * time.Minute)
	out = getRecords(t, db, out.NextShardIterator, 1)
	require.Equal(t, []string{"2"}, datas(out.Records))
}

func TestIteratorTTLOption(t *testing.T) {
	clk := newStepClock()
	opts := memOpts(clk)
	opts.IteratorTTL = time.Minute
	db := openDB(t, "db", opts)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	tok := shardIter(t, db, "s", 0, engine.TrimHorizon())
	clk.Add(time.Minute + time.Millisecond)
	_, err := db.GetRecords(context.Background(), tok, 1)
	require.ErrorIs(t, err, engine.ErrExpiredIterator)
	require.Equal(t, int64(60000), asError(t, err).Limit)
}

func TestEmptyShard(t *testing.T) {
	db, clk, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	var toks []string
	for _, pos := range []engine.StartPosition{engine.TrimHorizon(), engine.Latest(), engine.AtTimestamp(clk.Now().Add(-time.Hour)), engine.AtTimestamp(clk.Now())} {
		tok := shardIter(t, db, "s", 0, pos)
		out := getRecords(t, db, tok, 10)
		require.Empty(t, out.Records, pos.Kind)
		require.NotEmpty(t, out.NextShardIterator, "an open shard always returns a next iterator")
		require.Zero(t, out.MillisBehindLatest)
		require.Empty(t, out.ChildShards)
		toks = append(toks, out.NextShardIterator)
		require.Empty(t, iterData(t, db, "s", 0, pos))
	}
	it, err := db.Iterate("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	defer it.Close()
	require.False(t, it.Next())
	require.NoError(t, it.Err())
	require.True(t, it.CaughtUp())
	require.False(t, it.ShardEnded())

	clk.Add(time.Second)
	put(t, db, "s", "k", "first")
	for _, tok := range toks {
		require.Equal(t, []string{"first"}, datas(getRecords(t, db, tok, 10).Records))
	}
	require.True(t, it.Next(), "an iterator at the end sees records put later")
	require.Equal(t, "first", string(it.Record().Data))
}

func TestLatestThenPut(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	for i := range 3 {
		put(t, db, "s", "k", "old"+itoa(i))
	}
	tok := shardIter(t, db, "s", 0, engine.Latest())
	it, err := db.Iterate("s", 0, engine.Latest())
	require.NoError(t, err)
	defer it.Close()
	require.False(t, it.Next())
	put(t, db, "s", "k", "new0")
	put(t, db, "s", "k", "new1")
	require.Equal(t, []string{"new0", "new1"}, datas(getRecords(t, db, tok, 100).Records))
	var got []string
	for r := range it.All() {
		got = append(got, string(r.Data))
	}
	require.Equal(t, []string{"new0", "new1"}, got)
	// LATEST is fixed when resolved, not re-evaluated at read time.
	tok2 := shardIter(t, db, "s", 0, engine.Latest())
	put(t, db, "s", "k", "new2")
	require.Equal(t, []string{"new0", "new1", "new2"}, datas(getRecords(t, db, tok, 100).Records))
	require.Equal(t, []string{"new2"}, datas(getRecords(t, db, tok2, 100).Records))
}

func TestAtTimestampEdges(t *testing.T) {
	db, clk, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	t0 := clk.Now()
	put(t, db, "s", "k", "r0")
	clk.Add(time.Second)
	put(t, db, "s", "k", "r1")
	put(t, db, "s", "k", "r2") // same millisecond as r1
	clk.Add(time.Second)
	put(t, db, "s", "k", "r3")
	clk.Add(time.Second)
	all := []string{"r0", "r1", "r2", "r3"}
	for _, c := range []struct {
		at   time.Time
		want []string
	}{
		{t0.Add(-time.Hour), all},                       // before the first record
		{time.Unix(0, 0), all},                          // the epoch
		{t0, all},                                       // exactly at the first
		{t0.Add(time.Millisecond), all[1:]},             // just after the first
		{t0.Add(time.Second), all[1:]},                  // exactly at r1 (r2 shares it)
		{t0.Add(2 * time.Second), all[3:]},              // exactly at the last
		{t0.Add(2*time.Second + 1), all[3:]},            // sub-millisecond after the last: same millisecond
		{t0.Add(2*time.Second + time.Millisecond), nil}, // after the last
		{clk.Now(), nil},                                // now
	} {
		require.Equal(t, c.want, tokData(t, db, "s", 0, engine.AtTimestamp(c.at)), "AtTimestamp(%v)", c.at.Sub(t0))
		require.Equal(t, c.want, iterData(t, db, "s", 0, engine.AtTimestamp(c.at)), "AtTimestamp(%v)", c.at.Sub(t0))
	}
	// After the last: a later put is read.
	tok := shardIter(t, db, "s", 0, engine.AtTimestamp(t0.Add(2*time.Second+time.Millisecond)))
	put(t, db, "s", "k", "r4")
	require.Equal(t, []string{"r4"}, datas(getRecords(t, db, tok, 10).Records))
	// In the future: refused, naming both times.
	_, err := db.GetShardIterator("s", 0, engine.AtTimestamp(clk.Now().Add(time.Millisecond)))
	require.ErrorIs(t, err, engine.ErrInvalidArgument)
	e := asError(t, err)
	require.Equal(t, engine.ReasonTimestampFuture, e.Reason)
	require.Equal(t, clk.Now().UnixMilli()+1, e.Time.UnixMilli())
	require.Equal(t, clk.Now().UnixMilli(), e.Now.UnixMilli())
}

func TestSequenceNumberPositionsAtEdges(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	var sn []engine.SequenceNumber
	for i := range 5 {
		sn = append(sn, put(t, db, "s", "k", "r"+itoa(i)).SequenceNumber)
	}
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	start := d.Shards[0].StartingSequenceNumber
	all := []string{"r0", "r1", "r2", "r3", "r4"}
	for _, c := range []struct {
		name string
		pos  engine.StartPosition
		want []string
	}{
		{"at first", engine.AtSequenceNumber(sn[0]), all},
		{"after first", engine.AfterSequenceNumber(sn[0]), all[1:]},
		{"at middle", engine.AtSequenceNumber(sn[2]), all[2:]},
		{"after middle", engine.AfterSequenceNumber(sn[2]), all[3:]},
		{"at last", engine.AtSequenceNumber(sn[4]), all[4:]},
		{"after last", engine.AfterSequenceNumber(sn[4]), nil},
		{"at starting number", engine.AtSequenceNumber(start), all},
		{"after starting number", engine.AfterSequenceNumber(start), all},
		{"trim horizon", engine.TrimHorizon(), all},
		{"latest", engine.Latest(), nil},
	} {
		require.Equal(t, c.want, tokData(t, db, "s", 0, c.pos), c.name)
		require.Equal(t, c.want, iterData(t, db, "s", 0, c.pos), c.name)
	}
	// AFTER the last number, then a put: exactly the new record.
	tok := shardIter(t, db, "s", 0, engine.AfterSequenceNumber(sn[4]))
	r5 := put(t, db, "s", "k", "r5")
	out := getRecords(t, db, tok, 10)
	require.Equal(t, []string{"r5"}, datas(out.Records))
	require.Equal(t, r5.SequenceNumber, out.Records[0].SequenceNumber)
	// The record's number positions exactly at it.
	require.Equal(t, []string{"r5"}, iterData(t, db, "s", 0, engine.AtSequenceNumber(out.Records[0].SequenceNumber)))
}

func TestGetRecordsPagingAndChaining(t *testing.T) {
	clk := newStepClock()
	opts := memOpts(clk)
	opts.MaxGetRecordsBytes = 100
	db := openDB(t, "db", opts)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	var want []string
	for i := range 25 {
		clk.Add(10 * time.Millisecond)
		d := "r" + itoa(i)
		put(t, db, "s", "k", d)
		want = append(want, d)
	}
	clk.Add(5 * time.Second)

	// Limit 10: pages of 10, 10, 5, then empty pages that keep a next
	// iterator. Behind the tip until the page reaches it.
	tok := shardIter(t, db, "s", 0, engine.TrimHorizon())
	var got []string
	for i, n := range []int{10, 10, 5, 0, 0} {
		out := getRecords(t, db, tok, 10)
		require.Len(t, out.Records, n, "page %d", i)
		require.NotEmpty(t, out.NextShardIterator)
		if i < 2 {
			require.Positive(t, out.MillisBehindLatest, "page %d is behind the tip", i)
		} else {
			require.Zero(t, out.MillisBehindLatest, "page %d reached the tip", i)
		}
		got = append(got, datas(out.Records)...)
		tok = out.NextShardIterator
	}
	require.Equal(t, want, got)

	// Limit 1 chains one record at a time.
	recs, _ := pageAll(t, db, shardIter(t, db, "s", 0, engine.TrimHorizon()), 1)
	require.Equal(t, want, datas(recs))
	for i := 1; i < len(recs); i++ {
		require.Equal(t, recs[i-1].SequenceNumber.Counter+1, recs[i].SequenceNumber.Counter)
	}

	// The byte cap (100 bytes of data + keys) cuts pages without losing or
	// repeating records, and a record larger than the cap still comes out
	// alone, so a reader is never stuck.
	require.NoError(t, db.CreateStream("b", engine.StreamConfig{ShardCount: 1}))
	var bwant []string
	for i := range 12 {
		d := strings.Repeat(string(rune('a'+i)), 29) // 30 bytes with the key
		if i == 5 {
			d = strings.Repeat("X", 150)
		}
		put(t, db, "b", "k", d)
		bwant = append(bwant, d)
	}
	tok = shardIter(t, db, "b", 0, engine.TrimHorizon())
	var bgot []string
	var sizes []int
	for {
		out := getRecords(t, db, tok, 1000)
		if len(out.Records) == 0 {
			break
		}
		n := 0
		for _, r := range out.Records {
			n += len(r.Data) + len(r.PartitionKey)
		}
		require.True(t, n <= 100 || len(out.Records) == 1, "page of %d bytes in %d records", n, len(out.Records))
		sizes = append(sizes, len(out.Records))
		bgot = append(bgot, datas(out.Records)...)
		tok = out.NextShardIterator
	}
	require.Equal(t, bwant, bgot)
	require.Contains(t, sizes, 3)
}

// TestClosedShardEnd: after SplitShard the parent keeps its records; reading
// it to the end returns no NextShardIterator and the ChildShards, and the
// Go iterator reports ShardEnded.
func TestClosedShardEnd(t *testing.T) {
	db, clk, _ := newDB(t)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	for i := range 5 {
		put(t, db, "s", "k"+itoa(i), "p"+itoa(i))
	}
	latestBefore := shardIter(t, db, "s", 0, engine.Latest())
	it, err := db.Iterate("s", 0, engine.Latest())
	require.NoError(t, err)
	defer it.Close()
	waited := make(chan error, 1)
	go func() { waited <- it.Wait(ctx) }()

	clk.Add(time.Second)
	const split = "170141183460469231731687303715884105728"
	require.NoError(t, db.SplitShard("s", 0, split))
	select {
	case err := <-waited:
		require.NoError(t, err, "closing the shard wakes a waiting reader")
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return when the shard closed")
	}
	require.False(t, it.Next())
	require.True(t, it.ShardEnded())
	for i := range 6 {
		r := put(t, db, "s", "k"+itoa(i), "c"+itoa(i))
		require.NotEqual(t, engine.ShardID(0), r.ShardID, "no record lands in a closed shard")
	}

	lo, ok := engine.ParseHashKey(split)
	require.True(t, ok)
	wantChildren := []engine.ChildShard{
		{ShardID: 1, ParentShards: []engine.ShardID{0}, HashKeyRange: engine.HashRange{End: lo.Sub(1)}},
		{ShardID: 2, ParentShards: []engine.ShardID{0}, HashKeyRange: engine.HashRange{Start: lo, End: engine.MaxHashKey}},
	}
	// Page through the parent: records first, then SHARD_END.
	tok := shardIter(t, db, "s", 0, engine.TrimHorizon())
	var got []string
	for range 10 {
		out := getRecords(t, db, tok, 2)
		got = append(got, datas(out.Records)...)
		if out.NextShardIterator == "" {
			require.Equal(t, wantChildren, out.ChildShards)
			break
		}
		require.Empty(t, out.ChildShards)
		tok = out.NextShardIterator
	}
	require.Equal(t, []string{"p0", "p1", "p2", "p3", "p4"}, got)
	// Positions at or past the end all give SHARD_END at once.
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	end := d.Shards[0].EndingSequenceNumber
	require.False(t, d.Shards[0].Open())
	for _, tk := range []string{latestBefore, shardIter(t, db, "s", 0, engine.Latest()), shardIter(t, db, "s", 0, engine.AfterSequenceNumber(end)), shardIter(t, db, "s", 0, engine.AtTimestamp(clk.Now()))} {
		out := getRecords(t, db, tk, 10)
		require.Empty(t, out.Records)
		require.Empty(t, out.NextShardIterator)
		require.Equal(t, wantChildren, out.ChildShards)
	}
	// The Go iterator stops at the end of a closed shard.
	it2, err := db.Iterate("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	n := 0
	for range it2.All() {
		n++
	}
	require.NoError(t, it2.Err())
	require.Equal(t, 5, n)
	require.True(t, it2.ShardEnded())
	require.NoError(t, it2.Wait(ctx), "Wait on an ended shard returns at once")
	require.NoError(t, it2.Close())
	require.NoError(t, it2.Close(), "Close is idempotent")

	// Merging the children: each parent's end names the merged child.
	require.NoError(t, db.MergeShards("s", 1, 2))
	for _, p := range []engine.ShardID{1, 2} {
		recs, last := pageAll(t, db, shardIter(t, db, "s", p, engine.TrimHorizon()), 100)
		require.NotEmpty(t, recs)
		require.Empty(t, last.NextShardIterator)
		require.Equal(t, []engine.ChildShard{{ShardID: 3, ParentShards: []engine.ShardID{1, 2}, HashKeyRange: engine.HashRange{End: engine.MaxHashKey}}}, last.ChildShards)
	}
}
