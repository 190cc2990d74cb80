package engine_test

// Invariant 6: bad input never corrupts state and never panics; it gets a
// clear error, of the documented sentinel, naming the field and the limit.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

const (
	hash2p128 = "340282366920938463463374607431768211456" // 2^128: one past the space
	mib       = 1 << 20
)

func entries(n int, size int) []engine.Entry {
	es := make([]engine.Entry, n)
	for i := range es {
		es[i] = engine.Entry{PartitionKey: "k" + itoa(i), Data: make([]byte, size)}
	}
	return es
}

func TestValidationErrors(t *testing.T) {
	db, clk, opts := newDB(t)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	require.NoError(t, db.CreateStream("three", engine.StreamConfig{ShardCount: 3}))
	require.NoError(t, db.CreateStream("closed", engine.StreamConfig{ShardCount: 1}))
	require.NoError(t, db.SplitShard("closed", 0, "170141183460469231731687303715884105728"))
	put(t, db, "s", "k", "before")
	tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	before := takeSnapshot(t, db)

	longKey := strings.Repeat("k", 257)
	emoji := strings.Repeat("😀", 129) // 258 UTF-16 units, 129 runes
	tags51 := map[string]string{}
	for i := range 51 {
		tags51["t"+itoa(i)] = "v"
	}
	create := func(name string, cfg engine.StreamConfig) func() error {
		return func() error { return db.CreateStream(name, cfg) }
	}
	putE := func(stream string, e engine.Entry) func() error {
		return func() error { _, err := db.PutRecord(ctx, stream, e); return err }
	}
	putRs := func(stream string, es []engine.Entry) func() error {
		return func() error { _, err := db.PutRecords(ctx, stream, es); return err }
	}
	getR := func(limit int) func() error {
		return func() error { _, err := db.GetRecords(ctx, tok, limit); return err }
	}
	iterAt := func(stream string, id engine.ShardID, pos engine.StartPosition) func() error {
		return func() error { _, err := db.GetShardIterator(stream, id, pos); return err }
	}
	ehk := func(v string) func() error {
		return putE("s", engine.Entry{PartitionKey: "k", ExplicitHashKey: v})
	}

	cases := []struct {
		name string
		call func() error
		kind error
		want []string // substrings of the message: field, limit, value
	}{
		// Stream names: 1–128 characters of [a-zA-Z0-9_.-].
		{"name empty", create("", engine.StreamConfig{ShardCount: 1}), engine.ErrValidation, []string{"StreamName", "128", "has 0"}},
		{"name 129", create(strings.Repeat("a", 129), engine.StreamConfig{ShardCount: 1}), engine.ErrValidation, []string{"StreamName", "128", "129"}},
		{"name space", create("a b", engine.StreamConfig{ShardCount: 1}), engine.ErrValidation, []string{"StreamName", "[a-zA-Z0-9_.-]+"}},
		{"name slash", create("a/b", engine.StreamConfig{ShardCount: 1}), engine.ErrValidation, []string{"StreamName", "[a-zA-Z0-9_.-]+"}},
		{"name non-ASCII", create("straße", engine.StreamConfig{ShardCount: 1}), engine.ErrValidation, []string{"StreamName", "[a-zA-Z0-9_.-]+"}},
		{"name NUL", create("a\x00", engine.StreamConfig{ShardCount: 1}), engine.ErrValidation, []string{"StreamName"}},
		{"name exists", create("s", engine.StreamConfig{ShardCount: 1}), engine.ErrStreamExists, []string{"s already exists"}},
		// Shard count and config.
		{"shards 0", create("x", engine.StreamConfig{}), engine.ErrValidation, []string{"ShardCount", "at least 1"}},
		{"shards -3", create("x", engine.StreamConfig{ShardCount: -3}), engine.ErrValidation, []string{"ShardCount -3", "at least 1"}},
		{"shards over quota", create("x", engine.StreamConfig{ShardCount: 20001}), engine.ErrLimitExceeded, []string{"shard limit", "20000"}},
		{"retention short", create("x", engine.StreamConfig{ShardCount: 1, Retention: 30 * time.Second}), engine.ErrInvalidArgument, []string{"Retention", "30s", "1m0s", "8760h"}},
		{"retention negative", create("x", engine.StreamConfig{ShardCount: 1, Retention: -time.Hour}), engine.ErrInvalidArgument, []string{"Retention", "1m0s"}},
		{"retention long", create("x", engine.StreamConfig{ShardCount: 1, Retention: 8761 * time.Hour}), engine.ErrInvalidArgument, []string{"Retention", "8760h"}},
		{"partitioner", create("x", engine.StreamConfig{ShardCount: 1, Partitioner: 7}), engine.ErrValidation, []string{"Partitioner 7", "xxhash", "md5"}},
		{"limits negative", create("x", engine.StreamConfig{ShardCount: 1, Limits: engine.Limits{WriteRecordsPerSec: -1}}), engine.ErrValidation, []string{"Limits", "negative"}},
		{"max bytes negative", create("x", engine.StreamConfig{ShardCount: 1, MaxBytes: -1}), engine.ErrValidation, []string{"MaxBytes -1"}},
		{"tags 51", create("x", engine.StreamConfig{ShardCount: 1, Tags: tags51}), engine.ErrInvalidArgument, []string{"50 tags", "51"}},
		{"tag key empty", create("x", engine.StreamConfig{ShardCount: 1, Tags: map[string]string{"": "v"}}), engine.ErrValidation, []string{"tag key", "128"}},
		{"tag value 257", create("x", engine.StreamConfig{ShardCount: 1, Tags: map[string]string{"k": strings.Repeat("v", 257)}}), engine.ErrValidation, []string{"tag value", "256"}},
		// Entries: partition key 1–256 UTF-16 units, data + key ≤ 1 MiB.
		{"pk empty", putE("s", engine.Entry{}), engine.ErrValidation, []string{"PartitionKey", "1 to 256", "has 0"}},
		{"pk 257", putE("s", engine.Entry{PartitionKey: longKey}), engine.ErrValidation, []string{"PartitionKey", "256", "257"}},
		{"pk 258 UTF-16 units", putE("s", engine.Entry{PartitionKey: emoji}), engine.ErrValidation, []string{"PartitionKey", "256", "258"}},
		{"record too big", putE("s", engine.Entry{PartitionKey: "k", Data: make([]byte, mib)}), engine.ErrValidation, []string{"Data", "PartitionKey", "1048577", "1048576"}},
		{"stream missing", putE("nope", engine.Entry{PartitionKey: "k"}), engine.ErrStreamNotFound, []string{"nope"}},
		// PutRecords: 1–500 entries, ≤ 5 MiB, per-entry fields named by index.
		{"records 0", putRs("s", nil), engine.ErrValidation, []string{"Records", "500", "has 0"}},
		{"records 501", putRs("s", entries(501, 0)), engine.ErrValidation, []string{"Records", "501", "500"}},
		{"records > 5 MiB", putRs("s", entries(6, 900<<10)), engine.ErrValidation, []string{"Records", "5529612", "5242880"}},
		{"records entry pk", putRs("s", append(entries(2, 1), engine.Entry{})), engine.ErrValidation, []string{"Records[2].PartitionKey", "256"}},
		{"records entry size", putRs("s", append(entries(3, 1), engine.Entry{PartitionKey: "k", Data: make([]byte, mib)})), engine.ErrValidation, []string{"Records[3].Data", "1048576"}},
		{"records entry ehk", putRs("s", append(entries(3, 1), engine.Entry{PartitionKey: "k", ExplicitHashKey: hash2p128})), engine.ErrInvalidArgument, []string{"ExplicitHashKey", "[0, 2^128-1]", hash2p128}},
		// ExplicitHashKey: a decimal in [0, 2^128-1].
		{"ehk 2^128", ehk(hash2p128), engine.ErrInvalidArgument, []string{"ExplicitHashKey", "[0, 2^128-1]", hash2p128}},
		{"ehk negative", ehk("-1"), engine.ErrInvalidArgument, []string{"ExplicitHashKey", "2^128-1", "-1"}},
		{"ehk letters", ehk("abc"), engine.ErrInvalidArgument, []string{"ExplicitHashKey", "abc"}},
		{"ehk decimal point", ehk("1.0"), engine.ErrInvalidArgument, []string{"ExplicitHashKey", "1.0"}},
		{"ehk space", ehk(" 1"), engine.ErrInvalidArgument, []string{"ExplicitHashKey"}},
		{"ehk 40 digits", ehk(strings.Repeat("1", 40)), engine.ErrInvalidArgument, []string{"ExplicitHashKey"}},
		// GetRecords Limit: 1–10000 (0 means the default, see TestGetRecordsLimitZeroIsDefault).
		{"limit -1", getR(-1), engine.ErrValidation, []string{"Limit -1", "[1, 10000]"}},
		{"limit 10001", getR(10001), engine.ErrValidation, []string{"Limit 10001", "[1, 10000]"}},
		// Start positions.
		{"shard missing", iterAt("s", 99, engine.TrimHorizon()), engine.ErrShardNotFound, []string{"shardId-000000000099", "s"}},
		{"stream missing iter", iterAt("nope", 0, engine.TrimHorizon()), engine.ErrStreamNotFound, []string{"nope"}},
		{"zero position", iterAt("s", 0, engine.StartPosition{}), engine.ErrValidation, []string{"TRIM_HORIZON", "AT_TIMESTAMP"}},
		{"future timestamp", iterAt("s", 0, engine.AtTimestamp(clk.Now().Add(time.Hour))), engine.ErrInvalidArgument, []string{"AtTimestamp", "current time"}},
		// Retention changes.
		{"set retention short", func() error { return db.SetRetention("s", time.Second) }, engine.ErrInvalidArgument, []string{"Retention", "1m0s"}},
		{"set retention long", func() error { return db.SetRetention("s", 9000*time.Hour) }, engine.ErrInvalidArgument, []string{"Retention", "8760h"}},
		{"increase to shorter", func() error { return db.IncreaseRetention("s", 12*time.Hour) }, engine.ErrInvalidArgument, []string{"12 hours", "24 hours", "shorten", "DecreaseRetention"}},
		{"decrease to longer", func() error { return db.DecreaseRetention("s", 48*time.Hour) }, engine.ErrInvalidArgument, []string{"48 hours", "24 hours", "lengthen", "IncreaseRetention"}},
		// SplitShard: Start+1 < k < End on an open shard.
		{"split not a number", func() error { return db.SplitShard("s", 0, "x") }, engine.ErrValidation, []string{"NewStartingHashKey", "2^128-1"}},
		{"split 2^128", func() error { return db.SplitShard("s", 0, hash2p128) }, engine.ErrValidation, []string{"NewStartingHashKey"}},
		{"split at start+1", func() error { return db.SplitShard("s", 0, "1") }, engine.ErrInvalidArgument, []string{"NewStartingHashKey 1", "shardId-000000000000", "greater than one plus", "StartingHashKey 0"}},
		{"split at start", func() error { return db.SplitShard("s", 0, "0") }, engine.ErrInvalidArgument, []string{"NewStartingHashKey 0"}},
		{"split at end", func() error { return db.SplitShard("s", 0, "170141183460469231731687303715884105727") }, engine.ErrInvalidArgument, []string{"less than the shard's EndingHashKey 170141183460469231731687303715884105727"}},
		{"split outside", func() error { return db.SplitShard("s", 0, "170141183460469231731687303715884105730") }, engine.ErrInvalidArgument, []string{"NewStartingHashKey"}},
		{"split closed", func() error { return db.SplitShard("closed", 0, "1000") }, engine.ErrResourceInUse, []string{"shardId-000000000000", "closed"}},
		{"split missing shard", func() error { return db.SplitShard("s", 7, "1000") }, engine.ErrShardNotFound, []string{"shardId-000000000007"}},
		{"split missing stream", func() error { return db.SplitShard("nope", 0, "1000") }, engine.ErrStreamNotFound, []string{"nope"}},
		// MergeShards: two open, adjacent shards.
		{"merge not adjacent", func() error { return db.MergeShards("three", 0, 2) }, engine.ErrInvalidArgument, []string{"shardId-000000000000", "shardId-000000000002", "not an adjacent pair"}},
		{"merge with itself", func() error { return db.MergeShards("three", 1, 1) }, engine.ErrInvalidArgument, []string{"not an adjacent pair"}},
		{"merge missing", func() error { return db.MergeShards("three", 0, 9) }, engine.ErrShardNotFound, []string{"shardId-000000000009"}},
		{"merge closed", func() error { return db.MergeShards("closed", 0, 1) }, engine.ErrResourceInUse, []string{"closed"}},
		// UpdateShardCount: 1 ≤ target, within [half, double] of the open count.
		{"target 0", func() error { return db.UpdateShardCount("s", 0) }, engine.ErrValidation, []string{"TargetShardCount 0", "at least 1"}},
		{"target over double", func() error { return db.UpdateShardCount("s", 5) }, engine.ErrLimitExceeded, []string{"target 5", "double (4)", "open shard count 2"}},
		{"target under half", func() error { return db.UpdateShardCount("three", 1) }, engine.ErrLimitExceeded, []string{"target 1", "half (2)", "open shard count 3"}},
		// Other settings.
		{"max bytes", func() error { return db.SetMaxBytes("s", -5, engine.DiscardOld) }, engine.ErrValidation, []string{"MaxBytes -5"}},
		{"discard", func() error { return db.SetMaxBytes("s", 5, 9) }, engine.ErrValidation, []string{"Discard"}},
		{"set limits", func() error { return db.SetLimits("s", engine.Limits{ReadCallsPerSec: -1}) }, engine.ErrValidation, []string{"Limits"}},
		{"add tags 51", func() error { return db.AddTags("s", tags51) }, engine.ErrInvalidArgument, []string{"50 tags"}},
		{"delete missing", func() error { return db.DeleteStream(ctx, "nope") }, engine.ErrStreamNotFound, []string{"nope"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { err = c.call() })
			require.Error(t, err)
			require.ErrorIs(t, err, c.kind, "%v", err)
			msg := engine.Message(err)
			for _, w := range c.want {
				require.Contains(t, msg, w)
			}
			require.True(t, strings.HasPrefix(err.Error(), "kvstream: "), err.Error())
		})
	}

	// Nothing above changed any state, and the DB still works and reopens.
	after := takeSnapshot(t, db)
	require.Equal(t, before, after)
	require.Equal(t, "after", string(shardRecords(t, db, "s", put(t, db, "s", "k", "after").ShardID)[1].Data))
	require.NoError(t, db.Close())
	db = openDB(t, "db", opts)
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, d.Retention)
	require.EqualValues(t, 2, d.Records)
}

// The limits at their edges are accepted.
func TestValidationAcceptsLimits(t *testing.T) {
	db, _, _ := newDB(t)
	ctx := context.Background()
	require.NoError(t, db.CreateStream(strings.Repeat("a", 128), engine.StreamConfig{ShardCount: 1}))
	require.NoError(t, db.CreateStream("A-z_0.9", engine.StreamConfig{ShardCount: 1, Retention: time.Minute}))
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2, Retention: 8760 * time.Hour}))
	for _, e := range []engine.Entry{
		{PartitionKey: "k"},                                    // empty data is valid
		{PartitionKey: strings.Repeat("k", 256)},               // 256 characters
		{PartitionKey: strings.Repeat("é", 256)},               // 256 UTF-16 units, 512 bytes
		{PartitionKey: strings.Repeat("😀", 128)},               // 256 UTF-16 units
		{PartitionKey: "k", Data: make([]byte, mib-1)},         // exactly 1 MiB with the key
		{PartitionKey: "k", ExplicitHashKey: "0"},              // first hash key
		{PartitionKey: "k", ExplicitHashKey: maxHash.String()}, // last hash key
	} {
		_, err := db.PutRecord(ctx, "s", e)
		require.NoError(t, err, "%.20q", e.PartitionKey)
	}
	_, err := db.PutRecords(ctx, "s", entries(500, 0))
	require.NoError(t, err)
	// 5 MiB exactly, data plus keys ("k0".."k4").
	es := entries(5, mib)
	for i := range es {
		es[i].Data = es[i].Data[:mib-len(es[i].PartitionKey)]
	}
	_, err = db.PutRecords(ctx, "s", es)
	require.NoError(t, err)
	tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	_, err = db.GetRecords(ctx, tok, 1)
	require.NoError(t, err)
	_, err = db.GetRecords(ctx, tok, 10000)
	require.NoError(t, err)
	require.NoError(t, db.IncreaseRetention("s", 8760*time.Hour), "equal is OK")
	require.NoError(t, db.DecreaseRetention("s", 24*time.Hour))
}

// Options are validated at Open, naming the field; the caller's struct is
// never modified.
func TestOptionsValidation(t *testing.T) {
	for _, c := range []struct {
		opts engine.Options
		want string
	}{
		{engine.Options{IteratorTTL: -1}, "IteratorTTL"},
		{engine.Options{MaxRecordBytes: 65 << 20}, "MaxRecordBytes"},
		{engine.Options{MaxRecordBytes: -1}, "MaxRecordBytes"},
		{engine.Options{MaxPutRecordsEntries: -1}, "MaxPutRecordsEntries"},
		{engine.Options{MaxPutRecordsBytes: -1}, "MaxPutRecordsBytes"},
		{engine.Options{MaxGetRecords: -1}, "MaxGetRecords"},
		{engine.Options{MaxGetRecordsBytes: -1}, "MaxGetRecordsBytes"},
		{engine.Options{MinRetention: -1}, "MinRetention"},
		{engine.Options{MaxShards: -1}, "MaxShards"},
		{engine.Options{TrimInterval: -1}, "TrimInterval"},
		{engine.Options{Profile: 9}, "Profile"},
	} {
		o := c.opts
		_, err := engine.Open(t.TempDir(), &o)
		require.ErrorIs(t, err, engine.ErrInvalidOptions, c.want)
		require.Contains(t, engine.Message(err), c.want)
		require.Equal(t, c.opts, o, "Open must not modify the caller's options")
	}
}

// Configured limits replace the Kinesis defaults and are named in errors.
func TestConfiguredLimits(t *testing.T) {
	opts := memOpts(nil)
	opts.MaxRecordBytes = 100
	opts.MaxPutRecordsEntries = 3
	opts.MaxPutRecordsBytes = 150
	opts.MaxGetRecords = 5
	db := openDB(t, "db", opts)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: make([]byte, 100)})
	require.ErrorIs(t, err, engine.ErrValidation)
	require.Contains(t, engine.Message(err), "101 bytes, more than the limit of 100 bytes")
	_, err = db.PutRecords(ctx, "s", entries(4, 1))
	require.ErrorIs(t, err, engine.ErrValidation)
	require.Contains(t, engine.Message(err), "limit of 3")
	_, err = db.PutRecords(ctx, "s", entries(2, 80))
	require.ErrorIs(t, err, engine.ErrValidation)
	require.Contains(t, engine.Message(err), "limit of 150 bytes")
	_, err = db.PutRecords(ctx, "s", entries(3, 10))
	require.NoError(t, err)
	tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	_, err = db.GetRecords(ctx, tok, 6)
	require.ErrorIs(t, err, engine.ErrValidation)
	require.Contains(t, engine.Message(err), "[1, 5]")
}

// The engine's GetRecords documents Limit 0 as "use Options.MaxGetRecords"
// (the server maps Kinesis' Limit constraint itself).
func TestGetRecordsLimitZeroIsDefault(t *testing.T) {
	opts := memOpts(nil)
	opts.MaxGetRecords = 4
	db := openDB(t, "db", opts)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	for i := range 6 {
		put(t, db, "s", "k", itoa(i))
	}
	tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	out, err := db.GetRecords(context.Background(), tok, 0)
	require.NoError(t, err)
	require.Len(t, out.Records, 4)
}
