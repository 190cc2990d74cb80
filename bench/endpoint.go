package bench

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/kvstream/kvstream/internal/awsclient"
	"github.com/kvstream/kvstream/internal/procstat"
)

// The workloads RunEndpoint and EndpointBench.Run drive through
// aws-sdk-go-v2.
const (
	// EndpointPutRecords: Workers goroutines each call PutRecords with
	// BatchSize records, back to back.
	EndpointPutRecords = "putrecords"
	// EndpointPutRecord: Workers goroutines each call PutRecord with one
	// record, back to back.
	EndpointPutRecord = "putrecord"
	// EndpointGetRecords: Preload records are put first (not measured),
	// then Workers goroutines (worker w on shard w mod the shard count)
	// each read their shard from TRIM_HORIZON with GetShardIterator and
	// GetRecords pages of Limit records, starting over at the end.
	EndpointGetRecords = "getrecords"
	// EndpointSubscribe: enhanced fan-out latency. A fresh stream consumer
	// subscribes (SubscribeToShard at LATEST) to the stream's first shard;
	// one producer puts one record at a time (PutRecord with that shard's
	// starting hash key) and waits until the subscription delivers it.
	// Latencies are put-to-delivery; Workers and BatchSize do not apply.
	EndpointSubscribe = "subscribe"
)

// EndpointWorkloads lists the endpoint workloads in the order
// `kvstream bench --endpoint` runs them.
var EndpointWorkloads = []string{EndpointPutRecords, EndpointPutRecord, EndpointGetRecords, EndpointSubscribe}

// EndpointConfig configures the endpoint benchmark: the workloads driven
// through aws-sdk-go-v2 (the same client a Go producer uses, with the SDK's
// standard retryer) against any Kinesis endpoint — kvstream serve, another
// emulator, or AWS.
type EndpointConfig struct {
	// Endpoint is the base URL of the Kinesis endpoint, such as
	// http://127.0.0.1:4567 or https://kinesis.us-east-1.amazonaws.com.
	// Required.
	Endpoint string
	// Region signs requests. Default $AWS_REGION, else $AWS_DEFAULT_REGION,
	// else us-east-1.
	Region string
	// Credentials sign requests. Default: on a loopback endpoint, static
	// credentials from $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY, or
	// placeholders when unset; elsewhere the SDK's default chain.
	Credentials aws.CredentialsProvider
	// Stream is an existing stream to use; it is neither created nor
	// deleted, and the puts stay in it. Default empty: a fresh stream
	// named kvstream-bench-<random> with Shards shards is created and
	// deleted at Close.
	Stream string
	// Shards is the shard count of the stream created. Default 4.
	Shards int
	// Workers is the number of concurrent callers. Default 8.
	Workers int
	// BatchSize is the records per PutRecords call. Default 500.
	BatchSize int
	// RecordSize is the data size of each record in bytes (plus a
	// 16-byte partition key). Default 100.
	RecordSize int
	// Duration is how long each measured phase runs. Default 5s.
	Duration time.Duration
	// Limit is the records per GetRecords call. Default 10,000.
	Limit int
	// Preload is how many records the getrecords workload puts before its
	// first phase on each endpoint. Default 200,000.
	Preload int64
	// Rounds is how many phases each side runs. With Ceiling, a round runs
	// the no-op endpoint and the endpoint back to back, alternating which
	// goes first, and its ratio compares the two; each side's figures are
	// its median round by records/s. Default 3.
	Rounds int
	// Ceiling also measures the client against a built-in no-op endpoint
	// (StartNoop) in the same process, in every round, so results carry
	// the client's own limit beside the endpoint's figures, as a ratio.
	Ceiling bool
}

// DefaultEndpointConfig returns the setup: 8 workers, PutRecords
// of 500 × 100 B, a 4-shard stream, 5 s phases, 3 rounds.
func DefaultEndpointConfig() EndpointConfig {
	return EndpointConfig{Shards: 4, Workers: 8, BatchSize: 500, RecordSize: 100, Duration: 5 * time.Second, Limit: 10000, Preload: 200_000, Rounds: 3}
}

func (c *EndpointConfig) withDefaults() {
	d := DefaultEndpointConfig()
	c.Shards = cmp.Or(c.Shards, d.Shards)
	c.Workers = cmp.Or(c.Workers, d.Workers)
	c.BatchSize = cmp.Or(c.BatchSize, d.BatchSize)
	c.RecordSize = cmp.Or(c.RecordSize, d.RecordSize)
	c.Duration = cmp.Or(c.Duration, d.Duration)
	c.Limit = cmp.Or(c.Limit, d.Limit)
	c.Preload = cmp.Or(c.Preload, d.Preload)
	c.Rounds = cmp.Or(c.Rounds, d.Rounds)
}

func (c *EndpointConfig) validate() error {
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("kvstream: bench: Endpoint %q must be an http or https URL", c.Endpoint)
	}
	if c.Shards < 1 || c.Workers < 1 || c.BatchSize < 1 || c.BatchSize > 500 || c.RecordSize < 0 || c.Duration <= 0 ||
		c.Limit < 1 || c.Limit > 10000 || c.Preload < 0 || c.Rounds < 1 {
		return fmt.Errorf("kvstream: bench: invalid EndpointConfig: Shards, Workers and Rounds must be ≥ 1, BatchSize 1 to 500, Limit 1 to 10,000, Duration positive, RecordSize and Preload not negative")
	}
	return nil
}

// EndpointMeasurement is what one side (the endpoint or the no-op
// ceiling) of an endpoint workload did in one phase.
type EndpointMeasurement struct {
	// Records is the number of records put (and acknowledged) or read or,
	// for subscribe, delivered.
	Records int64 `json:"records"`
	// Bytes is the user payload moved: data plus partition key per record.
	Bytes int64 `json:"bytes"`
	// Elapsed is the wall time of the measured phase.
	Elapsed time.Duration `json:"elapsed_ns"`
	// RecordsPerSec and MBPerSec (10^6 bytes per second) are the phase's
	// throughput.
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	// Ops is the number of timed calls (PutRecords, PutRecord or
	// GetRecords calls; subscribe: deliveries) and P50, P99 and P999 their
	// latencies (subscribe: put to delivery).
	Ops  int64         `json:"ops"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	// Failed counts the PutRecords entries the endpoint answered with an
	// error code (typically throughput exceeded); they are not in Records.
	Failed int64 `json:"failed_records"`
	// Throttled counts calls that failed with a throttling error after the
	// SDK's retries (ProvisionedThroughputExceeded, LimitExceeded); the
	// workload goes on. Any other error ends the run.
	Throttled int64 `json:"throttled_calls"`
	// ClientCPUPerRecord is this process' CPU time (user plus system) per
	// record during the phase: the client's cost, plus the no-op
	// endpoint's for the ceiling (it runs in this process).
	ClientCPUPerRecord time.Duration `json:"client_cpu_per_record_ns"`
	// ServerCPUPerRecord is the endpoint process' CPU time per record
	// during the phase, from process_cpu_seconds_total on its /metrics
	// (kvstream serve has it); zero when the endpoint does not export it.
	ServerCPUPerRecord time.Duration `json:"server_cpu_per_record_ns,omitempty"`
}

// EndpointResult is one endpoint workload's outcome.
type EndpointResult struct {
	// Workload is one of EndpointWorkloads.
	Workload string `json:"workload"`
	// Params is a one-line description of the configuration.
	Params string `json:"params"`
	// Endpoint is the URL measured.
	Endpoint string `json:"endpoint"`
	// Rounds is how many phases each side ran.
	Rounds int `json:"rounds"`
	// Target is the endpoint's median round by records/s (the lower middle
	// for an even count).
	Target EndpointMeasurement `json:"target"`
	// Ceiling is the no-op endpoint's median round (EndpointConfig.Ceiling),
	// else nil.
	Ceiling *EndpointMeasurement `json:"ceiling,omitempty"`
	// RoundRatios are the per-round ratios of the endpoint to the no-op
	// endpoint measured in the same round, and Ratio their median;
	// RatioMin and RatioMax are their spread. The ratio is records/s
	// endpoint over no-op; for subscribe, no-op p50 latency over the
	// endpoint's. 1.0 means the endpoint costs the client nothing. Zero
	// without Ceiling.
	RoundRatios []float64 `json:"round_ratios,omitempty"`
	Ratio       float64   `json:"ratio,omitempty"`
	RatioMin    float64   `json:"ratio_min,omitempty"`
	RatioMax    float64   `json:"ratio_max,omitempty"`
	// RoundRates are the endpoint's records/s in each round, so the spread
	// of its rate shows without a ceiling too.
	RoundRates []float64 `json:"round_rates"`
}

// String formats r on one line.
func (r EndpointResult) String() string {
	s := fmt.Sprintf("%s [%s] %s: %.0f rec/s %.1f MB/s p50 %v p99 %v p999 %v",
		r.Workload, r.Params, r.Endpoint, r.Target.RecordsPerSec, r.Target.MBPerSec, r.Target.P50, r.Target.P99, r.Target.P999)
	if r.Ceiling != nil {
		s += fmt.Sprintf(" | no-op %.0f rec/s p50 %v | ratio %.2f (%.2f–%.2f over %d rounds)",
			r.Ceiling.RecordsPerSec, r.Ceiling.P50, r.Ratio, r.RatioMin, r.RatioMax, r.Rounds)
	}
	return s
}

// WriteEndpointTable writes results as an aligned text table, one row per
// side; the ratio and its spread over rounds are on the endpoint's row.
func WriteEndpointTable(w io.Writer, results ...EndpointResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tside\trecords/s\tMB/s\tcalls\tp50\tp99\tp999\tfailed\tthrottled\tclient CPU/rec\tserver CPU/rec\tratio\tround ratios\t")
	row := func(name, side string, m EndpointMeasurement, ratio, spread string) {
		srv := "-"
		if m.ServerCPUPerRecord > 0 {
			srv = m.ServerCPUPerRecord.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n",
			name, side, m.RecordsPerSec, m.MBPerSec, m.Ops, dur(m.P50), dur(m.P99), dur(m.P999), m.Failed, m.Throttled,
			m.ClientCPUPerRecord, srv, ratio, spread)
	}
	for _, r := range results {
		ratio, spread := "", ""
		if r.Ceiling != nil {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
			parts := make([]string, len(r.RoundRatios))
			for i, x := range r.RoundRatios {
				parts[i] = fmt.Sprintf("%.2f", x)
			}
			spread = strings.Join(parts, " ")
		}
		row(r.Workload, "endpoint", r.Target, ratio, spread)
		if r.Ceiling != nil {
			row(r.Workload, "no-op", *r.Ceiling, "", "")
		}
	}
	return tw.Flush()
}

// EndpointBench holds what the endpoint workloads share: the SDK clients,
// the stream on the endpoint (and on the no-op endpoint), and the record
// pool. Open it with OpenEndpoint, run workloads with Run, and Close it.
// It is not safe for concurrent use.
type EndpointBench struct {
	cfg    EndpointConfig
	target *endpointSide
	noop   *Noop
	ceil   *endpointSide // nil without Ceiling
	pool   *pool
	// putInputs are the PutRecords requests the workloads cycle through
	// (built once; the SDK only reads them).
	batches [][]types.PutRecordsRequestEntry
}

// endpointSide is one endpoint with its client and stream.
type endpointSide struct {
	name    string // "endpoint" or "no-op"
	url     string
	client  *kinesis.Client
	stream  string
	arn     string
	created bool // the stream was created here and is deleted at Close
	shards  []types.Shard
	loaded  bool // getrecords' preload is done
	metrics bool // the endpoint exports process_cpu_seconds_total
}

// OpenEndpoint builds the clients, starts the no-op endpoint (with
// cfg.Ceiling), and creates the benchmark stream (unless cfg.Stream names
// one) on each side, waiting until it is ACTIVE.
func OpenEndpoint(ctx context.Context, cfg EndpointConfig) (_ *EndpointBench, err error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &EndpointBench{cfg: cfg, pool: newPool(1<<14, cfg.RecordSize, 3)}
	defer func() {
		if err != nil {
			_ = b.Close()
		}
	}()
	for i := 0; i < len(b.pool.entries); i += cfg.BatchSize {
		if i+cfg.BatchSize > len(b.pool.entries) {
			break
		}
		batch := make([]types.PutRecordsRequestEntry, cfg.BatchSize)
		for j := range batch {
			e := &b.pool.entries[i+j]
			batch[j] = types.PutRecordsRequestEntry{PartitionKey: aws.String(e.PartitionKey), Data: e.Data}
		}
		b.batches = append(b.batches, batch)
	}
	if len(b.batches) == 0 {
		return nil, errors.New("kvstream: bench: BatchSize larger than the record pool")
	}
	name := cfg.Stream
	if name == "" {
		var rnd [4]byte
		_, _ = rand.Read(rnd[:])
		name = "kvstream-bench-" + hex.EncodeToString(rnd[:])
	}
	if b.target, err = b.openSide(ctx, "endpoint", cfg.Endpoint, cfg.Credentials, name, cfg.Stream == ""); err != nil {
		return nil, err
	}
	if cfg.Ceiling {
		if b.noop, err = StartNoop(NoopConfig{Shards: cfg.Shards, RecordSize: cfg.RecordSize}); err != nil {
			return nil, err
		}
		if b.ceil, err = b.openSide(ctx, "no-op", b.noop.URL, nil, name, true); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Close deletes the streams it created and stops the no-op endpoint.
func (b *EndpointBench) Close() error {
	var errs []error
	for _, s := range []*endpointSide{b.target, b.ceil} {
		if s != nil && s.created {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := s.client.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(s.stream), EnforceConsumerDeletion: aws.Bool(true)})
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("delete stream %s at %s: %w", s.stream, s.url, err))
			}
			s.created = false
		}
	}
	if b.noop != nil {
		errs = append(errs, b.noop.Close())
		b.noop = nil
	}
	return errors.Join(errs...)
}

// Ceiling returns the no-op endpoint's URL, or "" without Ceiling.
func (b *EndpointBench) Ceiling() string {
	if b.noop == nil {
		return ""
	}
	return b.noop.URL
}

// Stream returns the name of the stream the workloads use.
func (b *EndpointBench) Stream() string { return b.target.stream }

func (b *EndpointBench) openSide(ctx context.Context, name, endpoint string, creds aws.CredentialsProvider, stream string, create bool) (*endpointSide, error) {
	client, err := newEndpointClient(ctx, endpoint, b.cfg.Region, creds, b.cfg.Workers)
	if err != nil {
		return nil, err
	}
	s := &endpointSide{name: name, url: endpoint, client: client, stream: stream}
	if create {
		if _, err := client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(int32(b.cfg.Shards))}); err != nil {
			return nil, fmt.Errorf("create stream %s at %s: %w", stream, endpoint, err)
		}
		s.created = true
	}
	// Wait until ACTIVE (AWS takes tens of seconds; kvstream serve none).
	deadline := time.Now().Add(5 * time.Minute)
	for {
		out, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err != nil {
			return s, fmt.Errorf("describe stream %s at %s: %w", stream, endpoint, err)
		}
		d := out.StreamDescriptionSummary
		if d != nil && d.StreamStatus == types.StreamStatusActive {
			s.arn = aws.ToString(d.StreamARN)
			break
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("stream %s at %s is not ACTIVE after 5 minutes", stream, endpoint)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return s, err
		}
	}
	var next *string
	for {
		in := &kinesis.ListShardsInput{ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtLatest}}
		if next != nil {
			in.NextToken = next
		} else {
			in.StreamName = aws.String(stream)
		}
		out, err := client.ListShards(ctx, in)
		if err != nil {
			return s, fmt.Errorf("list shards of %s at %s: %w", stream, endpoint, err)
		}
		s.shards = append(s.shards, out.Shards...)
		if next = out.NextToken; next == nil {
			break
		}
	}
	if len(s.shards) == 0 {
		return s, fmt.Errorf("stream %s at %s has no open shards", stream, endpoint)
	}
	if name == "endpoint" {
		_, s.metrics = scrapeCPU(ctx, endpoint)
	}
	return s, nil
}

// newEndpointClient returns a Kinesis client for endpoint whose connection
// pool keeps a connection per worker (the SDK's default keeps 10).
func newEndpointClient(ctx context.Context, endpoint, region string, creds aws.CredentialsProvider, workers int) (*kinesis.Client, error) {
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns = max(tr.MaxIdleConns, 2*workers+4)
		tr.MaxIdleConnsPerHost = 2*workers + 4
	})
	var cfg aws.Config
	if creds != nil {
		cfg = aws.Config{Region: cmp.Or(region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"), awsclient.DefaultRegion), Credentials: creds}
	} else {
		var err error
		if cfg, err = awsclient.Config(ctx, endpoint, region); err != nil {
			return nil, fmt.Errorf("%s: %w", endpoint, err)
		}
	}
	cfg.HTTPClient = hc
	cfg.Retryer = func() aws.Retryer { return retry.NewStandard() }
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(endpoint) }), nil
}

// scrapeCPU reads process_cpu_seconds_total from endpoint's /metrics.
func scrapeCPU(ctx context.Context, endpoint string) (float64, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RunEndpoint opens an EndpointBench, runs workloads (default: all of
// EndpointWorkloads) and closes it.
func RunEndpoint(ctx context.Context, cfg EndpointConfig, workloads ...string) ([]EndpointResult, error) {
	b, err := OpenEndpoint(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if len(workloads) == 0 {
		workloads = EndpointWorkloads
	}
	var out []EndpointResult
	for _, w := range workloads {
		r, err := b.Run(ctx, w, nil)
		if err != nil {
			return out, errors.Join(fmt.Errorf("%s: %w", w, err), b.Close())
		}
		out = append(out, r)
	}
	return out, b.Close()
}

// Run runs one workload for cfg.Rounds rounds. onProgress, if non-nil, is
// called from one goroutine with the milliseconds of measured phases done
// and in all.
func (b *EndpointBench) Run(ctx context.Context, workload string, onProgress func(done, total int64)) (EndpointResult, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := &b.cfg
	var phase func(ctx context.Context, s *endpointSide, prog *progress) (EndpointMeasurement, error)
	var params string
	switch workload {
	case EndpointPutRecords:
		phase = b.putRecordsPhase
		params = fmt.Sprintf("%d × %d B per call, %d workers", cfg.BatchSize, cfg.RecordSize, cfg.Workers)
	case EndpointPutRecord:
		phase = b.putRecordPhase
		params = fmt.Sprintf("1 × %d B per call, %d workers", cfg.RecordSize, cfg.Workers)
	case EndpointGetRecords:
		phase = b.getRecordsPhase
		params = fmt.Sprintf("pages of %d, %d workers, %d B records, after a preload of %d", cfg.Limit, cfg.Workers, cfg.RecordSize, cfg.Preload)
	case EndpointSubscribe:
		phase = b.subscribePhase
		params = fmt.Sprintf("SubscribeToShard put-to-delivery, 1 × %d B, one at a time", cfg.RecordSize)
	default:
		return EndpointResult{}, fmt.Errorf("kvstream: bench: unknown endpoint workload %q (choose from %s)", workload, strings.Join(EndpointWorkloads, ", "))
	}
	params += fmt.Sprintf(", %d shards, %v phases", len(b.target.shards), cfg.Duration)
	sides := []*endpointSide{b.target}
	if b.ceil != nil {
		sides = append(sides, b.ceil)
	}
	prog := newProgress(onProgress, int64(cfg.Rounds*len(sides))*cfg.Duration.Milliseconds())
	defer prog.close()
	res := EndpointResult{Workload: workload, Params: params, Endpoint: cfg.Endpoint, Rounds: cfg.Rounds}
	var ts, cs []EndpointMeasurement
	for round := range cfg.Rounds {
		var t, c EndpointMeasurement
		for i := range sides {
			s := sides[(i+round)%len(sides)] // alternate which side goes first
			m, err := phase(ctx, s, prog)
			if err != nil {
				return res, fmt.Errorf("%s at %s: %w", workload, s.url, err)
			}
			if s == b.target {
				t = m
			} else {
				c = m
			}
		}
		ts = append(ts, t)
		res.RoundRates = append(res.RoundRates, t.RecordsPerSec)
		if b.ceil != nil {
			cs = append(cs, c)
			r := ratio(t.RecordsPerSec, c.RecordsPerSec)
			if workload == EndpointSubscribe {
				r = ratio(float64(c.P50), float64(t.P50))
			}
			res.RoundRatios = append(res.RoundRatios, r)
		}
	}
	res.Target = medianMeasurement(ts)
	if b.ceil != nil {
		c := medianMeasurement(cs)
		res.Ceiling = &c
		res.Ratio = median(res.RoundRatios)
		res.RatioMin, res.RatioMax = slices.Min(res.RoundRatios), slices.Max(res.RoundRatios)
	}
	return res, nil
}

// medianMeasurement returns the median of ms by records/s (the lower
// middle for an even count).
func medianMeasurement(ms []EndpointMeasurement) EndpointMeasurement {
	s := slices.Clone(ms)
	slices.SortFunc(s, func(a, b EndpointMeasurement) int { return cmp.Compare(a.RecordsPerSec, b.RecordsPerSec) })
	return s[(len(s)-1)/2]
}

// phaseRun is the bookkeeping of one measured phase: the deadline, the
// workers' latencies and counters, the progress ticker and the meters.
type phaseRun struct {
	ctx      context.Context
	cancel   context.CancelFunc
	deadline time.Time
	side     *endpointSide
	mu       sync.Mutex
	lat      []time.Duration
	records  atomic.Int64
	bytes    atomic.Int64
	failed   atomic.Int64
	throttle atomic.Int64

	start     time.Time
	cpu       int64
	serverCPU float64
	stopProg  chan struct{}
	progDone  chan struct{}
}

// startPhase starts the clock; the phase ends at cfg.Duration or when ctx
// ends.
// callFailed classifies a call's error: a throttle is counted and retried
// (retry true), the phase's own deadline ends the worker quietly (nil),
// anything else ends the run (err).
func (p *phaseRun) callFailed(err error) (retry bool, _ error) {
	switch {
	case p.done() && errors.Is(err, context.DeadlineExceeded):
		return false, nil
	case isThrottle(err):
		p.throttle.Add(1)
		return true, nil
	}
	return false, err
}

func (b *EndpointBench) startPhase(ctx context.Context, s *endpointSide, prog *progress) *phaseRun {
	p := &phaseRun{side: s, stopProg: make(chan struct{}), progDone: make(chan struct{})}
	if s.metrics {
		p.serverCPU, _ = scrapeCPU(ctx, s.url)
	}
	p.cpu = procstat.CPU()
	p.start = time.Now()
	p.deadline = p.start.Add(b.cfg.Duration)
	p.ctx, p.cancel = context.WithDeadline(ctx, p.deadline.Add(time.Minute)) // a stuck call cannot hang the run
	total := b.cfg.Duration.Milliseconds()
	go func() {
		defer close(p.progDone)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		var reported int64
		for {
			select {
			case <-t.C:
				now := min(time.Since(p.start).Milliseconds(), total)
				prog.add(now - reported)
				reported = now
			case <-p.stopProg:
				prog.add(total - reported)
				return
			}
		}
	}()
	return p
}

// done reports whether the phase is over.
func (p *phaseRun) done() bool { return !time.Now().Before(p.deadline) || p.ctx.Err() != nil }

func (p *phaseRun) addLatencies(ds []time.Duration) {
	p.mu.Lock()
	p.lat = append(p.lat, ds...)
	p.mu.Unlock()
}

// finish stops the phase and returns its measurement.
func (p *phaseRun) finish(outer context.Context) EndpointMeasurement {
	elapsed := time.Since(p.start)
	cpu := procstat.CPU() - p.cpu
	close(p.stopProg)
	<-p.progDone
	p.cancel()
	m := EndpointMeasurement{
		Records: p.records.Load(), Bytes: p.bytes.Load(), Elapsed: elapsed,
		Failed: p.failed.Load(), Throttled: p.throttle.Load(), Ops: int64(len(p.lat)),
	}
	if s := elapsed.Seconds(); s > 0 {
		m.RecordsPerSec = float64(m.Records) / s
		m.MBPerSec = float64(m.Bytes) / s / 1e6
	}
	m.P50, m.P99, m.P999 = quantiles(p.lat)
	if m.Records > 0 {
		m.ClientCPUPerRecord = time.Duration(cpu / m.Records)
		if p.side.metrics {
			if after, ok := scrapeCPU(outer, p.side.url); ok && after > p.serverCPU {
				m.ServerCPUPerRecord = time.Duration((after - p.serverCPU) * 1e9 / float64(m.Records))
			}
		}
	}
	return m
}

// quantiles sorts ds and returns its p50, p99 and p999.
func quantiles(ds []time.Duration) (p50, p99, p999 time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[int(q*float64(len(ds)-1))] }
	return at(0.50), at(0.99), at(0.999)
}

// isThrottle reports whether err is a throttling error the workload rides
// out.
func isThrottle(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException":
			return true
		}
	}
	return false
}

// workersUntil runs fn on cfg.Workers goroutines. The first error ends
// the phase for all of them (the others' resulting cancellations are not
// reported) and is returned.
func (b *EndpointBench) workersUntil(p *phaseRun, fn func(w int) error) error {
	var first error
	var once sync.Once
	_ = workers(b.cfg.Workers, func(w int) error {
		if err := fn(w); err != nil {
			once.Do(func() {
				first = err
				p.cancel()
			})
		}
		return nil
	})
	return first
}

func (b *EndpointBench) putRecordsPhase(ctx context.Context, s *endpointSide, prog *progress) (EndpointMeasurement, error) {
	var next atomic.Uint64
	p := b.startPhase(ctx, s, prog)
	err := b.workersUntil(p, func(w int) error {
		ds := make([]time.Duration, 0, 1024)
		defer func() { p.addLatencies(ds) }()
		for !p.done() {
			batch := b.batches[next.Add(1)%uint64(len(b.batches))]
			t0 := time.Now()
			out, err := s.client.PutRecords(p.ctx, &kinesis.PutRecordsInput{StreamName: aws.String(s.stream), Records: batch})
			if err != nil {
				retry, err := p.callFailed(err)
				if retry {
					continue
				}
				return err
			}
			ds = append(ds, time.Since(t0))
			failed := int64(aws.ToInt32(out.FailedRecordCount))
			ok := int64(len(batch)) - failed
			p.records.Add(ok)
			p.failed.Add(failed)
			p.bytes.Add(ok * int64(b.cfg.RecordSize+16))
		}
		return nil
	})
	m := p.finish(ctx)
	return m, err
}

func (b *EndpointBench) putRecordPhase(ctx context.Context, s *endpointSide, prog *progress) (EndpointMeasurement, error) {
	var next atomic.Uint64
	p := b.startPhase(ctx, s, prog)
	err := b.workersUntil(p, func(w int) error {
		ds := make([]time.Duration, 0, 4096)
		defer func() { p.addLatencies(ds) }()
		for !p.done() {
			e := &b.pool.entries[next.Add(1)%uint64(len(b.pool.entries))]
			t0 := time.Now()
			_, err := s.client.PutRecord(p.ctx, &kinesis.PutRecordInput{StreamName: aws.String(s.stream), PartitionKey: aws.String(e.PartitionKey), Data: e.Data})
			if err != nil {
				retry, err := p.callFailed(err)
				if retry {
					continue
				}
				return err
			}
			ds = append(ds, time.Since(t0))
			p.records.Add(1)
			p.bytes.Add(payload(e))
		}
		return nil
	})
	m := p.finish(ctx)
	return m, err
}

// preload puts cfg.Preload records into s's stream with PutRecords from
// cfg.Workers goroutines, once per side.
func (b *EndpointBench) preload(ctx context.Context, s *endpointSide) error {
	if s.loaded {
		return nil
	}
	var left atomic.Int64
	left.Store(b.cfg.Preload)
	var next atomic.Uint64
	err := workers(b.cfg.Workers, func(int) error {
		for left.Load() > 0 {
			batch := b.batches[next.Add(1)%uint64(len(b.batches))]
			out, err := s.client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(s.stream), Records: batch})
			if err != nil {
				if isThrottle(err) {
					continue
				}
				return err
			}
			left.Add(-int64(len(batch)) + int64(aws.ToInt32(out.FailedRecordCount)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	s.loaded = true
	return nil
}

func (b *EndpointBench) getRecordsPhase(ctx context.Context, s *endpointSide, prog *progress) (EndpointMeasurement, error) {
	if err := b.preload(ctx, s); err != nil {
		return EndpointMeasurement{}, err
	}
	limit := aws.Int32(int32(b.cfg.Limit))
	p := b.startPhase(ctx, s, prog)
	err := b.workersUntil(p, func(w int) error {
		ds := make([]time.Duration, 0, 1024)
		defer func() { p.addLatencies(ds) }()
		shardID := s.shards[w%len(s.shards)].ShardId
		var it *string
		for !p.done() {
			if it == nil {
				out, err := s.client.GetShardIterator(p.ctx, &kinesis.GetShardIteratorInput{
					StreamName: aws.String(s.stream), ShardId: shardID, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
				if err != nil {
					retry, err := p.callFailed(err)
					if retry {
						continue
					}
					return err
				}
				it = out.ShardIterator
			}
			t0 := time.Now()
			out, err := s.client.GetRecords(p.ctx, &kinesis.GetRecordsInput{ShardIterator: it, Limit: limit})
			if err != nil {
				retry, err := p.callFailed(err)
				if retry {
					continue
				}
				return err
			}
			ds = append(ds, time.Since(t0))
			var nb int64
			for i := range out.Records {
				nb += int64(len(out.Records[i].Data) + len(aws.ToString(out.Records[i].PartitionKey)))
			}
			p.records.Add(int64(len(out.Records)))
			p.bytes.Add(nb)
			it = out.NextShardIterator
			if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
				it = nil // at the tip: start over
			}
		}
		return nil
	})
	m := p.finish(ctx)
	return m, err
}

// subscribeSeq numbers the consumers subscribe registers.
var subscribeSeq atomic.Int64

func (b *EndpointBench) subscribePhase(ctx context.Context, s *endpointSide, prog *progress) (m EndpointMeasurement, err error) {
	if s.arn == "" {
		return m, errors.New("the endpoint reported no StreamARN, which SubscribeToShard needs")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("kvstream-bench-%s-%d", hex.EncodeToString(rnd[:]), subscribeSeq.Add(1))
	reg, err := s.client.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(s.arn), ConsumerName: aws.String(name)})
	if err != nil {
		return m, fmt.Errorf("register stream consumer: %w", err)
	}
	consumerARN := reg.Consumer.ConsumerARN
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, derr := s.client.DeregisterStreamConsumer(dctx, &kinesis.DeregisterStreamConsumerInput{ConsumerARN: consumerARN}); derr != nil && err == nil {
			err = fmt.Errorf("deregister stream consumer: %w", derr)
		}
	}()
	for status := reg.Consumer.ConsumerStatus; status != types.ConsumerStatusActive; {
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return m, err
		}
		d, err := s.client.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: consumerARN})
		if err != nil {
			return m, fmt.Errorf("describe stream consumer: %w", err)
		}
		status = d.ConsumerDescription.ConsumerStatus
	}
	sh := s.shards[0]
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := s.client.SubscribeToShard(sctx, &kinesis.SubscribeToShardInput{
		ConsumerARN: consumerARN, ShardId: sh.ShardId,
		StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest},
	})
	if err != nil {
		return m, fmt.Errorf("subscribe to shard: %w", err)
	}
	es := sub.GetStream()
	got := make(chan uint64, 1024)
	go func() {
		defer close(got)
		for ev := range es.Events() {
			e, ok := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
			if !ok {
				continue
			}
			for _, r := range e.Value.Records {
				if len(r.Data) >= 8 {
					got <- binary.BigEndian.Uint64(r.Data)
				}
			}
		}
	}()
	// Close the stream and wait until its reader is done before the next
	// subscription: the SDK's event-stream codec (smithy-go v1.28.9) keeps
	// one payload buffer per client, shared by every stream it decodes,
	// so two live streams on one client race on it.
	defer func() {
		_ = es.Close()
		for range got {
		}
	}()
	hashKey := sh.HashKeyRange.StartingHashKey
	data := make([]byte, max(8, b.cfg.RecordSize))
	copy(data, b.pool.entries[0].Data)
	var lat []time.Duration
	p := b.startPhase(ctx, s, prog)
	defer func() {
		p.addLatencies(lat)
		m = p.finish(ctx)
	}()
	for i := uint64(1); !p.done(); i++ {
		binary.BigEndian.PutUint64(data, i)
		t0 := time.Now()
		if _, err := s.client.PutRecord(p.ctx, &kinesis.PutRecordInput{
			StreamName: aws.String(s.stream), PartitionKey: aws.String("kvstream-bench"), ExplicitHashKey: hashKey, Data: data,
		}); err != nil {
			retry, err := p.callFailed(err)
			if retry {
				continue
			}
			return m, err
		}
		timeout := time.NewTimer(30 * time.Second)
	wait:
		for {
			select {
			case j, ok := <-got:
				if !ok {
					timeout.Stop()
					return m, fmt.Errorf("the subscription ended: %v", es.Err())
				}
				if j == i {
					break wait
				}
			case <-timeout.C:
				return m, fmt.Errorf("record %d was not delivered within 30s", i)
			case <-ctx.Done():
				timeout.Stop()
				return m, ctx.Err()
			}
		}
		timeout.Stop()
		lat = append(lat, time.Since(t0))
		p.records.Add(1)
		p.bytes.Add(int64(len(data) + len("kvstream-bench")))
	}
	return m, nil
}
