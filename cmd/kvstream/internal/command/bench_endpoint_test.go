package command

import (
	"encoding/json"
	"testing"

	"github.com/kvstream/kvstream/bench"
	"github.com/stretchr/testify/require"
)

func TestBenchEndpoint(t *testing.T) {
	t.Parallel()
	url := newTestServer(t)
	quick := []string{"--endpoint", url, "--duration", "100ms", "--workers", "2", "--batch-size", "20", "--records", "400", "--limit", "100", "--shards", "2", "--rounds", "2"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string
		errs []string
	}{
		{"putrecords with ceiling", append([]string{"bench", "putrecords", "--ceiling"}, quick...), ExitOK,
			[]string{"putrecords  endpoint", "putrecords     no-op", "round ratios", "20 × 100 B per call, 2 workers, 2 shards", "endpoint " + url, "2 rounds", "ratio = endpoint records/s"}, nil},
		{"all workloads", append([]string{"bench"}, quick...), ExitOK,
			[]string{"putrecords  endpoint", "putrecord  endpoint", "getrecords  endpoint", "subscribe  endpoint"}, nil},
		{"engine workload", []string{"bench", "tail", "--endpoint", url}, ExitUsage, nil, []string{`unknown workload "tail" with --endpoint`}},
		{"engine flag", []string{"bench", "--endpoint", url, "--no-sync"}, ExitUsage, nil, []string{"--no-sync is for the engine benchmark"}},
		{"endpoint flag alone", []string{"bench", "--ceiling"}, ExitUsage, nil, []string{"need --endpoint"}},
		{"bad endpoint", []string{"bench", "--endpoint", "127.0.0.1:4567"}, ExitFailure, nil, []string{"must be an http or https URL"}},
		{"bad batch", []string{"bench", "--endpoint", url, "--batch-size", "501"}, ExitUsage, nil, []string{"--batch-size 1 to 500"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run(t, "", tc.args...).check(t, tc.code, tc.out, tc.errs)
		})
	}
}

func TestBenchEndpointJSON(t *testing.T) {
	t.Parallel()
	url := newTestServer(t)
	out := mustRun(t, "", "bench", "putrecords", "getrecords", "--endpoint", url, "--ceiling", "--json",
		"--duration", "100ms", "--workers", "2", "--batch-size", "20", "--records", "400", "--limit", "100", "--rounds", "3")
	var res []bench.EndpointResult
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Len(t, res, 2)
	for i, w := range []string{"putrecords", "getrecords"} {
		r := res[i]
		require.Equal(t, w, r.Workload)
		require.Equal(t, url, r.Endpoint)
		require.Equal(t, 3, r.Rounds)
		require.Len(t, r.RoundRatios, 3)
		require.Positive(t, r.Target.Records)
		require.NotNil(t, r.Ceiling)
		require.Positive(t, r.Ceiling.Records)
		require.Positive(t, r.Ratio)
	}
}
