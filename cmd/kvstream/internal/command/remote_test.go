package command

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/server"
	"github.com/stretchr/testify/require"
)

// newTestServer serves the Kinesis API over a fresh DB with an httptest
// server on 127.0.0.1; it stops when the test ends.
func newTestServer(t *testing.T) string {
	t.Helper()
	return newTestServerConfig(t, server.Config{})
}

func newTestServerConfig(t *testing.T, cfg server.Config) string {
	t.Helper()
	db, err := engine.Open(t.TempDir(), &engine.Options{NoSync: true})
	require.NoError(t, err)
	srv, err := server.New(db, cfg)
	require.NoError(t, err)
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.Protocols = server.Protocols()
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		require.NoError(t, db.Close())
	})
	return hs.URL
}

// TestEndpoint runs put, get and streams against a Kinesis endpoint (the
// server package behind httptest), one step after the other.
func TestEndpoint(t *testing.T) {
	t.Parallel()
	url := newTestServer(t)
	// No --data directory is touched: point it at one that must not appear.
	dir := t.TempDir() + "/unused"
	var seq string
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		code  int
		out   []string
		errs  []string
		after func(r result)
	}{
		{name: "list empty", args: []string{"streams", "list"}},
		{name: "create", args: []string{"streams", "create", "web", "--shards", "2"}, out: []string{"created stream web with 2 shards in " + url}},
		{name: "create twice", args: []string{"streams", "create", "web"}, code: ExitFailure, errs: []string{"ResourceInUseException", "already exists"}},
		{name: "partitioner is local", args: []string{"streams", "create", "x", "--partitioner", "md5"}, code: ExitUsage, errs: []string{"local data directories only"}},
		{name: "list", args: []string{"streams", "list"}, out: []string{"web\n"}},
		{name: "put", args: []string{"put", "web", "hello", "world", "--key", "k"}, after: func(r result) {
			ls := lines(r.stdout)
			require.Len(t, ls, 2)
			require.Regexp(t, putLine, ls[0])
			seq = strings.Fields(ls[0])[1]
		}},
		{name: "put stdin with key field", args: []string{"put", "web", "--key-field", "k", "-q"}, stdin: `{"k":"a"}` + "\n" + `{"k":"b"}` + "\n", out: []string{"put 2 records to web"}},
		{name: "get", args: []string{"get", "web"}, out: []string{"hello\nworld\n", `{"k":"a"}`, `{"k":"b"}`}},
		{name: "get at", args: []string{"get", "web", "--from", "placeholder"}, out: []string{"hello\nworld\n"}},
		{name: "get after json", args: []string{"get", "web", "--from", "placeholder", "--format", "json"}, out: []string{`"data":"world"`}},
		{name: "follow with limit", args: []string{"get", "web", "--follow", "--limit", "4"}},
		{name: "describe", args: []string{"streams", "describe", "web"}, out: []string{"Stream:", "web", "ACTIVE", "2 open, 2 in all", "shardId-000000000001"}},
		{name: "split", args: []string{"streams", "split", "web", "0"}, out: []string{"split shardId-000000000000 of web at hash key 85070591730234615865843651857942052864"}},
		{name: "describe json", args: []string{"streams", "describe", "web", "--json"}, out: []string{`"shardId": "shardId-000000000003"`, `"parentShardId": "shardId-000000000000"`}},
		{name: "merge", args: []string{"streams", "merge", "web", "2", "3"}, out: []string{"merged shardId-000000000002 and shardId-000000000003"}},
		{name: "scale", args: []string{"streams", "scale", "web", "4"}, out: []string{"scaled web to 4 open shards"}},
		{name: "retention", args: []string{"streams", "retention", "web", "48h"}, out: []string{"set retention of web to 48h"}},
		{name: "retention not whole hours", args: []string{"streams", "retention", "web", "90m"}, code: ExitUsage, errs: []string{"whole hours"}},
		{name: "retention too short", args: []string{"streams", "retention", "web", "1h"}, code: ExitFailure, errs: []string{"InvalidArgumentException"}},
		{name: "missing stream", args: []string{"get", "nope"}, code: ExitFailure, errs: []string{`stream "nope" not found at ` + url}},
		{name: "missing shard", args: []string{"get", "web", "--shard", "99"}, code: ExitFailure, errs: []string{"ResourceNotFoundException"}},
		{name: "delete", args: []string{"streams", "delete", "web"}, out: []string{"deleted stream web"}},
		{name: "bad endpoint", args: []string{"streams", "list", "--endpoint", "127.0.0.1:4567"}, code: ExitUsage, errs: []string{"must be a URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := slices.Clone(tc.args)
			for i, a := range args {
				if a == "placeholder" {
					args[i] = "at:" + seq
					if strings.Contains(tc.name, "after") {
						args[i] = "after:" + seq
					}
				}
			}
			if tc.name != "bad endpoint" {
				args = append(args, "--endpoint", url)
			}
			r := runCtx(t.Context(), t, dir, tc.stdin, args...)
			r.check(t, tc.code, tc.out, tc.errs)
			if tc.after != nil {
				tc.after(r)
			}
		})
	}
	require.NoDirExists(t, dir)
}

func TestEndpointUnreachable(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(nil)
	url := hs.URL
	hs.Close() // nothing listens there now
	run(t, "", "streams", "list", "--endpoint", url).check(t, ExitFailure, nil, []string{"cannot reach " + url, "connection refused"})
}

// TestEndpointThrottled runs against a server with Kinesis' per-shard
// limits: put retries the entries PutRecords rejects, and get backs off
// when reads are throttled, so both still deliver everything.
func TestEndpointThrottled(t *testing.T) {
	t.Parallel()
	url := newTestServerConfig(t, server.Config{KinesisLimits: true})
	mustRun(t, "", "streams", "create", "s", "--endpoint", url)
	in := strings.Repeat("0123456789\n", 1500) // over 1000 records/s on one shard
	r := runCtx(t.Context(), t, "", in, "put", "s", "--key", "k", "-q", "--endpoint", url)
	r.check(t, ExitOK, []string{"put 1500 records to s"}, nil)
	for range 7 { // over 5 reads/s
		out := mustRun(t, "", "get", "s", "--limit", "1", "--endpoint", url)
		require.Equal(t, "0123456789\n", out)
	}
}
