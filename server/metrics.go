package server

import (
	"net/http"
	"sync"
	"time"

	"github.com/kvstream/kvstream/engine"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are one Server's Prometheus metrics, on a registry of its own
// (never the global one), so many servers can live in one process.
type metrics struct {
	registry *prometheus.Registry
	handler  http.Handler

	requests   *prometheus.CounterVec   // op, error
	latency    *prometheus.HistogramVec // op
	recordsIn  prometheus.Counter
	bytesIn    prometheus.Counter
	recordsOut prometheus.Counter
	bytesOut   prometheus.Counter
	throttles  *prometheus.CounterVec // op
	panics     prometheus.Counter
	corruption prometheus.Counter // reads that met damaged data

	subscriptions    prometheus.Gauge
	subscribeRecords prometheus.Counter
	subscribeBytes   prometheus.Counter
	subscribeShared  prometheus.Counter

	connections prometheus.Gauge

	mu  sync.RWMutex
	ops map[string]*opMetrics
}

// opMetrics are the pre-resolved metrics of one operation, so the hot path
// does no label lookups on success.
type opMetrics struct {
	m       *metrics
	name    string
	ok      prometheus.Counter
	latency prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvstream", Subsystem: "server", Name: "requests_total",
			Help: "Kinesis API requests by operation and error type (\"none\" for success).",
		}, []string{"op", "error"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kvstream", Subsystem: "server", Name: "request_duration_seconds",
			Help:    "Kinesis API request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"op"}),
		recordsIn:  counter("records_in_total", "Records accepted by PutRecord and PutRecords."),
		bytesIn:    counter("bytes_in_total", "Data bytes accepted by PutRecord and PutRecords."),
		recordsOut: counter("records_out_total", "Records returned by GetRecords."),
		bytesOut:   counter("bytes_out_total", "Data bytes returned by GetRecords."),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvstream", Subsystem: "server", Name: "throttles_total",
			Help: "Throttled calls and PutRecords entries, by operation.",
		}, []string{"op"}),
		panics: counter("panics_total", "Requests that panicked and were answered with InternalFailure."),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kvstream", Subsystem: "server", Name: "subscriptions",
			Help: "Running SubscribeToShard subscriptions (enhanced fan-out).",
		}),
		subscribeRecords: counter("subscribe_records_out_total", "Records pushed to SubscribeToShard subscribers."),
		subscribeBytes:   counter("subscribe_bytes_out_total", "Data and partition-key bytes pushed to SubscribeToShard subscribers."),
		subscribeShared:  counter("subscribe_shared_events_total", "SubscribeToShard events whose records another subscription of the shard had read and encoded."),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kvstream", Subsystem: "server", Name: "connections",
			Help: "Open client connections (Serve's listener only).",
		}),
		ops: make(map[string]*opMetrics),
	}
	m.corruption = counter("corruption_errors_total", "Requests that met damaged stored data (answered with InternalFailure; run kvstream check).")
	m.registry.MustRegister(m.corruption)
	m.registry.MustRegister(m.requests, m.latency, m.recordsIn, m.bytesIn, m.recordsOut, m.bytesOut,
		m.throttles, m.panics, m.subscriptions, m.subscribeRecords, m.subscribeBytes, m.subscribeShared, m.connections,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
	return m
}

// watchBudget exports the request budget and how much of it is held.
func (m *metrics) watchBudget(b *memBudget) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvstream", Subsystem: "server", Name: "memory_budget_bytes",
			Help: "The request budget: MaxMemory less the engine's and the runtime's shares.",
		}, func() float64 { return float64(b.total) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvstream", Subsystem: "server", Name: "memory_in_use_bytes",
			Help: "Bytes of the request budget held by requests in flight and subscriptions.",
		}, func() float64 { return float64(b.inUse.Load()) }),
	)
}

// op returns the metrics of the named operation.
func (m *metrics) op(name string) *opMetrics {
	m.mu.RLock()
	om := m.ops[name]
	m.mu.RUnlock()
	if om != nil {
		return om
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if om = m.ops[name]; om == nil {
		om = &opMetrics{m: m, name: name, ok: m.requests.WithLabelValues(name, "none"), latency: m.latency.WithLabelValues(name)}
		m.ops[name] = om
	}
	return om
}

// done records a finished request; errType is "" on success.
func (om *opMetrics) done(start time.Time, errType string) {
	om.latency.Observe(time.Since(start).Seconds())
	if errType == "" {
		om.ok.Inc()
		return
	}
	om.m.requests.WithLabelValues(om.name, errType).Inc()
}

// counter returns a kvstream_server_<name> counter.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kvstream", Subsystem: "server", Name: name, Help: help})
}

// watchStorage exports the engine's storage health (engine.DB.StorageStats
// and Health), read at each scrape: Pebble's background errors, puts
// refused for a full disk, write stalls, free space and the ballast.
func (m *metrics) watchStorage(db *engine.DB) {
	stat := func(f func(engine.StorageStats) float64) func() float64 {
		return func() float64 { return f(db.StorageStats()) }
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	counter := func(name, help string, f func(engine.StorageStats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kvstream", Subsystem: "storage", Name: name, Help: help}, stat(f))
	}
	gauge := func(name, help string, f func(engine.StorageStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvstream", Subsystem: "storage", Name: name, Help: help}, stat(f))
	}
	recovery := func(name, help string, f func(engine.RecoveryReport) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvstream", Subsystem: "recovery", Name: name, Help: help},
			func() float64 { return f(db.Recovery()) })
	}
	m.registry.MustRegister(
		counter("background_errors_total", "Pebble background errors (failed flushes, compactions and other work outside a request).",
			func(s engine.StorageStats) float64 { return float64(s.BackgroundErrors) }),
		counter("flush_errors_total", "Failed memtable flushes.",
			func(s engine.StorageStats) float64 { return float64(s.FlushErrors) }),
		counter("compaction_errors_total", "Failed compactions.",
			func(s engine.StorageStats) float64 { return float64(s.CompactionErrors) }),
		counter("disk_full_rejections_total", "Puts refused with a full disk (below MinFreeBytes, or after ENOSPC); answered ServiceUnavailable.",
			func(s engine.StorageStats) float64 { return float64(s.DiskFullRejections) }),
		counter("enospc_errors_total", "Writes to the data directory that failed with ENOSPC.",
			func(s engine.StorageStats) float64 { return float64(s.ENOSPCErrors) }),
		counter("write_stalls_total", "Times Pebble stopped admitting writes until a flush or compaction caught up.",
			func(s engine.StorageStats) float64 { return float64(s.WriteStalls) }),
		counter("write_stall_seconds_total", "Time writes spent stalled (ended stalls).",
			func(s engine.StorageStats) float64 { return s.WriteStallTime.Seconds() }),
		gauge("write_stalled", "1 while a write stall is in progress.",
			func(s engine.StorageStats) float64 { return b2f(s.WriteStalled) }),
		gauge("disk_full", "1 while puts are refused for a full disk.",
			func(s engine.StorageStats) float64 { return b2f(s.DiskFull) }),
		gauge("available_bytes", "Last reading of the data directory's available space (-1: not checked).",
			func(s engine.StorageStats) float64 { return float64(s.AvailableBytes) }),
		gauge("min_free_bytes", "The free-space floor below which puts are refused (0: not checked).",
			func(s engine.StorageStats) float64 { return float64(s.MinFreeBytes) }),
		gauge("ballast_bytes", "Size of the emergency ballast on disk (0 while released or disabled).",
			func(s engine.StorageStats) float64 { return float64(s.BallastBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvstream", Subsystem: "storage", Name: "writable",
			Help: "1 while the store accepts writes (what /healthz reports), 0 otherwise."},
			func() float64 { return b2f(db.Health() == nil) }),
		// What Open found about the end of the previous session
		// (engine.DB.Recovery): never silent, also logged at open.
		recovery("lost_records", "Acknowledged records found missing when the data directory was opened (a damaged or truncated WAL).",
			func(r engine.RecoveryReport) float64 { return float64(r.LostRecords) }),
		recovery("lost_shards", "Shards with acknowledged records found missing at open.",
			func(r engine.RecoveryReport) float64 { return float64(len(r.Lost)) }),
		recovery("consumer_gaps", "Durable-consumer checkpoints found beyond their shard's recovered end at open.",
			func(r engine.RecoveryReport) float64 { return float64(len(r.ConsumerGaps)) }),
		recovery("unclean", "1 if the previous session did not end with Close (counters continued above a reserved ceiling).",
			func(r engine.RecoveryReport) float64 { return b2f(!r.Clean) }),
	)
}
