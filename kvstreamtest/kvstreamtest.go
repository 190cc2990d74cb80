// Package kvstreamtest gives Go tests a real Kinesis in one line: the
// kvstream engine behind the kvstream server, reached through the real
// aws-sdk-go-v2 Kinesis client, inside the test process, with no port, no
// container and nothing to clean up.
//
//	func TestOrders(t *testing.T) {
//		kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory())
//		// kc is a *kinesis.Client: pass it to the code under test.
//	}
//
// NewClient's client calls the server's http.Handler in-process (no
// socket); NewServer serves the same on a loopback listener for code that
// builds its own client or runs a subprocess (boto3, the AWS CLI); Open
// returns the embedded engine for code that uses kvstream as a library.
// Each call gets a fresh engine of its own, in t.TempDir() or, with
// WithInMemory, in memory, with fsync off (a test's data need not outlive
// it). Everything is closed by t.Cleanup, and no goroutine of this
// package outlives the test. Invalid options fail the test (Fatalf) with
// the setting and its limit.
//
// Requests are served by the same code as `kvstream serve`, so answers,
// errors and their types (*types.ResourceNotFoundException,
// *types.InvalidArgumentException, ...) are exactly those a client gets
// over the network. A fake clock (WithClock, NewClock) moves the
// engine's and the server's time, so retention, iterator expiry,
// CREATING delays and SubscribeToShard heartbeats and lifetimes are
// tested without waiting.
package kvstreamtest

import (
	"cmp"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/server"
)

// Credentials NewClient signs with unless WithServerConfig turns on
// SigV4 verification with keys of its own.
const (
	AccessKey = "AKIDKVSTREAMTEST"
	SecretKey = "kvstreamtest-secret"
)

// Option configures NewClient, NewServer and Open. Options that concern
// the server or the client are ignored by Open.
type Option func(*config)

type config struct {
	inMemory   bool
	clock      *Clock
	engineFns  []func(*engine.Options)
	serverFns  []func(*server.Config)
	clientFns  []func(*kinesis.Options)
	limits     bool
	createWait time.Duration
	region     string
	account    string
}

// WithInMemory keeps the engine's data in memory (engine.Options.FS =
// vfs.NewMem()) instead of t.TempDir(): the same semantics, faster, and
// nothing touches the disk.
func WithInMemory() Option { return func(c *config) { c.inMemory = true } }

// WithClock makes clk (NewClock) the clock of the engine
// (engine.Options.Clock: record arrival times, retention, iterator
// expiry, throttle buckets, CREATING delays) and of the server
// (server.Config.Clock: page-token expiry, and SubscribeToShard
// heartbeats and lifetimes), so a test moves time by hand. A running
// subscription acts on a move at once: Advance past a heartbeat's due
// time and the heartbeat event arrives; past the 5-minute lifetime and
// the subscription ends. One Clock may drive several clients and servers.
// Default: the wall clock. SigV4 signatures are checked against the wall
// clock, as the SDK signs with it. (Another clock function can be set
// with WithEngineOptions and WithServerConfig; subscriptions then see its
// moves only when they next wake on real time.)
func WithClock(clk *Clock) Option { return func(c *config) { c.clock = clk } }

// WithKinesisLimits turns on Kinesis' per-shard throughput limits (1000
// records/s and 1 MiB/s written, 2 MiB/s and 5 calls/s read) and its
// enhanced fan-out limits (server.Config.KinesisLimits), so throttling
// (*types.ProvisionedThroughputExceededException) can be tested. With a
// fake clock the token buckets refill only as the clock moves. Default:
// no throttling.
func WithKinesisLimits() Option { return func(c *config) { c.limits = true } }

// WithCreateDelay keeps streams CREATING, and stream consumers CREATING
// or DELETING, for d after the call that creates or deregisters them, as
// AWS does (server.Config.CreateDelay), so waiters and polling loops are
// exercised. Default 0: ACTIVE at once.
func WithCreateDelay(d time.Duration) Option { return func(c *config) { c.createWait = d } }

// WithRegion sets the region in stream and consumer ARNs and the
// client's region. Default "us-east-1".
func WithRegion(region string) Option { return func(c *config) { c.region = region } }

// WithAccount sets the 12-digit account id in ARNs and messages.
// Default "000000000000".
func WithAccount(id string) Option { return func(c *config) { c.account = id } }

// WithEngineOptions lets fn change the engine's options (record and
// request limits, IteratorTTL, MinRetention, MaxShards, ...) after this
// package has set FS, Clock and NoSync.
func WithEngineOptions(fn func(*engine.Options)) Option {
	return func(c *config) { c.engineFns = append(c.engineFns, fn) }
}

// WithServerConfig lets fn change the server's configuration
// (SubscriptionLifetime, SubscriptionHeartbeat, MaxBodyBytes, SigV4 keys,
// ...) after the other options have been applied. If it sets AccessKey
// and SecretKey, NewClient signs with them.
func WithServerConfig(fn func(*server.Config)) Option {
	return func(c *config) { c.serverFns = append(c.serverFns, fn) }
}

// WithClientOptions applies fns to NewClient's kinesis.Options, e.g.
// func(o *kinesis.Options) { o.Retryer = aws.NopRetryer{} } to see the
// first answer of a throttled call instead of the SDK's retries.
func WithClientOptions(fns ...func(*kinesis.Options)) Option {
	return func(c *config) { c.clientFns = append(c.clientFns, fns...) }
}

func newConfig(opts []Option) *config {
	c := &config{}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Open returns a fresh engine, in tb.TempDir() or (WithInMemory) in
// memory, closed by tb.Cleanup. Puts are not fsync'd (engine.Options.NoSync;
// a test's data does not outlive it); WithEngineOptions can turn fsync on.
func Open(tb testing.TB, opts ...Option) *engine.DB {
	tb.Helper()
	return open(tb, newConfig(opts))
}

func open(tb testing.TB, c *config) *engine.DB {
	tb.Helper()
	o := &engine.Options{NoSync: true}
	if c.clock != nil {
		o.Clock = c.clock.Now
	}
	dir := "kvstream"
	if c.inMemory {
		o.FS = vfs.NewMem()
	} else {
		dir = tb.TempDir()
	}
	for _, fn := range c.engineFns {
		fn(o)
	}
	db, err := engine.Open(dir, o)
	if err != nil {
		tb.Fatalf("kvstreamtest: open the engine: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("kvstreamtest: close the engine: %v", err)
		}
	})
	return db
}

// newServer opens an engine and a server over it. Its cleanup ends the
// server's subscriptions; the caller registers the cleanups that must run
// between that and the engine's close.
func newServer(tb testing.TB, c *config) (*server.Server, server.Config) {
	tb.Helper()
	db := open(tb, c)
	cfg := server.Config{
		Region:        c.region,
		Account:       c.account,
		CreateDelay:   c.createWait,
		KinesisLimits: c.limits,
		Logger:        slog.New(slog.NewTextHandler(tbWriter{tb}, nil)),
	}
	if c.clock != nil {
		cfg.Clock = c.clock.Now
	}
	for _, fn := range c.serverFns {
		fn(&cfg)
	}
	srv, err := server.New(db, cfg)
	if err != nil {
		tb.Fatalf("kvstreamtest: %v", err)
	}
	if c.clock != nil {
		tb.Cleanup(c.clock.notify(srv.ClockMoved))
	}
	return srv, cfg
}

// NewClient returns an aws-sdk-go-v2 Kinesis client served by a fresh
// kvstream server and engine in the test process: its HTTP transport
// calls the server's handler directly, streaming response bodies through
// a pipe, so every operation works, SubscribeToShard's event stream
// included. The client signs with AccessKey and SecretKey, uses the
// SDK's default retryer, and may be used from many goroutines.
//
// When the test ends, tb.Cleanup ends running subscriptions, aborts calls
// still in flight (their callers get an error) and closes the engine; a
// call after that fails.
//
// aws-sdk-go-v2 (kinesis v1.56.13) shares one event-stream decoder among
// a client's SubscribeToShard calls, so concurrent subscriptions on one
// client race in the SDK, as they would against Kinesis. Give each its
// own with the per-call option
//
//	func(o *kinesis.Options) { o.Protocol = awsjson.New11(schemas.Kinesis_20131202) }
//
// (packages github.com/aws/smithy-go/transport/http/protocol/awsjson and
// github.com/aws/aws-sdk-go-v2/service/kinesis/schemas).
func NewClient(tb testing.TB, opts ...Option) *kinesis.Client {
	tb.Helper()
	c := newConfig(opts)
	srv, cfg := newServer(tb, c)
	rt := newTransport(srv, tb)
	tb.Cleanup(rt.close)
	tb.Cleanup(srv.Close) // runs first: subscriptions end cleanly
	ak, sk := AccessKey, SecretKey
	if cfg.AccessKey != "" {
		ak, sk = cfg.AccessKey, cfg.SecretKey
	}
	return kinesis.New(kinesis.Options{
		BaseEndpoint: aws.String("http://kvstream.test"),
		Region:       cmp.Or(cfg.Region, server.DefaultRegion),
		Credentials:  credentials.NewStaticCredentialsProvider(ak, sk, ""),
		HTTPClient:   &http.Client{Transport: rt},
	}, c.clientFns...)
}

// NewServer serves a fresh kvstream server and engine on a loopback
// listener (httptest, HTTP/1.1 and h2c) and returns its endpoint
// ("http://127.0.0.1:port"), for code under test that builds its own
// client or runs a subprocess (boto3, the AWS CLI). Requests need no
// signature unless WithServerConfig sets SigV4 keys. tb.Cleanup ends
// running subscriptions, closes the listener and its connections, waits
// for the requests in flight, and closes the engine. Client options
// (WithClientOptions) are ignored.
//
// An aws-sdk-go-v2 client over plain HTTP meets an SDK race (smithy-go
// v1.28.9): the SDK closes a request body as soon as the response head
// arrives, which can make net/http drop the connection, and the SDK then
// retries a call that was served, so a PutRecords can land twice (about
// one call in a thousand on a loaded machine). NewClient does not have
// it; a client of NewServer avoids it with an http.RoundTripper that reads
// request bodies into memory before sending them.
func NewServer(tb testing.TB, opts ...Option) (endpoint string) {
	tb.Helper()
	srv, _ := newServer(tb, newConfig(opts))
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.Protocols = server.Protocols()
	hs.Start()
	tb.Cleanup(hs.Close)
	tb.Cleanup(srv.Close) // runs first: subscriptions end, so Close need not wait for them
	return hs.URL
}

// Clock is a fake clock for WithClock: it stands still until Advance or
// Set moves it, and each move wakes the subscriptions of the servers it
// drives. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	servers map[int]func() // ClockMoved of each server it drives, by notify's key
	nextKey int
}

// NewClock returns a Clock at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// notify calls moved after each move until the returned stop is called.
func (c *Clock) notify(moved func()) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.servers == nil {
		c.servers = map[int]func(){}
	}
	k := c.nextKey
	c.nextKey++
	c.servers[k] = moved
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.servers, k)
	}
}

// move sets the clock to to(now) and then tells the servers; it returns
// the new time.
func (c *Clock) move(to func(now time.Time) time.Time) time.Time {
	c.mu.Lock()
	c.now = to(c.now)
	t := c.now
	fns := make([]func(), 0, len(c.servers))
	for _, fn := range c.servers {
		fns = append(fns, fn)
	}
	c.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	return t
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	return c.move(func(now time.Time) time.Time { return now.Add(d) })
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.move(func(time.Time) time.Time { return t }) }

// tbWriter sends the server's logs to the test's log.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(p))
	return len(p), nil
}
