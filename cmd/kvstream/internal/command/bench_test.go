package command

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/kvstream/kvstream/bench"
	"github.com/stretchr/testify/require"
)

func TestBench(t *testing.T) {
	t.Parallel()
	small := []string{"--records", "1000", "--rate", "20000", "--shards", "2", "--profile", "small", "--no-sync", "--goroutines", "4"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string
		errs []string
	}{
		{"putrecords table", append([]string{"bench", "putrecords"}, small...), ExitOK,
			[]string{"records/s", "PutRecords  engine", "PutRecords  pebble", "ratio", "1000 records"}, nil},
		{"all workloads", append([]string{"bench"}, small...), ExitOK,
			[]string{"PutRecords", "PutRecord ", "GetRecords", "Iterator", "Tail"}, nil},
		{"rounds by default", append([]string{"bench", "putrecords"}, small...), ExitOK,
			[]string{"PutRecords: ratio", "is the median of 3 rounds (", "spread "}, nil},
		{"tail", []string{"bench", "tail", "--records", "200", "--rate", "5000", "--profile", "small"}, ExitOK, []string{"Tail  engine", "Tail  pebble"}, nil},
		{"bad rate", []string{"bench", "tail", "--rate", "0"}, ExitUsage, nil, []string{"--rate positive"}},
		{"unknown workload", []string{"bench", "writes"}, ExitUsage, nil, []string{`unknown workload "writes"`}},
		{"bad profile", []string{"bench", "--profile", "huge"}, ExitUsage, nil, []string{`--profile "huge"`}},
		{"bad shards", []string{"bench", "--shards", "0"}, ExitUsage, nil, []string{"must be at least 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run(t, t.TempDir(), tc.args...).check(t, tc.code, tc.out, tc.errs)
		})
	}
}

func TestBenchJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() + "/bench"
	out := mustRun(t, "", "bench", "getrecords", "iterator", "--records", "2000", "--profile", "small", "--json", "--dir", dir)
	var res []bench.Result
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Len(t, res, 2)
	require.Equal(t, "GetRecords", res[0].Workload)
	require.Equal(t, "Iterator", res[1].Workload)
	for _, r := range res {
		require.EqualValues(t, 2000, r.Engine.Records)
		require.EqualValues(t, 2000, r.Ceiling.Records)
		require.Positive(t, r.Ratio)
	}
	_, err := os.Stat(dir)
	require.NoError(t, err, "--dir is kept")
}
