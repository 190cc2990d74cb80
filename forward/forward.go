// Package forward drains a local kvstream stream into an upstream Kinesis
// endpoint (AWS Kinesis Data Streams, or a central kvstream serve) with
// PutRecords: the edge half of offline stream buffering.
//
// # Basics
//
// Producers write to the local stream as usual; their writes never wait on
// the network. A Forwarder reads the stream through a durable consumer
// (engine.Consumer), batches records per local shard by count, bytes and
// linger time, sends each batch with PutRecords, and checkpoints the batch
// only after the upstream acknowledged every entry of it:
//
//	f, err := forward.New(db, nil, forward.Config{
//		Stream:       "events",
//		TargetStream: "events",
//		Endpoint:     "http://central:4567", // empty: AWS
//	})
//	go f.Run(ctx)         // until ctx ends
//	st, err := f.Stats()  // lag, drops, errors
//
// # Guarantees
//
// Delivery is at least once. After a crash or a restart, Run resumes after
// the last checkpoint, so the upstream may receive again the batches that
// were in flight: at most one per local shard. A call that failed or timed
// out may have been applied all the same; it is sent again.
//
// Per partition key order: records of one key live in one local shard
// (after a reshard: in the parent, then in a child). Each local shard has
// at most one PutRecords in flight, its entries in local order, and a
// batch is sent only after every entry of the previous one was
// acknowledged; a child shard's first batch waits until its parents' last
// batch is acknowledged. So for every key the first copy of each record
// upstream comes in local order; duplicates from retries and restarts
// come later.
//
// The exception is a partial failure in which the upstream refuses an
// entry and accepts a later entry of the same key in the same call: the
// later record then precedes the earlier one upstream. The Forwarder
// re-sends the refused entries together with every later entry of the
// batch that has the key of a refused one, accepted or not, so the last
// copy of each record comes in local order, and a consumer that applies
// records per key (last write wins) ends in the local state. Kinesis
// throttles per shard, so in practice the entries after a refused one of
// the same key are refused too, and nothing accepted is sent twice.
//
// Records are read by one goroutine and handed to per-shard queues; when
// one shard's queue is full (its upstream shard throttles) the others wait
// too, so a slow upstream shard slows the whole stream.
//
// # Offline operation
//
// An unreachable or throttling upstream is retried with exponential
// backoff and jitter, forever; Run does not return for it (Stats reports
// it). What retrying cannot fix ends Run with ErrRejected instead: a
// request the upstream calls invalid, credentials it refuses (access
// denied, an unknown key, a bad signature), or a target stream that does
// not exist. With Config.CreateTarget, Run creates a missing target
// stream (with as many shards as the local stream has open) and carries
// on. Meanwhile local writers are not slowed: the stream is on disk, and
// the Forwarder holds at most three batches per shard in memory (two
// queued, one being sent). Give the stream a size bound
// (engine.StreamConfig.MaxBytes with DiscardOld) so a long outage cannot
// fill the disk; records the retention deletes before they are forwarded
// are counted in Stats.DroppedRecords.
package forward

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/awsclient"
)

// Kinesis' PutRecords limits, the most a batch may hold.
const (
	MaxBatchRecords = 500
	MaxBatchBytes   = 5 << 20
)

// Defaults of Config fields.
const (
	DefaultLinger         = 100 * time.Millisecond
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultRegion         = "us-east-1"
)

var (
	// ErrInvalidConfig is returned by New for a Config it cannot use; the
	// message names the field.
	ErrInvalidConfig = errors.New("forward: invalid config")
	// ErrRunning is returned by Run while another Run of the same
	// Forwarder is active.
	ErrRunning = errors.New("forward: already running")
	// ErrRejected is returned by Run when the upstream refuses a call for
	// a reason that retrying cannot fix, so the Forwarder stops instead of
	// retrying: the request is invalid (InvalidArgumentException,
	// ValidationException, a serialization error), the credentials are
	// refused (AccessDeniedException, UnrecognizedClientException, a bad
	// signature, a KMS key it may not use), or the target stream does not
	// exist (ErrTargetNotFound, also wrapped). The batch is not
	// checkpointed.
	ErrRejected = errors.New("forward: upstream refused")
	// ErrTargetNotFound is wrapped with ErrRejected when the target stream
	// does not exist upstream and Config.CreateTarget is off (or the
	// target is an ARN, which cannot be created).
	ErrTargetNotFound = errors.New("target stream not found")
)

// Client is the part of *kinesis.Client a Forwarder uses. Tests and
// wrappers (metrics, fault injection) may provide their own.
type Client interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// StreamCreator is what Config.CreateTarget needs of the Client besides
// PutRecords; *kinesis.Client has it.
type StreamCreator interface {
	CreateStream(ctx context.Context, in *kinesis.CreateStreamInput, optFns ...func(*kinesis.Options)) (*kinesis.CreateStreamOutput, error)
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
}

// Config configures a Forwarder. Only Stream is required; every other
// zero field takes the default its comment names.
type Config struct {
	// Stream is the local stream to drain. Required.
	Stream string
	// Consumer names the durable consumer whose checkpoints record what
	// the upstream has acknowledged. Two Forwarders of one stream to two
	// targets need two names, and the default gives them two: "forward-",
	// the upstream's host and port (Endpoint) or "aws-" and its region,
	// "-", and TargetStream, with every character a consumer name may not
	// hold replaced by '-' (for an ARN target, "forward-" and the ARN, which
	// names region and account itself); e.g.
	// "forward-central-4567-events" or "forward-aws-eu-west-1-events".
	// Names over 128 characters are cut and end in a hash of the whole.
	Consumer string
	// Start is where a new consumer starts reading: engine.TrimHorizon()
	// (everything still stored, the default), engine.Latest() or
	// engine.AtTimestamp(t). An existing consumer resumes after its
	// checkpoints and ignores Start.
	Start engine.StartPosition
	// TargetStream is the upstream stream's name, or its ARN (a value
	// starting with "arn:"). Default: Stream.
	TargetStream string
	// Endpoint overrides the upstream endpoint, e.g.
	// "http://127.0.0.1:4567" for a kvstream serve. Default empty: AWS's
	// endpoint for Region. Used only when New builds the client.
	Endpoint string
	// Region is the upstream's region. Default: the AWS configuration
	// chain's ($AWS_REGION, the shared config file), else "us-east-1".
	// Used only when New builds the client.
	Region string
	// MaxBatchRecords caps the entries of one PutRecords. Default and
	// maximum 500, as Kinesis.
	MaxBatchRecords int
	// MaxBatchBytes caps data plus partition keys of one PutRecords.
	// Default and maximum 5 MiB, as Kinesis.
	MaxBatchBytes int
	// Linger is how long a shard's batch may wait for more records before
	// it is sent when it is not full. Default 100ms (the KPL's
	// RecordMaxBufferedTime); a negative value sends at once.
	Linger time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts after a failure (throttling, a connection error, a 5xx, a
	// partial failure). Each wait is drawn between half and all of
	// min(MaxBackoff, MinBackoff·2^attempt). Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one PutRecords call. Default 30s.
	RequestTimeout time.Duration
	// CreateTarget makes Run create TargetStream when the upstream says
	// it does not exist, with as many shards as the local stream has open,
	// wait until it is ACTIVE, and carry on. It needs a Client that is also
	// a StreamCreator (*kinesis.Client is) and a TargetStream that is a
	// name, not an ARN. Default false: a missing target ends Run with
	// ErrRejected and ErrTargetNotFound.
	CreateTarget bool
	// Logger receives a line when the upstream starts failing and when it
	// recovers. Default: discard.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.TargetStream == "" {
		c.TargetStream = c.Stream
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer(c.Endpoint, c.Region, c.TargetStream)
	}
	if c.MaxBatchRecords == 0 {
		c.MaxBatchRecords = MaxBatchRecords
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = MaxBatchBytes
	}
	switch {
	case c.Linger == 0:
		c.Linger = DefaultLinger
	case c.Linger < 0:
		c.Linger = 0
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// DefaultConsumer is the consumer name Config.Consumer defaults to for a
// Forwarder to targetStream (a name or an ARN) at endpoint (empty: AWS in
// region, which may be empty if unknown).
func DefaultConsumer(endpoint, region, targetStream string) string {
	var where string
	switch {
	case strings.HasPrefix(targetStream, "arn:"):
		// An ARN names the partition, region and account already.
	case endpoint != "":
		where = endpoint
		if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
			where = u.Host
		}
	case region != "":
		where = "aws-" + region
	default:
		where = "aws"
	}
	name := "forward-"
	if where != "" {
		name += where + "-"
	}
	name += strings.TrimPrefix(targetStream, "arn:")
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 128 {
		sum := fnv.New64a()
		_, _ = sum.Write([]byte(name))
		b = fmt.Appendf(b[:128-17], "-%016x", sum.Sum64())
	}
	return string(b)
}

// validate reports the first unusable field.
func (c Config) validate() error {
	switch {
	case c.Stream == "":
		return fmt.Errorf("%w: Stream is required", ErrInvalidConfig)
	case c.MaxBatchRecords < 1 || c.MaxBatchRecords > MaxBatchRecords:
		return fmt.Errorf("%w: MaxBatchRecords %d must be 1 to %d", ErrInvalidConfig, c.MaxBatchRecords, MaxBatchRecords)
	case c.MaxBatchBytes < 1 || c.MaxBatchBytes > MaxBatchBytes:
		return fmt.Errorf("%w: MaxBatchBytes %d must be 1 to %d", ErrInvalidConfig, c.MaxBatchBytes, MaxBatchBytes)
	case c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("%w: MinBackoff %v and MaxBackoff %v must satisfy 0 ≤ MinBackoff ≤ MaxBackoff", ErrInvalidConfig, c.MinBackoff, c.MaxBackoff)
	case c.RequestTimeout < 0:
		return fmt.Errorf("%w: RequestTimeout %v must not be negative", ErrInvalidConfig, c.RequestTimeout)
	}
	return nil
}

// NewClient returns a Kinesis client for cfg's Endpoint and Region, with
// AWS configuration by kvstream's one rule (internal/awsclient): on a
// loopback Endpoint (a local kvstream serve) without $AWS_PROFILE, the
// environment's keys or placeholders and no AWS files; elsewhere the
// standard chain (environment, shared files, SSO, container and instance
// roles). The client's own retries are off: the Forwarder retries with its
// backoff.
func NewClient(ctx context.Context, cfg Config) (*kinesis.Client, error) {
	awsCfg, err := awsclient.Config(ctx, cfg.Endpoint, cfg.Region)
	if errors.Is(err, awsclient.ErrEndpoint) {
		return nil, fmt.Errorf("%w: Endpoint %q must be a URL such as http://127.0.0.1:4567", ErrInvalidConfig, cfg.Endpoint)
	}
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	return kinesis.NewFromConfig(awsCfg, func(o *kinesis.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Retryer = aws.NopRetryer{}
	}), nil
}

// Forwarder drains one local stream into one upstream stream. Run does
// the work; Stats may be called at any time from any goroutine.
type Forwarder struct {
	db     *engine.DB
	client Client
	cfg    Config

	running atomic.Bool

	// changed is kicked (buffered 1, never blocking) after each event that
	// moves what Stats reports on its own: a batch acknowledged, a call
	// failed or answered, Run started or returned. Tests wait on it
	// (one waiter) instead of polling Stats against the wall clock.
	changed chan struct{}

	// createMu serializes creating the target stream (CreateTarget)
	// between the shards' senders.
	createMu sync.Mutex

	mu struct {
		sync.Mutex
		// pos holds each shard's forwarding position; it outlives Runs so
		// Stats works between them.
		pos map[engine.ShardID]*position
		// queues are the current Run's per-shard buffers (nil between Runs).
		queues map[engine.ShardID]*queue
		// lastErr is the most recent upstream failure, at lastErrAt;
		// lastOK is the most recent acknowledged batch.
		lastErr      error
		lastErrAt    time.Time
		lastOK       time.Time
		failing      bool      // the most recent call failed as a whole
		failingSince time.Time // the first failure of the current run of them
	}

	forwardedRecords atomic.Int64
	forwardedBytes   atomic.Int64
	requests         atomic.Int64
	failedRequests   atomic.Int64
	throttled        atomic.Int64
	retried          atomic.Int64
}

// position is how far one local shard has been forwarded. Counters are
// the engine's per-shard record counters (SequenceNumber.Counter).
type position struct {
	mu sync.Mutex
	// acked is the last counter the upstream acknowledged and the
	// consumer checkpointed (0: none).
	acked uint64
	// read is the last counter the current Run handed to the shard's
	// sender (equal to acked between Runs).
	read uint64
	// dropped counts records the Forwarder found deleted by retention
	// before it read them (gaps in the counters), up to and including
	// counter droppedThrough; a gap seen again by a later Run is not
	// counted twice.
	dropped        int64
	droppedThrough uint64
}

// advance records that the reader handed counter c to the sender and
// counts the records between the previous one and c that retention
// deleted.
func (p *position) advance(c uint64) {
	p.mu.Lock()
	if from := max(p.read, p.droppedThrough); c > from+1 {
		p.dropped += int64(c - from - 1)
		p.droppedThrough = c - 1
	}
	p.read = c
	p.mu.Unlock()
}

// New returns a Forwarder of cfg.Stream in db to cfg.TargetStream through
// client. A nil client means NewClient(cfg). New creates the durable
// consumer cfg.Consumer at cfg.Start if it does not exist; it does not
// contact the upstream. The Forwarder does not own db: close db only after
// Run has returned.
//
// A client passed in should not retry on its own (aws.NopRetryer, or
// RetryMaxAttempts 1): the Forwarder retries, and retries the SDK adds
// underneath only delay the backoff and Stats.
func New(db *engine.DB, client Client, cfg Config) (*Forwarder, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil DB", ErrInvalidConfig)
	}
	consumer := cfg.Consumer
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if client == nil {
		c, err := NewClient(context.Background(), cfg)
		if err != nil {
			return nil, err
		}
		client = c
	}
	if consumer == "" {
		// The client knows the region (and endpoint) the configuration
		// chain chose, which the default name must include.
		endpoint, region := cfg.Endpoint, cfg.Region
		if kc, ok := client.(*kinesis.Client); ok {
			o := kc.Options()
			region = o.Region
			if endpoint == "" && o.BaseEndpoint != nil {
				endpoint = *o.BaseEndpoint
			}
		}
		cfg.Consumer = DefaultConsumer(endpoint, region, cfg.TargetStream)
	}
	c, err := db.Consumer(cfg.Stream, cfg.Consumer, &engine.ConsumerConfig{Start: cfg.Start})
	if err != nil {
		return nil, fmt.Errorf("forward: consumer %s of stream %s: %w", cfg.Consumer, cfg.Stream, err)
	}
	f := &Forwarder{db: db, client: client, cfg: cfg, changed: make(chan struct{}, 1)}
	f.mu.pos = make(map[engine.ShardID]*position)
	f.loadPositions(c)
	return f, nil
}

// Config returns the Forwarder's configuration with defaults applied.
func (f *Forwarder) Config() Config { return f.cfg }

// loadPositions sets every shard's position to c's checkpoints, dropping
// whatever a previous Run read but did not get acknowledged.
func (f *Forwarder) loadPositions(c *engine.Consumer) {
	cps := c.Checkpoints()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.mu.pos {
		p.mu.Lock()
		p.read = p.acked
		p.mu.Unlock()
	}
	for id, sn := range cps {
		p := f.positionLocked(id)
		p.mu.Lock()
		p.acked = max(p.acked, sn.Counter)
		p.read = p.acked
		p.mu.Unlock()
	}
}

func (f *Forwarder) positionLocked(id engine.ShardID) *position {
	p := f.mu.pos[id]
	if p == nil {
		p = &position{}
		f.mu.pos[id] = p
	}
	return p
}

func (f *Forwarder) position(id engine.ShardID) *position {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.positionLocked(id)
}

// skipTrimmed checkpoints every shard whose checkpoint is below its trim
// horizon at the record before the horizon, counting the records in
// between as dropped (those this process has not counted yet). Nothing is
// being read when it runs, so no record in memory can be skipped. It makes
// drops durable: a later process does not count them again, and the
// consumer's Lag is exact.
func (f *Forwarder) skipTrimmed(c *engine.Consumer) error {
	descs, err := f.db.ListShards(f.cfg.Stream)
	if err != nil {
		return fmt.Errorf("forward: listing shards of %s: %w", f.cfg.Stream, err)
	}
	for _, d := range descs {
		first, _, err := f.bounds(d.ShardID)
		if err != nil {
			return fmt.Errorf("forward: trim horizon of %s: %w", d.ShardID, err)
		}
		p := f.position(d.ShardID)
		p.mu.Lock()
		acked, counted := p.acked, max(p.acked, p.droppedThrough)
		p.mu.Unlock()
		if first <= acked+1 {
			continue
		}
		sn := d.StartingSequenceNumber
		sn.Counter = first - 1
		if err := c.CheckpointAt(d.ShardID, sn); err != nil {
			return fmt.Errorf("forward: checkpoint %s of consumer %s past trimmed records: %w", d.ShardID, f.cfg.Consumer, err)
		}
		p.mu.Lock()
		if first-1 > counted {
			p.dropped += int64(first - 1 - counted)
		}
		p.droppedThrough = max(p.droppedThrough, first-1)
		p.acked, p.read = first-1, first-1
		p.mu.Unlock()
	}
	return nil
}

// Run forwards records until ctx ends, then returns nil; it returns
// earlier only for an error it cannot retry: the local stream was deleted
// or the DB closed or failed, a checkpoint could not be written, or the
// upstream refused a call for good (ErrRejected: an invalid request,
// refused credentials, a missing target stream that CreateTarget does
// not create). Upstream outages and throttling are retried, never
// returned.
//
// Records read but not yet acknowledged when Run returns are sent again by
// the next Run. Run may be called again after it returns, but not
// concurrently (ErrRunning).
func (f *Forwarder) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	kick(f.changed)
	defer func() {
		f.running.Store(false)
		kick(f.changed)
	}()
	// A fresh consumer each Run: a consumer remembers how far it read in
	// this process, and the next Run must start at the checkpoints.
	c, err := f.db.Consumer(f.cfg.Stream, f.cfg.Consumer, &engine.ConsumerConfig{Start: f.cfg.Start})
	if err != nil {
		return fmt.Errorf("forward: consumer %s of stream %s: %w", f.cfg.Consumer, f.cfg.Stream, err)
	}
	f.loadPositions(c)
	if err := f.skipTrimmed(c); err != nil {
		return err
	}
	r := &run{f: f, c: c, senders: make(map[engine.ShardID]*sender)}
	err = r.run(ctx)
	f.mu.Lock()
	f.mu.queues = nil
	f.mu.Unlock()
	f.loadPositions(c)
	return err
}
