package command

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// getFixture creates stream s with 2 shards holding 3 records on the
// shard of key "a" and 2 on the other, and returns the directory and the
// put output lines ("shard seq") in order.
func getFixture(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "s", "--shards", "2")
	var puts []string
	for _, p := range []struct{ key, data string }{{"a", "a1"}, {"a", "a2"}, {"a", "a3"}} {
		puts = append(puts, lines(mustRun(t, dir, "put", "s", p.data, "--key", p.key))...)
	}
	// A hash key in the other shard.
	other := "0"
	if strings.HasPrefix(puts[0], "shardId-000000000000") {
		other = "340282366920938463463374607431768211455"
	}
	puts = append(puts, lines(mustRun(t, dir, "put", "s", "b1", "b2", "--key", "b", "--explicit-hash-key", other))...)
	return dir, puts
}

func TestGet(t *testing.T) {
	t.Parallel()
	dir, puts := getFixture(t)
	shardA, seqA1 := strings.Fields(puts[0])[0], strings.Fields(puts[0])[1]
	seqA2 := strings.Fields(puts[1])[1]
	shardB := strings.Fields(puts[3])[0]
	aFirst := shardA < shardB
	all := "a1\na2\na3\nb1\nb2\n"
	if !aFirst {
		all = "b1\nb2\na1\na2\na3\n"
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // exact stdout, if not empty
		out  []string
		errs []string
	}{
		{name: "all shards from trim horizon", args: []string{"get", "s"}, want: all},
		{name: "one shard", args: []string{"get", "s", "--shard", shardA}, want: "a1\na2\na3\n"},
		{name: "short shard id", args: []string{"get", "s", "--shard", shardB[len(shardB)-1:]}, want: "b1\nb2\n"},
		{name: "limit", args: []string{"get", "s", "--shard", shardA, "--limit", "2"}, want: "a1\na2\n"},
		{name: "latest", args: []string{"get", "s", "--from", "latest"}, want: ""},
		{name: "at sequence number finds its shard", args: []string{"get", "s", "--from", "at:" + seqA2}, want: "a2\na3\n"},
		{name: "after sequence number", args: []string{"get", "s", "--from", "after:" + seqA1, "--shard", shardA}, want: "a2\na3\n"},
		{name: "time", args: []string{"get", "s", "--from", "time:" + past, "--shard", shardA}, want: "a1\na2\na3\n"},
		{name: "json", args: []string{"get", "s", "--shard", shardA, "--limit", "1", "--format", "json"},
			out: []string{`"shardId":"` + shardA + `"`, `"sequenceNumber":"` + seqA1 + `"`, `"partitionKey":"a"`, `"data":"a1"`, `"approximateArrivalTimestamp":"20`}},
		{name: "follow stops at limit", args: []string{"get", "s", "--follow", "--limit", "5"}, out: []string{"a1", "b2"}},
		{name: "time in the future", args: []string{"get", "s", "--from", "time:" + future}, code: ExitFailure, errs: []string{"after the current time"}},
		{name: "bad from", args: []string{"get", "s", "--from", "yesterday"}, code: ExitUsage, errs: []string{"--from \"yesterday\" must be"}},
		{name: "bad sequence number", args: []string{"get", "s", "--from", "at:12x"}, code: ExitUsage, errs: []string{"not a Kinesis sequence number"}},
		{name: "sequence number of another shard", args: []string{"get", "s", "--from", "at:" + seqA1, "--shard", shardB}, code: ExitUsage, errs: []string{"names a record of " + shardA}},
		{name: "bad format", args: []string{"get", "s", "--format", "xml"}, code: ExitUsage, errs: []string{"--format \"xml\""}},
		{name: "bad shard", args: []string{"get", "s", "--shard", "first"}, code: ExitUsage, errs: []string{`"first" is not a shard id`}},
		{name: "absent shard", args: []string{"get", "s", "--shard", "9"}, code: ExitFailure, errs: []string{"has no shard shardId-000000000009"}},
		{name: "missing stream", args: []string{"get", "nope"}, code: ExitFailure, errs: []string{`stream "nope" not found`}},
		{name: "consumer with shard", args: []string{"get", "s", "--consumer", "c", "--shard", "0"}, code: ExitUsage, errs: []string{"does not take --shard"}},
		{name: "consumer at sequence number", args: []string{"get", "s", "--consumer", "c", "--from", "at:" + seqA1}, code: ExitUsage, errs: []string{"--consumer starts new consumers at"}},
		{name: "consumer over endpoint", args: []string{"get", "s", "--consumer", "c", "--endpoint", "http://127.0.0.1:1"}, code: ExitUsage, errs: []string{"local data directory only"}},
		{name: "bad consumer name", args: []string{"get", "s", "--consumer", "a b"}, code: ExitFailure, errs: []string{"ConsumerName"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: the subtests share one data directory.
			r := run(t, dir, tc.args...)
			r.check(t, tc.code, tc.out, tc.errs)
			if tc.want != "" || (tc.code == ExitOK && tc.out == nil) {
				require.Equal(t, tc.want, r.stdout)
			}
		})
	}
}

func TestGetJSONBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	_, err = db.PutRecord(t.Context(), "s", engine.Entry{PartitionKey: "k", Data: []byte{0xff, 0, 1}})
	require.NoError(t, err)
	_, err = db.PutRecord(t.Context(), "s", engine.Entry{PartitionKey: "k", Data: []byte("<a&b>")})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	out := mustRun(t, dir, "get", "s", "--format", "json")
	ls := lines(out)
	require.Len(t, ls, 2)
	var r0, r1 map[string]string
	require.NoError(t, json.Unmarshal([]byte(ls[0]), &r0))
	require.NoError(t, json.Unmarshal([]byte(ls[1]), &r1))
	require.Equal(t, "/wAB", r0["dataBase64"])
	require.NotContains(t, r0, "data")
	require.Equal(t, "<a&b>", r1["data"])
	require.Contains(t, ls[1], `"data":"<a&b>"`, "no HTML escaping")
}

// TestGetFollowInterrupt is Ctrl-C on get --follow: it exits 0 and closes
// the engine.
func TestGetFollowInterrupt(t *testing.T) {
	t.Parallel()
	dir, puts := getFixture(t)
	r := runUntil(t, dir, "a3\n", "get", "s", "--follow", "--shard", strings.Fields(puts[0])[0])
	r.check(t, ExitOK, nil, nil)
	require.Equal(t, "a1\na2\na3\n", r.stdout)
	mustRun(t, dir, "streams", "list")
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFollowLocal drives get --follow's reader against a DB this test
// also writes to (one directory is one process's, so the command cannot
// share it): records put later are printed once the commit wakes the
// reader, the children of a split and of a merge are followed, and each
// key's records print in put order across them.
func TestFollowLocal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	st := &localStore{db: &heldDB{DB: db}, dir: dir}
	defer st.Close()

	var buf syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &recordPrinter{w: &buf, done: cancel}
	o := &getOptions{}
	done := make(chan error, 1)
	go func() {
		done <- o.followShards(ctx, st, "s", []shardInfo{{ID: "shardId-000000000000"}}, true, engine.TrimHorizon(), out)
	}()
	keys := []string{"a", "b", "c", "d", "e", "f"}
	n := 0
	putRound := func() {
		for _, k := range keys {
			n++
			_, err := db.PutRecord(t.Context(), "s", engine.Entry{PartitionKey: k, Data: fmt.Appendf(nil, "%s %d", k, n)})
			require.NoError(t, err)
		}
	}
	waitLines := func(want int) {
		require.Eventually(t, func() bool { return len(lines(buf.String())) >= want }, testHangGuard, time.Millisecond,
			"waiting for %d lines in %q", want, buf.String())
	}
	putRound() // before or after the reader starts: it reads from the trim horizon
	waitLines(6)
	require.NoError(t, db.SplitShard("s", 0, "170141183460469231731687303715884105728"))
	for range 5 {
		putRound()
	}
	waitLines(36)
	require.NoError(t, db.MergeShards("s", 1, 2))
	for range 5 {
		putRound()
	}
	waitLines(66)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	got := lines(buf.String())
	require.Len(t, got, 66)
	last := map[string]int{}
	for _, l := range got {
		var k string
		var i int
		_, err := fmt.Sscanf(l, "%s %d", &k, &i)
		require.NoError(t, err)
		require.Greater(t, i, last[k], "records of key %s in put order: %v", k, got)
		last[k] = i
	}
}

// TestGetConsumer: a durable consumer resumes where the previous run
// stopped, across processes (here: runs), and --limit checkpoints only
// what it printed.
func TestGetConsumer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "s")
	mustRun(t, dir, "put", "s", "r1", "r2", "r3", "--key", "k")
	for _, tc := range []struct {
		name string
		put  []string // records put before the run
		args []string
		want string
	}{
		{name: "first two", args: []string{"--limit", "2"}, want: "r1\nr2\n"},
		{name: "the rest", want: "r3\n"},
		{name: "caught up", want: ""},
		{name: "new records", put: []string{"r4", "r5"}, want: "r4\nr5\n"},
		{name: "follow with limit", put: []string{"r6"}, args: []string{"--follow", "--limit", "1"}, want: "r6\n"},
		{name: "another consumer from the start", args: []string{"--consumer", "other", "--limit", "1"}, want: "r1\n"},
		{name: "a new consumer at latest", args: []string{"--consumer", "late", "--from", "latest"}, want: ""},
		{name: "the latest one sees what comes next", put: []string{"r7"}, args: []string{"--consumer", "late"}, want: "r7\n"},
	} {
		if len(tc.put) > 0 {
			mustRun(t, dir, append([]string{"put", "s", "--key", "k"}, tc.put...)...)
		}
		args := append([]string{"get", "s", "--consumer", "billing"}, tc.args...)
		r := run(t, dir, args...)
		r.check(t, ExitOK, nil, nil)
		require.Equal(t, tc.want, r.stdout, tc.name)
	}
}

// TestGetConsumerInterrupt: Ctrl-C on a following consumer exits 0 and
// keeps the checkpoints of what was printed.
func TestGetConsumerInterrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "s")
	mustRun(t, dir, "put", "s", "r1", "r2", "--key", "k")
	r := runUntil(t, dir, "r2\n", "get", "s", "--consumer", "c", "--follow")
	r.check(t, ExitOK, nil, nil)
	require.Equal(t, "r1\nr2\n", r.stdout)
	require.Equal(t, "", mustRun(t, dir, "get", "s", "--consumer", "c"))
}
