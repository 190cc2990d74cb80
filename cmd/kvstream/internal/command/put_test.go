package command

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var putLine = regexp.MustCompile(`^shardId-\d{12} \d{56}$`)

func TestPut(t *testing.T) {
	t.Parallel()
	// The third shard of a 3-shard stream starts at this hash key.
	const shard2Key = "226854911280625642308916404954512140970"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		out   []string
		errs  []string
		lines int    // printed result lines
		get   string // get's raw output afterwards, if not empty
	}{
		{name: "arguments", args: []string{"put", "s", "one", "two", "--key", "k"}, code: ExitOK, lines: 2, get: "one\ntwo\n"},
		{name: "stdin lines", stdin: "a\n\nb\r\nc", args: []string{"put", "s", "--key", "k"}, code: ExitOK, out: []string{"shardId-"}, lines: 3, get: "a\nb\nc\n"},
		{name: "quiet", stdin: strings.Repeat("x\n", 1200), args: []string{"put", "s", "-q"}, code: ExitOK, out: []string{"put 1200 records to s"}},
		{name: "key field", args: []string{"put", "s", `{"city":"NY"}`, `{"city":7}`, "--key-field", "city"}, code: ExitOK, lines: 2},
		{name: "explicit hash key", args: []string{"put", "s", "x", "--explicit-hash-key", shard2Key}, code: ExitOK, out: []string{"shardId-000000000002 "}, lines: 1},
		{name: "key field missing", args: []string{"put", "s", `{"town":"NY"}`, "--key-field", "city"}, code: ExitFailure, errs: []string{`record 1 has no field "city"`}},
		{name: "key field not json", args: []string{"put", "s", "plain", "--key-field", "city"}, code: ExitFailure, errs: []string{"record 1 is not a JSON object"}},
		{name: "key and key field", args: []string{"put", "s", "x", "--key", "a", "--key-field", "b"}, code: ExitUsage, errs: []string{"mutually exclusive"}},
		{name: "bad explicit hash key", args: []string{"put", "s", "x", "--explicit-hash-key", "-1"}, code: ExitUsage, errs: []string{"--explicit-hash-key"}},
		{name: "missing stream", args: []string{"put", "nope", "x"}, code: ExitFailure, errs: []string{`stream "nope" not found in`}},
		{name: "no stream argument", args: []string{"put"}, code: ExitUsage, errs: []string{"missing argument STREAM"}},
		{name: "record too large", args: []string{"put", "s", strings.Repeat("x", 1<<20+1), "--key", "k"}, code: ExitFailure, errs: []string{"validation"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mustRun(t, dir, "streams", "create", "s", "--shards", "3")
			r := runCtx(t.Context(), t, dir, tc.stdin, tc.args...)
			r.check(t, tc.code, tc.out, tc.errs)
			if tc.lines > 0 {
				got := lines(r.stdout)
				require.Len(t, got, tc.lines)
				for _, l := range got {
					require.Regexp(t, putLine, l)
				}
			}
			if tc.get != "" {
				require.Equal(t, tc.get, mustRun(t, dir, "get", "s"))
			}
		})
	}
}

func TestPutNoDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() + "/absent"
	run(t, dir, "put", "s", "x").check(t, ExitFailure, nil, []string{"no data directory at"})
	require.NoDirExists(t, dir, "a failed put creates nothing")
}
