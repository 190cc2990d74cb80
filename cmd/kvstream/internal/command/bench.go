package command

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kvstream/kvstream/bench"
	"github.com/kvstream/kvstream/engine"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// benchWorkloads are the workloads bench runs, in order.
var benchWorkloads = []string{"putrecords", "putrecord", "getrecords", "iterator", "tail"}

type benchOptions struct {
	root       *rootOptions
	records    int64
	shards     int
	recordSize int
	batchSize  int
	producers  int
	goroutines int
	limit      int
	rate       float64
	profile    string
	noSync     bool
	rounds     int
	dir        string
	json       bool
	progress   bool

	// --endpoint mode (bench_endpoint.go).
	endpoint string
	region   string
	stream   string
	workers  int
	duration time.Duration
	ceiling  bool
}

func (o *benchOptions) AddFlags(fs *pflag.FlagSet) {
	fs.Int64Var(&o.records, "records", 0, "records per workload (0: each workload's default: 2,000,000 putrecords, 300,000 putrecord, 1,000,000 reads, 5,000 tail)")
	fs.IntVar(&o.shards, "shards", 4, "shards of the benchmark stream")
	fs.IntVar(&o.recordSize, "record-size", 100, "data bytes per record (plus a 16-byte partition key)")
	fs.IntVar(&o.batchSize, "batch-size", 500, "records per PutRecords call (putrecords)")
	fs.IntVar(&o.producers, "producers", 1, "concurrent PutRecords callers (putrecords)")
	fs.IntVar(&o.goroutines, "goroutines", 64, "concurrent PutRecord callers (putrecord)")
	fs.IntVar(&o.limit, "limit", 10000, "records per GetRecords page (getrecords)")
	fs.Float64Var(&o.rate, "rate", 2000, "records put per second while a consumer tails them (tail)")
	fs.StringVar(&o.profile, "profile", "throughput", "engine memory profile of both sides: small or throughput")
	fs.BoolVar(&o.noSync, "no-sync", false, "acknowledge writes without fsync (both sides)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds per side, interleaved (each round runs both sides, alternating which goes first); the median round and the spread of the round ratios are reported")
	fs.StringVar(&o.dir, "dir", "", "directory for the benchmark data, on the disk to measure (default: a temporary directory, removed afterwards)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON")
	fs.BoolVar(&o.progress, "progress", true, "show a progress bar on stderr when it is a terminal")
	fs.StringVar(&o.endpoint, "endpoint", "", "benchmark a Kinesis endpoint (kvstream serve, another emulator, AWS) through aws-sdk-go-v2 instead of the engine; workloads: "+strings.Join(bench.EndpointWorkloads, ", "))
	fs.StringVar(&o.region, "region", "", "--endpoint: signing region (default $AWS_REGION, else us-east-1)")
	fs.StringVar(&o.stream, "stream", "", "--endpoint: use this existing stream (kept) instead of creating and deleting kvstream-bench-<random>")
	fs.IntVar(&o.workers, "workers", 8, "--endpoint: concurrent callers")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "--endpoint: length of each measured phase")
	fs.BoolVar(&o.ceiling, "ceiling", false, "--endpoint: also run the same client against a built-in no-op endpoint in every round and report the ratio")
}

func newBenchCommand(root *rootOptions) *cobra.Command {
	o := &benchOptions{root: root}
	cmd := &cobra.Command{
		Use:   "bench [WORKLOAD...]",
		Short: "Benchmark the engine against raw Pebble measured in the same run",
		Long: `Bench runs the workloads of the bench package and, in the same run and process,
the raw-Pebble ceiling for each one (the same keys, values, batches, sync mode
and Pebble options, without the engine), and prints records/s, MB/s, p50/p99
latency, peak RSS and bytes on disk per record for both, with their ratio.

Workloads: putrecords (batched ingest), putrecord (one record per call from many
goroutines), getrecords (a full read in GetRecords pages), iterator (a full read
with DB.Iterate), tail (put-to-delivery latency of a consumer tailing with
Iterator.Wait, at --rate). Default: all of them. It does not touch --data.

With --endpoint URL it drives the same kinds of workload through aws-sdk-go-v2
against any Kinesis endpoint instead: putrecords, putrecord, getrecords and
subscribe (enhanced fan-out put-to-delivery latency), each for --duration with
--workers callers; --ceiling runs the same client against a built-in no-op
endpoint (in this process, storing nothing) in every round, so the report shows
the client's own limit beside the endpoint's, as a ratio.`,
		Example: `  kvstream bench putrecords --records 500000
  kvstream bench --profile small --json > results.json
  kvstream bench --endpoint http://127.0.0.1:4567 --ceiling putrecords`,
		RunE: o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *benchOptions) run(cmd *cobra.Command, args []string) (err error) {
	if o.endpoint != "" || anyChanged(cmd, "region", "stream", "workers", "duration", "ceiling") {
		return o.runEndpoint(cmd, args)
	}
	workloads := args
	if len(workloads) == 0 {
		workloads = benchWorkloads
	}
	for _, w := range workloads {
		if !slices.Contains(benchWorkloads, w) {
			return usagef("unknown workload %q (choose from %s)", w, strings.Join(benchWorkloads, ", "))
		}
	}
	profile, err := bench.ParseProfile(o.profile)
	if err != nil {
		return usagef("--profile %q must be small or throughput", o.profile)
	}
	if o.records < 0 || o.shards < 1 || o.recordSize < 0 || o.batchSize < 1 || o.producers < 1 || o.goroutines < 1 || o.limit < 1 || o.rounds < 1 || o.rate <= 0 {
		return usagef("--shards, --batch-size, --producers, --goroutines, --limit and --rounds must be at least 1, --rate positive, --records and --record-size not negative")
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kvstream-bench-"); err != nil {
			return err
		}
		defer func() { err = cmpErr(err, os.RemoveAll(dir)) }()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	ctx := cmd.Context()
	var results []bench.Result
	for _, w := range workloads {
		bar := o.newBar(cmd.ErrOrStderr(), w, barCount)
		res, err := o.runWorkload(ctx, w, dir, profile, bar.update)
		bar.finish()
		if err != nil {
			if len(results) > 0 {
				_ = o.print(cmd.OutOrStdout(), results)
			}
			if ctx.Err() != nil {
				// Ctrl-C: the workloads that finished are printed above.
				printf(cmd.ErrOrStderr(), "interrupted during %s\n", w)
				return nil
			}
			return fmt.Errorf("%s: %w", w, err)
		}
		results = append(results, res)
	}
	return o.print(cmd.OutOrStdout(), results)
}

func (o *benchOptions) runWorkload(ctx context.Context, w, dir string, p engine.Profile, progress func(done, total int64)) (bench.Result, error) {
	switch w {
	case "putrecords":
		c := bench.DefaultAppendConfig()
		c.Profile, c.NoSync, c.Shards, c.RecordSize, c.BatchSize, c.Producers, c.Rounds = p, o.noSync, o.shards, o.recordSize, o.batchSize, o.producers, o.rounds
		c.Records = cmpOr64(o.records, c.Records)
		c.Progress, c.Context = progress, ctx
		return bench.RunAppend(dir, c)
	case "putrecord":
		c := bench.DefaultPutConfig()
		c.Profile, c.NoSync, c.Shards, c.RecordSize, c.Goroutines, c.Rounds = p, o.noSync, o.shards, o.recordSize, o.goroutines, o.rounds
		c.Records = cmpOr64(o.records, c.Records)
		c.Progress, c.Context = progress, ctx
		return bench.RunPut(dir, c)
	case "tail":
		c := bench.DefaultTailConfig()
		c.Profile, c.NoSync, c.RecordSize, c.Rate, c.Rounds = p, o.noSync, o.recordSize, o.rate, o.rounds
		c.Records = cmpOr64(o.records, c.Records)
		c.Progress, c.Context = progress, ctx
		return bench.RunTail(dir, c)
	}
	c := bench.DefaultReadConfig()
	c.Profile, c.Shards, c.RecordSize, c.Limit, c.Rounds = p, o.shards, o.recordSize, o.limit, o.rounds
	if w == "iterator" {
		c.Via = bench.ViaIterator
	}
	c.Records = cmpOr64(o.records, c.Records)
	c.Progress, c.Context = progress, ctx
	return bench.RunRead(dir, c)
}

func cmpOr64(v, def int64) int64 {
	if v != 0 {
		return v
	}
	return def
}

func (o *benchOptions) print(w io.Writer, results []bench.Result) error {
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	if err := bench.WriteTable(w, results...); err != nil {
		return err
	}
	for _, r := range results {
		printf(w, "%s: %s\n", r.Workload, r.Params)
	}
	for _, n := range o.rateNotes(results) {
		printf(w, "%s\n", n)
	}
	printf(w, "ratio = engine records/s ÷ raw-Pebble records/s (tail: raw-Pebble p50 ÷ engine p50), both measured in this run (%d CPU).\n", runtime.NumCPU())
	printRoundSpread(w, results)
	return nil
}

// rateNotes says when the tail workload did not reach the --rate it was
// asked for: its latencies were then measured at a lower rate, with the
// put loop (one fsync'd PutRecord at a time) as the bottleneck.
func (o *benchOptions) rateNotes(results []bench.Result) []string {
	var notes []string
	for _, r := range results {
		if r.Workload != "Tail" {
			continue
		}
		for _, side := range []struct {
			name string
			m    bench.Measurement
		}{{"engine", r.Engine}, {"raw Pebble", r.Ceiling}} {
			if side.m.Records > 0 && side.m.RecordsPerSec < 0.95*o.rate {
				notes = append(notes, fmt.Sprintf("note: Tail (%s) reached %.0f rec/s, not the requested --rate %g: one put at a time could not keep pace, so its latencies are at %.0f rec/s",
					side.name, side.m.RecordsPerSec, o.rate, side.m.RecordsPerSec))
			}
		}
	}
	return notes
}

// barUnit is what a progress bar counts.
type barUnit uint8

const (
	barCount barUnit = iota // records done of the total (engine workloads)
	barTime                 // milliseconds measured of the phase's duration (--endpoint)
)

// benchBar is a progress bar on a terminal and nothing elsewhere.
type benchBar struct {
	w    io.Writer
	desc string
	unit barUnit
	on   bool
	bar  *progressbar.ProgressBar
}

func (o *benchOptions) newBar(w io.Writer, desc string, unit barUnit) *benchBar {
	return &benchBar{w: w, desc: desc, unit: unit, on: o.progress && isTerminal(w)}
}

// update is the workloads' progress callback (called from one goroutine).
func (b *benchBar) update(done, total int64) {
	if !b.on {
		return
	}
	if b.bar == nil {
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(fmt.Sprintf("%-10s", b.desc)),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100 * time.Millisecond),
			progressbar.OptionClearOnFinish(),
		}
		if b.unit == barTime {
			opts = append(opts, progressbar.OptionSetElapsedTime(true), progressbar.OptionSetPredictTime(true))
		} else {
			opts = append(opts, progressbar.OptionShowCount())
		}
		b.bar = progressbar.NewOptions64(total, opts...)
	}
	_ = b.bar.Set64(done)
}

func (b *benchBar) finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
