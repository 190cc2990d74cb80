package command

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStreams runs the streams subcommands one after the other on one
// data directory, as a user would.
func TestStreams(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() + "/data" // absent until created
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // exact stdout, if not empty
		out  []string
		errs []string
	}{
		{name: "list without a directory", args: []string{"streams", "list"}, want: ""},
		{name: "describe without a directory", args: []string{"streams", "describe", "s"}, code: ExitFailure, errs: []string{"no data directory at"}},
		{name: "create", args: []string{"streams", "create", "orders", "--shards", "2", "--retention", "48h"}, want: "created stream orders with 2 shards in " + dir + "\n"},
		{name: "create md5", args: []string{"streams", "create", "kin", "--partitioner", "md5"}, out: []string{"created stream kin with 1 shard in"}},
		{name: "create exists", args: []string{"streams", "create", "orders"}, code: ExitFailure, errs: []string{`stream "orders" already exists in ` + dir}},
		{name: "create bad name", args: []string{"streams", "create", "a/b"}, code: ExitFailure, errs: []string{"StreamName"}},
		{name: "create bad shards", args: []string{"streams", "create", "x", "--shards", "0"}, code: ExitUsage, errs: []string{"--shards 0"}},
		{name: "create bad partitioner", args: []string{"streams", "create", "x", "--partitioner", "sha1"}, code: ExitUsage, errs: []string{"xxhash or md5"}},
		{name: "create retention too short", args: []string{"streams", "create", "x", "--retention", "1s"}, code: ExitFailure, errs: []string{"etention"}},
		{name: "list", args: []string{"streams", "list"}, want: "kin\norders\n"},
		{name: "describe", args: []string{"streams", "describe", "orders"},
			out: []string{"Stream:       orders", "ACTIVE", "Retention:    48h", "Partitioner:  xxhash", "2 open, 2 in all", "Records:      0 (0 B)",
				"shardId-000000000000  open   -        0        0 - 170141183460469231731687303715884105727"}},
		{name: "describe md5", args: []string{"streams", "describe", "kin"}, out: []string{"Partitioner:  md5", "Max bytes:    unbounded"}},
		{name: "create bounded", args: []string{"streams", "create", "edge", "--max-bytes", "64MiB", "--discard", "new"}, out: []string{"created stream edge with 1 shard in"}},
		{name: "describe bounded", args: []string{"streams", "describe", "edge"}, out: []string{"Max bytes:    64.0 MiB (67108864 B), discard new"}},
		{name: "create bad max-bytes", args: []string{"streams", "create", "x", "--max-bytes", "lots"}, code: ExitUsage, errs: []string{`--max-bytes: "lots" is not a size`}},
		{name: "create bad discard", args: []string{"streams", "create", "x", "--max-bytes", "1MB", "--discard", "middle"}, code: ExitUsage, errs: []string{`--discard "middle" must be old`}},
		{name: "max-bytes keeps discard", args: []string{"streams", "max-bytes", "edge", "2GB"}, want: "bounded edge to 1.9 GiB (2000000000 B), discard new\n"},
		{name: "max-bytes discard old", args: []string{"streams", "max-bytes", "edge", "1k", "--discard", "old"}, want: "bounded edge to 1.0 KiB (1024 B), discard old\n"},
		{name: "describe rebounded", args: []string{"streams", "describe", "edge"}, out: []string{"Max bytes:    1.0 KiB (1024 B), discard old"}},
		{name: "max-bytes bad size", args: []string{"streams", "max-bytes", "edge", "5XB"}, code: ExitUsage, errs: []string{`SIZE: "5XB" is not a size`}},
		{name: "max-bytes missing stream", args: []string{"streams", "max-bytes", "nope", "1MB"}, code: ExitFailure, errs: []string{`stream "nope" not found`}},
		{name: "max-bytes remove", args: []string{"streams", "max-bytes", "edge", "0"}, want: "removed the size bound of edge\n"},
		{name: "describe unbounded", args: []string{"streams", "describe", "edge"}, out: []string{"Max bytes:    unbounded"}},
		{name: "delete bounded", args: []string{"streams", "delete", "edge"}, want: "deleted stream edge\n"},
		{name: "describe missing", args: []string{"streams", "describe", "nope"}, code: ExitFailure, errs: []string{`stream "nope" not found in ` + dir}},
		{name: "split", args: []string{"streams", "split", "orders", "shardId-000000000001"}, want: "split shardId-000000000001 of orders at hash key 255211775190703847597530955573826158592\n"},
		{name: "split at", args: []string{"streams", "split", "orders", "0", "--at", "1000"}, want: "split shardId-000000000000 of orders at hash key 1000\n"},
		{name: "split closed", args: []string{"streams", "split", "orders", "0"}, code: ExitFailure, errs: []string{"closed"}},
		{name: "split bad hash key", args: []string{"streams", "split", "orders", "2", "--at", "x"}, code: ExitFailure, errs: []string{"NewStartingHashKey"}},
		{name: "split missing shard", args: []string{"streams", "split", "orders", "42"}, code: ExitFailure, errs: []string{"has no shard shardId-000000000042"}},
		{name: "merge not adjacent", args: []string{"streams", "merge", "orders", "2", "4"}, code: ExitFailure, errs: []string{"not an adjacent pair"}},
		{name: "merge", args: []string{"streams", "merge", "orders", "4", "5"}, want: "merged shardId-000000000004 and shardId-000000000005 of orders\n"},
		{name: "merge bad shard id", args: []string{"streams", "merge", "orders", "x", "5"}, code: ExitUsage, errs: []string{`"x" is not a shard id`}},
		{name: "scale", args: []string{"streams", "scale", "orders", "4"}, want: "scaled orders to 4 open shards\n"},
		{name: "scale too far", args: []string{"streams", "scale", "orders", "100"}, code: ExitFailure, errs: []string{"at most double"}},
		{name: "scale not a number", args: []string{"streams", "scale", "orders", "many"}, code: ExitUsage, errs: []string{`SHARD_COUNT "many"`}},
		{name: "retention", args: []string{"streams", "retention", "orders", "90m"}, want: "set retention of orders to 1h30m0s\n"},
		{name: "retention bad duration", args: []string{"streams", "retention", "orders", "soon"}, code: ExitUsage, errs: []string{`DURATION "soon"`}},
		{name: "retention missing stream", args: []string{"streams", "retention", "nope", "2h"}, code: ExitFailure, errs: []string{`stream "nope" not found`}},
		{name: "missing argument", args: []string{"streams", "merge", "orders", "1"}, code: ExitUsage, errs: []string{"missing argument ADJACENT_SHARD"}},
		{name: "delete", args: []string{"streams", "delete", "kin"}, want: "deleted stream kin\n"},
		{name: "delete missing", args: []string{"streams", "delete", "kin"}, code: ExitFailure, errs: []string{`stream "kin" not found`}},
		{name: "list after delete", args: []string{"streams", "list"}, want: "orders\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, dir, tc.args...)
			r.check(t, tc.code, tc.out, tc.errs)
			if tc.want != "" {
				require.Equal(t, tc.want, r.stdout)
			}
		})
	}

	// The final shape, as JSON: times in RFC 3339, the retention in
	// seconds and as a duration.
	out := mustRun(t, dir, "streams", "describe", "orders", "--json")
	var info streamInfoJSON
	require.NoError(t, json.Unmarshal([]byte(out), &info))
	require.Equal(t, 4, info.OpenShards)
	open := 0
	for _, s := range info.Shards {
		if s.Open() {
			open++
		}
	}
	require.Equal(t, 4, open)
	require.EqualValues(t, 5400, info.RetentionSeconds)
	require.Equal(t, "1h30m0s", info.Retention)
	created, err := time.Parse(time.RFC3339Nano, info.Created)
	require.NoError(t, err, "created %q", info.Created)
	require.WithinDuration(t, time.Now(), created, time.Hour)
	require.True(t, strings.HasSuffix(info.Created, "Z"), "created %q is UTC", info.Created)
	require.NotNil(t, info.MaxBytes)
	require.Zero(t, *info.MaxBytes)
	require.Contains(t, out, `"maxBytes": 0`)
}
