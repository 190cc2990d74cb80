// Package server serves the Amazon Kinesis Data Streams wire API (JSON 1.1
// and CBOR 1.1, over HTTP/1.1 and h2c) on top of an *engine.DB, so programs
// written for Kinesis (boto3, the AWS CLI, the AWS SDKs, KCL) run against
// kvstream by changing only their endpoint.
//
// New returns an http.Handler over an open DB; Serve opens a data
// directory, listens and serves until its context is cancelled.
//
// Enhanced fan-out is served too: registered stream consumers
// (RegisterStreamConsumer and friends, kept by the server as stream
// attributes with its other Kinesis-only settings, kinesisattrs.go) and
// SubscribeToShard, whose response is an application/vnd.amazon.eventstream
// stream of events pushed as records commit (efo.go, eventstream.go).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Defaults of Config fields.
const (
	DefaultAddr         = "127.0.0.1:4567"
	DefaultRegion       = "us-east-1"
	DefaultAccount      = "000000000000"
	DefaultMaxBodyBytes = maxRequestBody // reqlimits.go: the largest legal PutRecords, about 14.3 MiB
	// DefaultShardLimit is Config.ShardLimit's default: AWS's default
	// open-shard quota in us-east-1 (and engine.Options.MaxShards').
	DefaultShardLimit = 20000
)

// Config configures a Server (New) and, for the fields marked so, the
// listener and engine that Serve sets up. The zero value is valid for New;
// Serve needs DataDir.
type Config struct {
	// Addr is the TCP address Serve listens on. Default "127.0.0.1:4567".
	// A non-loopback address is refused unless TLS (TLSCertFile,
	// TLSKeyFile) and SigV4 verification (AccessKey, SecretKey) are on, or
	// InsecureAllowRemote is true.
	// Port 0 picks a free port; Serve's ready callback gets the real one.
	Addr string
	// DataDir is the engine's data directory (Serve only). Required by
	// Serve; ignored by New.
	DataDir string
	// Engine are the engine options Serve opens DataDir with. Default nil
	// (the engine's defaults). Ignored by New.
	Engine *engine.Options
	// Region is reported in stream ARNs. Default "us-east-1".
	Region string
	// Account is the 12-digit account id in ARNs and messages. Default
	// "000000000000".
	Account string
	// CreateDelay keeps streams created through the server CREATING for
	// this long, as AWS does (engine.StreamConfig.ActivationDelay), and
	// likewise registered stream consumers CREATING and deregistered ones
	// DELETING (engine.StreamConsumerConfig). Default 0: streams and
	// consumers are ACTIVE at once, and deregistered consumers gone.
	CreateDelay time.Duration
	// DeleteDelay keeps a deleted stream DELETING for this long before it
	// is gone, as AWS does: it is still described and listed, data calls
	// still work, and control-plane changes get ResourceInUseException.
	// Default 0: DeleteStream removes the stream at once.
	DeleteDelay time.Duration
	// UpdateDelay keeps a stream UPDATING, with its old shards, for this
	// long after SplitShard, MergeShards or UpdateShardCount before the
	// new shards appear (records go to the old shards meanwhile), as AWS
	// does. Default 0: the new shards appear at once.
	UpdateDelay time.Duration
	// ShardLimit is the account's open-shard quota: CreateStream,
	// SplitShard and UpdateShardCount that would exceed it get AWS's
	// LimitExceededException, and DescribeLimits reports it. Default:
	// Engine.MaxShards if set, else 20,000 (AWS's default in us-east-1).
	// Serve also opens the engine with it as Options.MaxShards unless
	// Engine.MaxShards is set.
	ShardLimit int
	// KinesisLimits applies engine.KinesisLimits (1000 records/s and
	// 1 MiB/s written, 2 MiB/s and 5 calls/s read, per shard) to every
	// stream: New sets them (persistently, with DB.SetLimits) on existing
	// streams that have no limits, and streams created through the server
	// get them at creation. It also applies Kinesis' enhanced fan-out
	// limits: SubscribeToShard reads 2 MiB/s per consumer and shard, and
	// takes 1 call/s per consumer and shard (LimitExceededException).
	// Default false: no throttling.
	KinesisLimits bool
	// SubscriptionLifetime ends a SubscribeToShard subscription after this
	// long; the client subscribes again from its last
	// ContinuationSequenceNumber. Default 5 minutes, as Kinesis.
	SubscriptionLifetime time.Duration
	// SubscriptionHeartbeat is how often an idle subscription gets an
	// event with no records (and the latest ContinuationSequenceNumber).
	// Default 5 seconds, as Kinesis.
	SubscriptionHeartbeat time.Duration
	// SubscriptionTakeover: a SubscribeToShard for a consumer and shard
	// whose running subscription is younger than this fails with
	// ResourceInUseException; after it, the new subscription takes over
	// and the old one ends with a ResourceInUseException event. Default
	// 5 seconds, as Kinesis.
	SubscriptionTakeover time.Duration
	// AccessKey and SecretKey, when both set, turn on SigV4 verification:
	// requests must be signed with these credentials for Region and the
	// service "kinesis", with every x-amz-* header signed, or they get
	// Kinesis' authentication errors. Default empty: no verification (any
	// credentials and signature are accepted; but, as on AWS, a call must
	// carry a signature, or it gets MissingAuthenticationTokenException).
	// GET /healthz is never authenticated, nor
	// is GET /metrics when Addr is loopback (see MetricsAddr).
	AccessKey, SecretKey string
	// InsecureAllowRemote lets Serve listen on a non-loopback address
	// without TLS or without SigV4 verification. Default false.
	InsecureAllowRemote bool
	// MaxBodyBytes caps request bodies; larger ones get HTTP 413.
	// Default DefaultMaxBodyBytes: the largest legal request, a PutRecords
	// of 10 MiB of data (the largest record limit UpdateMaxRecordSize
	// allows) base64-encoded, with room for its keys (about 14.3 MiB).
	MaxBodyBytes int64
	// ReadTimeout and WriteTimeout bound reading a request and writing its
	// response (Serve only). Defaults 30s and 60s.
	ReadTimeout, WriteTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections (Serve only).
	// Default 120s.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown once Serve's context is
	// cancelled; requests still running after it are cut off. Default 10s.
	ShutdownTimeout time.Duration
	// Logger receives errors the server cannot report to a client
	// (panics, internal failures). Default slog.Default().
	Logger *slog.Logger
	// Clock returns the current time for the server's own timekeeping:
	// the DeleteDelay/UpdateDelay/CreateDelay transitions, account
	// settings, the expiry of ListStreams, ListShards and ListStreamConsumers page
	// tokens, and a SubscribeToShard subscription's lifetime, heartbeat and
	// takeover. Default time.Now. Tests pass the engine's fake clock
	// (engine.Options.Clock) to move time without sleeping, and call
	// Server.ClockMoved after each move so that waiting subscriptions act
	// on the new time at once (without it, a subscription sees a moved
	// clock only when it next wakes: a record, or SubscriptionHeartbeat of
	// real time). SigV4 request times are always checked against the wall
	// clock, as the client signs with it.
	Clock func() time.Time
	// MaxMemory is the memory budget of the whole server, engine included,
	// in bytes. The engine's share (by its profile) and the Go runtime's
	// are set aside; the rest bounds request bodies in flight and
	// SubscribeToShard subscriptions (memory.go). A request that finds no
	// room within a short wait gets a retryable throttling error
	// (ProvisionedThroughputExceededException on the data plane,
	// LimitExceededException elsewhere). Serve also sets the Go runtime's
	// soft memory limit from it unless $GOMEMLIMIT is set. Default
	// DefaultMaxMemorySmall (160 MiB) for engine.ProfileSmall and
	// DefaultMaxMemoryThroughput (2 GiB) for engine.ProfileThroughput.
	MaxMemory int64
	// MaxConns caps open client connections (Serve only); connections
	// beyond it are closed at once. Default: the request budget over
	// 1 MiB, at least 64 (96 with the small profile's default budget).
	MaxConns int
	// TLSCertFile and TLSKeyFile, when both set, make Serve speak HTTPS
	// (HTTP/1.1 and HTTP/2 negotiated by ALPN) with this PEM certificate
	// chain and key. Default empty: plain HTTP/1.1 and h2c.
	TLSCertFile, TLSKeyFile string
	// MetricsAddr, when set, makes Serve also listen there (plain HTTP)
	// for GET /metrics and GET /healthz, unauthenticated, for a
	// Prometheus scraper. On Addr, /metrics needs a SigV4-signed request
	// when verification is on and Addr is not loopback. Default empty.
	MetricsAddr string
	// Attach, if set, is called by Serve once the data directory is open
	// (and so locked by this process) and the Server is built, before
	// ready. It may serve the Server on more listeners, such as the
	// kvstream command's Unix socket inside the data directory (through
	// Trusted). It runs on Serve's goroutine, so it must not block. The
	// detach function it returns (nil: none) is called when Serve
	// returns, before the engine is closed; the db and Server must not
	// be used after it. Default nil.
	Attach func(db *engine.DB, s *Server) (detach func())
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.Account == "" {
		c.Account = DefaultAccount
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ShardLimit == 0 {
		c.ShardLimit = DefaultShardLimit
		if c.Engine != nil && c.Engine.MaxShards > 0 {
			c.ShardLimit = c.Engine.MaxShards
		}
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.SubscriptionLifetime == 0 {
		c.SubscriptionLifetime = 5 * time.Minute
	}
	if c.SubscriptionHeartbeat == 0 {
		c.SubscriptionHeartbeat = 5 * time.Second
	}
	if c.SubscriptionTakeover == 0 {
		c.SubscriptionTakeover = 5 * time.Second
	}
	return c
}

// validate reports the first invalid field.
func (c Config) validate() error {
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return errors.New("server: AccessKey and SecretKey must be set together")
	}
	if len(c.Account) != 12 || !allDigits(c.Account) {
		return fmt.Errorf("server: Account %q must be 12 digits", c.Account)
	}
	if c.Region == "" || len(c.Region) > 64 {
		return fmt.Errorf("server: Region %q must be 1 to 64 characters", c.Region)
	}
	if c.CreateDelay < 0 || c.MaxBodyBytes < 0 {
		return errors.New("server: CreateDelay and MaxBodyBytes must not be negative")
	}
	if c.DeleteDelay < 0 || c.UpdateDelay < 0 || c.ShardLimit < 0 {
		return errors.New("server: DeleteDelay, UpdateDelay and ShardLimit must not be negative")
	}
	if c.SubscriptionLifetime < 0 || c.SubscriptionHeartbeat < 0 || c.SubscriptionTakeover < 0 {
		return errors.New("server: SubscriptionLifetime, SubscriptionHeartbeat and SubscriptionTakeover must not be negative")
	}
	if c.MaxMemory < 0 || c.MaxConns < 0 {
		return errors.New("server: MaxMemory and MaxConns must not be negative")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("server: TLSCertFile and TLSKeyFile must be set together")
	}
	return nil
}

// requestBudget returns the request budget of cfg (withDefaults applied)
// for an engine of profile p, or an error if MaxMemory leaves too little.
func (c Config) requestBudget(p engine.Profile) (int64, error) {
	total := c.MaxMemory
	if total == 0 {
		total = defaultMaxMemory(p)
	}
	reserve := engineReserve(p) + runtimeReserve
	need := bodyCharge*c.MaxBodyBytes + subscriptionCharge
	if total-reserve < need {
		return 0, fmt.Errorf("server: MaxMemory %s is too small: the engine and runtime take %s and requests need at least %s (room for one %s body)",
			mib(total), mib(reserve), mib(need), mib(c.MaxBodyBytes))
	}
	return total - reserve, nil
}

// maxConns returns the connection cap for a request budget.
func (c Config) maxConns(budget int64) int {
	if c.MaxConns > 0 {
		return c.MaxConns
	}
	return max(64, int(budget/connCost))
}

// verifying reports whether SigV4 verification is on.
func (c Config) verifying() bool { return c.AccessKey != "" && c.SecretKey != "" }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Server is an http.Handler serving the Kinesis API over one engine.DB:
// POST with X-Amz-Target is the API, GET /healthz and GET /metrics are
// for operators. It is safe for concurrent use and does not own the DB.
// SubscribeToShard responses stream for minutes: Close ends them.
type Server struct {
	db      *engine.DB
	cfg     Config
	metrics *metrics
	auth    *verifier // nil when SigV4 verification is off
	enc     encryptionCache
	subs    *subscriptions
	feeds   feeds
	pending pendingChanges
	// clockMoves wakes waiting subscriptions when a test moves a fake
	// Clock (ClockMoved, efo.go); enabled only when Config.Clock is set.
	clockMoves clockWake
	// recordLimits caches each stream's record limit (ops_account.go).
	recordLimits recordLimitCache
	// accountMu serializes changes to the account settings.
	accountMu sync.Mutex
	budget    *memBudget
	admit     *admission // fair admission of requests (admission.go)
	readers   *admission // the reader gate (admission.go)
	linger    *lingerer  // discards unread bodies after the answer (linger.go)
	// protectMetrics: GET /metrics needs a signature (SigV4 on, Addr not
	// loopback).
	protectMetrics bool
}

// New returns a Server over db. It validates cfg (Addr, DataDir and the
// timeouts are Serve's business and are not checked here).
func New(db *engine.DB, cfg Config) (*Server, error) {
	if db == nil {
		return nil, errors.New("server: nil DB")
	}
	injected := cfg.Clock != nil
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	budget, err := cfg.requestBudget(db.Options().Profile)
	if err != nil {
		return nil, err
	}
	s := &Server{db: db, cfg: cfg, metrics: newMetrics(), subs: newSubscriptions(), budget: newMemBudget(budget, cfg.verifying())}
	if injected {
		s.clockMoves.enable() // ClockMoved wakes waiting subscriptions
	}
	s.readers = newReaderGate()
	s.linger = newLingerer()
	s.admit = newAdmission(budget, func() (int64, bool) {
		st := db.StorageStats()
		return st.WriteStalls, st.WriteStalled
	})
	s.metrics.watchBudget(s.budget)
	s.metrics.watchStorage(db)
	if cfg.verifying() {
		s.auth = newVerifier(cfg.AccessKey, cfg.SecretKey, cfg.Region)
		s.protectMetrics = !loopbackAddr(cfg.Addr)
	}
	if cfg.KinesisLimits {
		if err := s.applyKinesisLimits(); err != nil {
			return nil, err
		}
	}
	if err := s.loadPending(); err != nil {
		return nil, err
	}
	return s, nil
}

// applyKinesisLimits sets engine.KinesisLimits on every stream that has
// no limits yet.
func (s *Server) applyKinesisLimits() error {
	names, err := s.db.ListStreams()
	if err != nil {
		return err
	}
	for _, n := range names {
		d, err := s.db.DescribeStream(n)
		if err != nil {
			continue // deleted meanwhile
		}
		if d.Limits == (engine.Limits{}) {
			if err := s.db.SetLimits(n, engine.KinesisLimits); err != nil && !errors.Is(err, engine.ErrStreamNotFound) {
				return fmt.Errorf("server: apply Kinesis limits to stream %s: %w", n, err)
			}
		}
	}
	return nil
}

// ServeHTTP implements http.Handler. It never panics: a panic in a handler
// is logged and answered with InternalFailure.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer s.recoverPanic(w, r)
	if r.Method != http.MethodPost {
		switch r.URL.Path {
		case "/healthz":
			s.serveHealth(w, r)
			return
		case "/metrics":
			s.serveMetrics(w, r)
			return
		}
	}
	// Everything else answers as AWS does (protocol.go).
	if s.serveEdge(w, r) {
		return
	}
	s.serveAPI(w, r)
}

// serveHealth answers 200 "ok" while the DB accepts writes, and 503 with
// the reason (engine.DB.Health) while it cannot: closed, a failed write,
// the disk under MinFreeBytes, or Pebble's flushes or compactions failing.
func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.db.Health(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("unavailable: " + err.Error() + "\n")) // names the kind: "kvstream: disk full: …"
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// serveMetrics answers GET /metrics, checking the signature first when
// protectMetrics is set.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.protectMetrics && !trusted(r) {
		if aerr := s.auth.verifyNoBody(r); aerr != nil {
			aerr.Status = http.StatusForbidden
			writeError(w, codecJSON, aerr)
			return
		}
	}
	s.metrics.handler.ServeHTTP(w, r)
}

// trustedKey marks a request's context as coming through Trusted.
type trustedKey struct{}

// Trusted returns a handler that serves s's API without SigV4
// verification (and GET /metrics without a signature), for a listener
// that only trusted clients can reach, such as a Unix socket whose file
// permissions are the access control. Everything else (validation,
// limits, the memory budget, and that a call carries some signature, as
// without verification) is as ServeHTTP. Never use it on a network
// listener. The handler is safe for concurrent use and lives as long as
// s: after s.Close it answers as ServeHTTP does then.
func (s *Server) Trusted() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), trustedKey{}, true)))
	})
}

// trusted reports whether r came through Trusted.
func trusted(r *http.Request) bool {
	v, _ := r.Context().Value(trustedKey{}).(bool)
	return v
}

// recoverPanic turns a panic into a logged InternalFailure.
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.cfg.Logger.Error("kvstream server: panic serving request", "target", r.Header.Get("X-Amz-Target"), "panic", v)
	s.metrics.panics.Inc()
	writeError(w, codecFor(r.Header.Get("Content-Type")), newAPIError(errInternalFailure, "Internal service failure."))
}
