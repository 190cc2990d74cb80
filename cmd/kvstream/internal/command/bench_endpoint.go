package command

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"

	"github.com/kvstream/kvstream/bench"
	"github.com/spf13/cobra"
)

// anyChanged reports whether any of the named flags was set.
func anyChanged(cmd *cobra.Command, names ...string) bool {
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// runEndpoint is `kvstream bench --endpoint URL`: the bench package's
// endpoint workloads through aws-sdk-go-v2.
func (o *benchOptions) runEndpoint(cmd *cobra.Command, args []string) (err error) {
	if o.endpoint == "" {
		return usagef("--region, --stream, --workers, --duration and --ceiling need --endpoint")
	}
	for _, f := range []string{"profile", "no-sync", "dir", "producers", "goroutines", "rate"} {
		if cmd.Flags().Changed(f) {
			return usagef("--%s is for the engine benchmark and does not apply with --endpoint", f)
		}
	}
	workloads := args
	if len(workloads) == 0 {
		workloads = bench.EndpointWorkloads
	}
	for _, w := range workloads {
		if !slices.Contains(bench.EndpointWorkloads, w) {
			return usagef("unknown workload %q with --endpoint (choose from %s)", w, strings.Join(bench.EndpointWorkloads, ", "))
		}
	}
	if o.records < 0 || o.shards < 1 || o.recordSize < 0 || o.batchSize < 1 || o.batchSize > 500 || o.workers < 1 ||
		o.limit < 1 || o.limit > 10000 || o.rounds < 1 || o.duration <= 0 {
		return usagef("--shards, --workers and --rounds must be at least 1, --batch-size 1 to 500, --limit 1 to 10000, --duration positive, --records and --record-size not negative")
	}
	cfg := bench.EndpointConfig{
		Endpoint: o.endpoint, Region: o.region, Stream: o.stream,
		Shards: o.shards, Workers: o.workers, BatchSize: o.batchSize, RecordSize: o.recordSize,
		Duration: o.duration, Limit: o.limit, Preload: o.records, Rounds: o.rounds, Ceiling: o.ceiling,
	}
	ctx := cmd.Context()
	b, err := bench.OpenEndpoint(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { err = cmpErr(err, b.Close()) }()
	var results []bench.EndpointResult
	for _, w := range workloads {
		bar := o.newBar(cmd.ErrOrStderr(), w, barTime)
		res, err := b.Run(ctx, w, bar.update)
		bar.finish()
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("interrupted during %s", w)
			}
			if len(results) > 0 {
				_ = o.printEndpoint(cmd.OutOrStdout(), b, results)
			}
			return err
		}
		results = append(results, res)
	}
	return o.printEndpoint(cmd.OutOrStdout(), b, results)
}

func (o *benchOptions) printEndpoint(w io.Writer, b *bench.EndpointBench, results []bench.EndpointResult) error {
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	if err := bench.WriteEndpointTable(w, results...); err != nil {
		return err
	}
	for _, r := range results {
		printf(w, "%s: %s\n", r.Workload, r.Params)
	}
	printf(w, "endpoint %s, stream %s, aws-sdk-go-v2, %d rounds, median round shown (%d CPU).\n", o.endpoint, b.Stream(), o.rounds, runtime.NumCPU())
	if o.ceiling {
		printf(w, "ratio = endpoint records/s ÷ no-op endpoint records/s (subscribe: no-op p50 ÷ endpoint p50), per round, median; the no-op endpoint runs in this process, so its rows are the client's own limit.\n")
	}
	return nil
}

// printRoundSpread prints, for results of more than one round, the median
// ratio and the range of the per-round ratios.
func printRoundSpread(w io.Writer, results []bench.Result) {
	for _, r := range results {
		if len(r.RoundRatios) < 2 {
			continue
		}
		rs := make([]string, len(r.RoundRatios))
		for i, x := range r.RoundRatios {
			rs[i] = fmt.Sprintf("%.2f", x)
		}
		printf(w, "%s: ratio %.2f is the median of %d rounds (%s), spread %.2f–%.2f.\n",
			r.Workload, r.Ratio, len(r.RoundRatios), strings.Join(rs, " "), r.RatioMin, r.RatioMax)
	}
}
