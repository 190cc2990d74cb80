package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/smithy-go"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/forward"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type forwardOptions struct {
	root          *rootOptions
	stream        string
	to            string
	toStream      string
	region        string
	consumer      string
	from          string
	batchRecords  int
	batchBytes    int
	linger        time.Duration
	minBackoff    time.Duration
	maxBackoff    time.Duration
	statsInterval time.Duration
	noCreate      bool
}

func (o *forwardOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.stream, "stream", "", "local stream to forward (required)")
	fs.StringVar(&o.to, "to", "", "upstream Kinesis endpoint, e.g. http://central:4567 for a kvstream serve (default: AWS's endpoint for --region)")
	fs.StringVar(&o.toStream, "to-stream", "", "upstream stream name or ARN (default: --stream)")
	fs.StringVar(&o.region, "region", "", "upstream region (default: $AWS_REGION or the AWS config file, else us-east-1)")
	fs.StringVar(&o.consumer, "consumer", "", "durable consumer holding the forwarding position (default: forward-<host>-<port>-<to-stream> for --to, forward-aws-<region>-<to-stream> for AWS)")
	fs.BoolVar(&o.noCreate, "no-create", false, "fail if the upstream stream does not exist, instead of creating it with the local stream's shard count")
	fs.StringVar(&o.from, "from", "trim-horizon", "where a new consumer starts: trim-horizon, latest or time:RFC3339 (an existing one resumes)")
	fs.IntVar(&o.batchRecords, "batch-records", forward.MaxBatchRecords, "records per PutRecords call, at most 500")
	fs.IntVar(&o.batchBytes, "batch-bytes", forward.MaxBatchBytes, "bytes (data and keys) per PutRecords call, at most 5 MiB")
	fs.DurationVar(&o.linger, "linger", forward.DefaultLinger, "how long a batch that is not full waits for more records")
	fs.DurationVar(&o.minBackoff, "min-backoff", forward.DefaultMinBackoff, "first wait after a failed or throttled call")
	fs.DurationVar(&o.maxBackoff, "max-backoff", forward.DefaultMaxBackoff, "longest wait between retries")
	fs.DurationVar(&o.statsInterval, "stats-interval", 10*time.Second, "print progress on stderr this often (0: never)")
}

func newForwardCommand(root *rootOptions) *cobra.Command {
	o := &forwardOptions{root: root}
	cmd := &cobra.Command{
		Use:   "forward --stream STREAM --to URL [--to-stream STREAM]",
		Short: "Ship a local stream to an upstream Kinesis endpoint, surviving outages",
		Long: `Forward reads --stream from the data directory through a durable consumer and
writes its records to an upstream Kinesis stream (AWS, or a central kvstream
serve) with PutRecords, until Ctrl-C. Producers keep writing locally whether the
upstream is reachable or not; forward retries with backoff and resumes where it
left off after a restart (at least once: a batch in flight at a crash is sent
again). Records of one partition key arrive in order.

If the upstream stream does not exist, forward creates it with as many shards as
the local stream has open (--no-create: fail instead). Outages, timeouts and
throttling are retried with backoff for as long as it takes; what retrying
cannot fix (a missing stream with --no-create, refused credentials, a request
the upstream calls invalid) stops forward with exit code 1.

The position is kept by a durable consumer of the local stream, named after the
upstream and its stream unless --consumer says otherwise, so forwarding one
stream to two upstreams keeps two positions.

Credentials come from the standard AWS configuration chain; a loopback --to
needs none. Give the local stream a size bound (streams create --max-bytes,
drop-oldest) so a long outage cannot fill the disk; records dropped before they
were forwarded are reported.`,
		Example: `  kvstream forward --data /var/lib/kvstream --stream events --to http://central:4567
  kvstream forward --stream events --to-stream arn:aws:kinesis:eu-west-1:123456789012:stream/events --region eu-west-1`,
		Args: exactArgs(),
		RunE: o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *forwardOptions) run(cmd *cobra.Command, _ []string) (err error) {
	if o.stream == "" {
		return usagef("--stream is required")
	}
	pos, seqShard, err := parseFrom(o.from)
	if err != nil {
		return err
	}
	if seqShard != "" {
		return usagef("--from must be trim-horizon, latest or time:RFC3339, not %s (a sequence number names one shard)", o.from)
	}
	if o.batchRecords < 1 || o.batchRecords > forward.MaxBatchRecords {
		return usagef("--batch-records %d must be 1 to %d", o.batchRecords, forward.MaxBatchRecords)
	}
	if o.batchBytes < 1 || o.batchBytes > forward.MaxBatchBytes {
		return usagef("--batch-bytes %d must be 1 to %d", o.batchBytes, forward.MaxBatchBytes)
	}
	if o.minBackoff <= 0 || o.maxBackoff < o.minBackoff {
		return usagef("--min-backoff %v and --max-backoff %v must satisfy 0 < min ≤ max", o.minBackoff, o.maxBackoff)
	}
	if o.statsInterval < 0 {
		return usagef("--stats-interval %v must not be negative", o.statsInterval)
	}
	linger := o.linger
	if linger == 0 {
		linger = -1 // forward.Config: negative sends at once
	}
	cfg := forward.Config{
		Stream:          o.stream,
		Consumer:        o.consumer,
		Start:           pos,
		TargetStream:    o.toStream,
		Endpoint:        o.to,
		Region:          o.region,
		MaxBatchRecords: o.batchRecords,
		MaxBatchBytes:   o.batchBytes,
		Linger:          linger,
		MinBackoff:      o.minBackoff,
		MaxBackoff:      o.maxBackoff,
		CreateTarget:    !o.noCreate,
		Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // the terminal shows when; keep lines short
			}
			return a
		}})),
	}
	ctx := cmd.Context()
	client, err := forward.NewClient(ctx, cfg)
	if errors.Is(err, forward.ErrInvalidConfig) {
		return usagef("--to %q must be a URL such as http://127.0.0.1:4567", o.to)
	}
	if err != nil {
		return err
	}
	db, err := openDB(o.root.dataDir, readWrite, nil)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	f, err := forward.New(db.DB, client, cfg)
	if errors.Is(err, engine.ErrStreamNotFound) {
		return &cliError{err: err, msg: fmt.Sprintf("stream %q not found in %s ('kvstream streams list' shows the streams)", o.stream, o.root.dataDir)}
	}
	if err != nil {
		return err
	}
	cfg = f.Config()
	where := cfg.Endpoint
	if where == "" {
		where = "AWS"
	}
	stderr := cmd.ErrOrStderr()
	printf(stderr, "forwarding %s in %s to %s at %s (consumer %s); Ctrl-C stops\n", cfg.Stream, o.root.dataDir, cfg.TargetStream, where, cfg.Consumer)

	start := time.Now()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	var tick <-chan time.Time
	if o.statsInterval > 0 {
		t := time.NewTicker(o.statsInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-done:
			st, serr := f.Stats()
			printForwardStats(cmd.OutOrStdout(), st, serr, time.Since(start), true)
			if errors.Is(err, forward.ErrTargetNotFound) {
				return &cliError{err: err, msg: fmt.Sprintf("upstream stream %s does not exist at %s (%s); without --no-create, forward creates it", cfg.TargetStream, where, apiMessage(err))}
			}
			if errors.Is(err, forward.ErrRejected) {
				return &cliError{err: err, msg: fmt.Sprintf("stopped: %s refused, and retrying cannot fix it: %s", where, apiMessage(err))}
			}
			return err
		case <-tick:
			st, serr := f.Stats()
			printForwardStats(stderr, st, serr, time.Since(start), false)
		}
	}
}

// apiMessage is the upstream's error code and message in err, or err
// itself when it holds no API error.
func apiMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if m := ae.ErrorMessage(); m != "" {
			return ae.ErrorCode() + ": " + m
		}
		return ae.ErrorCode()
	}
	return oneLine(err)
}

// printForwardStats prints one progress line, or the final summary.
func printForwardStats(w io.Writer, st forward.Stats, err error, elapsed time.Duration, final bool) {
	head := "progress"
	if final {
		head = "forwarded"
	}
	line := fmt.Sprintf("%s: %d record%s (%s) in %s", head, st.ForwardedRecords, plural(int(st.ForwardedRecords)), formatBytes(st.ForwardedBytes), elapsed.Round(time.Second))
	switch {
	case err != nil:
		line += fmt.Sprintf("; lag unknown: %v", err)
	case st.LagRecords == 0:
		line += "; caught up"
	default:
		size := formatBytes(st.LagBytes)
		if st.LagBytesEstimated {
			size = "about " + size + ", estimated"
		}
		line += fmt.Sprintf("; lag %d record%s (%s", st.LagRecords, plural(int(st.LagRecords)), size)
		if st.LagAge > 0 {
			line += fmt.Sprintf(", oldest %s", st.LagAge.Round(time.Millisecond))
		}
		line += ")"
	}
	if st.DroppedRecords > 0 {
		line += fmt.Sprintf("; %d record%s dropped by retention before they were forwarded", st.DroppedRecords, plural(int(st.DroppedRecords)))
	}
	if st.Failing {
		line += fmt.Sprintf("; upstream failing since %s: %v", st.FailingSince.Format(time.TimeOnly), oneLine(st.LastError))
	} else if st.Throttled > 0 || st.FailedRequests > 0 {
		line += fmt.Sprintf("; %d failed calls, %d throttled", st.FailedRequests, st.Throttled)
	}
	printf(w, "%s\n", line)
}
