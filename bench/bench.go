// Package bench holds kvstream's benchmark workloads as a library: each
// workload is a Config with a Default…Config constructor and a Run…
// function, as in Pebble's bench package, so `go test -bench` (see
// bench_test.go) and `kvstream bench` run exactly the same code.
//
// Every Run measures two things in the same process, on the same machine,
// in the same minute:
//
//   - the engine: kvstream's public API (engine.DB), and
//   - the ceiling: raw Pebble doing the least work that stores or reads the
//     same bytes — the same record keys (shard.AppendRecordKey layout), the
//     same values (shard.PutValue encoding), the same batch size, the same
//     sync mode and the same Pebble options (the engine profile's, see
//     PebbleOptions), with no routing, validation, sequence numbers,
//     notification or group-commit hand-off.
//
// so results are ratios (Result.Ratio) that survive a noisy machine better
// than absolute numbers do.
//
// Each Run writes under dir, in fresh subdirectories it removes when done
// (RunRead keeps its loaded data set for reuse; see ReadConfig). dir itself
// is the caller's: a temporary directory, on the disk being measured.
package bench

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/procstat"
	"github.com/kvstream/kvstream/shard"
)

// StreamName is the stream every workload creates.
const StreamName = "bench"

// Measurement is what one side (engine or ceiling) of a workload did.
type Measurement struct {
	// Records is the number of records written or read.
	Records int64 `json:"records"`
	// Bytes is the user payload moved: data plus partition key per record.
	Bytes int64 `json:"bytes"`
	// Elapsed is the wall time of the measured phase.
	Elapsed time.Duration `json:"elapsed_ns"`
	// RecordsPerSec and MBPerSec (10^6 bytes of Bytes per second) are the
	// throughput of the measured phase.
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	// Ops is the number of timed operations (PutRecords calls, PutRecord
	// calls, GetRecords pages, end-to-end deliveries); P50 and P99 are
	// their latencies. Zero when the workload has no per-call latency (a
	// full Iterator scan).
	Ops int64         `json:"ops"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	// PeakRSS is the process' peak resident set during the phase, in
	// bytes: VmHWM from /proc/self/status, reset before the phase through
	// /proc/self/clear_refs. Where the reset is unavailable it is the
	// process' peak so far (getrusage), and PeakRSSCumulative is true.
	// The reset starts from the current RSS, which can still hold memory
	// an earlier phase's Pebble block cache returned to the C allocator;
	// for clean figures run one workload per process (the first phase
	// after start is always clean).
	PeakRSS           int64 `json:"peak_rss_bytes"`
	PeakRSSCumulative bool  `json:"peak_rss_cumulative,omitempty"`
	// CPUPerRecord is the process' CPU time (user plus system, all
	// threads, Pebble's background flushes and compactions included)
	// during the phase, per record. It is steadier than throughput on a
	// machine shared with other work, and a ratio of it shows overhead
	// even where the ceiling is the disk. For the write workloads it runs
	// on past the last acknowledgement, through closing the store and
	// flushing its memtable (DiskBytesPerRecord's step), so each side is
	// charged for the flushes and compactions its records caused, not only
	// for those that happened to run before its last write returned (a
	// slower side would otherwise pay for more of them).
	CPUPerRecord time.Duration `json:"cpu_per_record_ns"`
	// DiskBytesPerRecord is the size of the phase's sstables after the
	// memtable is flushed, divided by Records (write workloads; for reads,
	// the data set's). The WAL is not counted.
	DiskBytesPerRecord float64 `json:"disk_bytes_per_record"`
}

// Result is one workload's outcome: the engine, the raw-Pebble ceiling
// measured in the same run, and their ratio.
type Result struct {
	// Workload names what ran: "PutRecords", "PutRecord", "GetRecords",
	// "Iterator" or "Tail".
	Workload string `json:"workload"`
	// Params is a one-line description of the configuration.
	Params string `json:"params"`
	// Profile is the Pebble memory profile both sides used ("small" or
	// "throughput").
	Profile string `json:"profile"`
	// Sync reports whether writes were fsync'd before they were
	// acknowledged (both sides).
	Sync bool `json:"sync"`
	// Rounds is how many times each side ran. A round runs both sides back
	// to back (alternating which goes first); Engine and Ceiling are each
	// side's median round by records/s (the lower middle for an even
	// count).
	Rounds  int         `json:"rounds"`
	Engine  Measurement `json:"engine"`
	Ceiling Measurement `json:"ceiling"`
	// RoundRatios are the engine/ceiling ratios of each round, and Ratio
	// their median: a round's two sides share the machine's conditions,
	// so this is steadier than a ratio of independent medians on a noisy
	// machine. The ratio is records/s engine over ceiling; for Tail, whose
	// rate is fixed, it is ceiling p50 latency over engine p50. 1.0 means
	// the engine costs nothing over raw Pebble.
	RoundRatios []float64 `json:"round_ratios"`
	Ratio       float64   `json:"ratio"`
	// RatioMin and RatioMax are the lowest and highest of RoundRatios:
	// the spread a single round could have reported.
	RatioMin float64 `json:"ratio_min"`
	RatioMax float64 `json:"ratio_max"`
	// CPURatio is the median over rounds of Ceiling.CPUPerRecord /
	// Engine.CPUPerRecord: the share of the engine's CPU per record that
	// raw Pebble needs too (1.0: no CPU overhead). It is steadier than
	// Ratio on a loaded machine and meaningful when the disk, not the CPU,
	// bounds throughput.
	CPURatio float64 `json:"cpu_ratio"`
}

// String formats r on one line.
func (r Result) String() string {
	return fmt.Sprintf("%s [%s; %s, sync=%t]: engine %.0f rec/s %.1f MB/s p50 %v p99 %v cpu %v/rec rss %s | ceiling %.0f rec/s %.1f MB/s p50 %v p99 %v cpu %v/rec rss %s | ratio %.2f%s, cpu ratio %.2f",
		r.Workload, r.Params, r.Profile, r.Sync,
		r.Engine.RecordsPerSec, r.Engine.MBPerSec, r.Engine.P50, r.Engine.P99, r.Engine.CPUPerRecord, mib(r.Engine.PeakRSS),
		r.Ceiling.RecordsPerSec, r.Ceiling.MBPerSec, r.Ceiling.P50, r.Ceiling.P99, r.Ceiling.CPUPerRecord, mib(r.Ceiling.PeakRSS),
		r.Ratio, roundRatios(r.RoundRatios), r.CPURatio)
}

func roundRatios(rs []float64) string {
	if len(rs) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" (rounds")
	for _, r := range rs {
		fmt.Fprintf(&b, " %.2f", r)
	}
	b.WriteString(")")
	return b.String()
}

// WriteTable writes results as an aligned text table, one row per side;
// the ratios (Result.Ratio and Result.CPURatio) are on the engine's row.
func WriteTable(w io.Writer, results ...Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tside\trecords/s\tMB/s\tp50\tp99\tCPU/rec\tpeak RSS\tdisk B/rec\tratio\tCPU ratio\tprofile\tsync\t")
	for _, r := range results {
		for i, m := range []Measurement{r.Engine, r.Ceiling} {
			side, ratio, cpu := "engine", fmt.Sprintf("%.2f", r.Ratio), fmt.Sprintf("%.2f", r.CPURatio)
			if i == 1 {
				side, ratio, cpu = "pebble", "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%t\t\n",
				r.Workload, side, m.RecordsPerSec, m.MBPerSec, dur(m.P50), dur(m.P99), m.CPUPerRecord, mib(m.PeakRSS),
				m.DiskBytesPerRecord, ratio, cpu, r.Profile, r.Sync)
		}
	}
	return tw.Flush()
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func dur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(time.Microsecond).String()
}

// ProfileName returns "small" or "throughput".
func ProfileName(p engine.Profile) string {
	if p == engine.ProfileThroughput {
		return "throughput"
	}
	return "small"
}

// ParseProfile parses "small" or "throughput".
func ParseProfile(s string) (engine.Profile, error) {
	switch strings.ToLower(s) {
	case "small":
		return engine.ProfileSmall, nil
	case "throughput":
		return engine.ProfileThroughput, nil
	}
	return 0, fmt.Errorf("kvstream: bench: profile %q must be small or throughput", s)
}

// PebbleOptions returns the Pebble options the engine uses for profile p,
// for the ceiling side (engine.PebbleOptions).
func PebbleOptions(p engine.Profile) *pebble.Options { return engine.PebbleOptions(p) }

// openPebble opens dir with profile p's options; the cache reference is
// handed to the DB.
func openPebble(dir string, p engine.Profile) (*pebble.DB, error) {
	po := PebbleOptions(p)
	db, err := pebble.Open(dir, po)
	po.Cache.Unref()
	return db, err
}

// openEngine opens an engine DB on dir and creates StreamName with shards
// shards unless it exists.
func openEngine(dir string, p engine.Profile, noSync bool, shards int) (*engine.DB, error) {
	db, err := engine.Open(dir, &engine.Options{Profile: p, NoSync: noSync})
	if err != nil {
		return nil, err
	}
	if shards > 0 {
		if err := db.CreateStream(StreamName, engine.StreamConfig{ShardCount: shards}); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

// sstBytes flushes nothing: it sums the sizes of the .sst files in dir.
func sstBytes(dir string) (int64, error) {
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".sst") {
			fi, err := e.Info()
			if err != nil {
				return 0, err
			}
			n += fi.Size()
		}
	}
	return n, nil
}

// diskPerRecord reopens the closed store in dir with raw Pebble, flushes
// its memtable (an fsync'd engine's Close does not), and returns the
// sstable bytes per record.
func diskPerRecord(dir string, p engine.Profile, records int64) (float64, error) {
	if records == 0 {
		return 0, nil
	}
	db, err := openPebble(dir, p)
	if err != nil {
		return 0, err
	}
	if err := db.Flush(); err != nil {
		_ = db.Close()
		return 0, err
	}
	if err := db.Close(); err != nil {
		return 0, err
	}
	n, err := sstBytes(dir)
	return float64(n) / float64(records), err
}

// meter measures a phase's peak RSS and CPU time.
type meter struct {
	reset bool  // the peak RSS counter was reset
	cpu   int64 // process CPU time (user+system, ns) at the start
}

// startMeter frees what the previous phase left, resets the kernel's peak
// RSS counter and notes the CPU time used so far.
func startMeter() meter {
	runtime.GC()
	debug.FreeOSMemory()
	err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return meter{reset: err == nil, cpu: procstat.CPU()}
}

// peak returns the peak RSS since start, and whether it is cumulative.
func (m meter) peak() (int64, bool) {
	if m.reset {
		if b, err := os.ReadFile("/proc/self/status"); err == nil {
			for line := range strings.Lines(string(b)) {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					f := strings.Fields(v)
					if len(f) >= 1 {
						if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
							return kb << 10, false
						}
					}
				}
			}
		}
	}
	_, maxRSS := procstat.Usage()
	return maxRSS, true
}

// chargeBackground sets m.CPUPerRecord to the CPU time from the phase's
// start (rss) until now, per record: a write phase calls it once its
// store is closed and flushed (diskPerRecord).
func (m *Measurement) chargeBackground(rss meter) {
	if m.Records > 0 {
		m.CPUPerRecord = time.Duration((procstat.CPU() - rss.cpu) / m.Records)
	}
}

// latencies collects per-operation durations from several goroutines,
// each appending to its own slice.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

// percentiles returns the number of samples, p50 and p99.
func (l *latencies) percentiles() (int64, time.Duration, time.Duration) {
	if len(l.all) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l.all)
	at := func(q float64) time.Duration {
		i := int(q * float64(len(l.all)-1))
		return l.all[i]
	}
	return int64(len(l.all)), at(0.50), at(0.99)
}

// finish fills the derived fields of m.
func (m *Measurement) finish(lat *latencies, rss meter) {
	if s := m.Elapsed.Seconds(); s > 0 {
		m.RecordsPerSec = float64(m.Records) / s
		m.MBPerSec = float64(m.Bytes) / s / 1e6
	}
	if lat != nil {
		m.Ops, m.P50, m.P99 = lat.percentiles()
	}
	m.PeakRSS, m.PeakRSSCumulative = rss.peak()
	if m.Records > 0 {
		m.CPUPerRecord = time.Duration((procstat.CPU() - rss.cpu) / m.Records)
	}
}

// runRounds runs rounds pairs of phases, alternating which side goes
// first, and fills res: each side's median round (by throughput), the
// per-round ratios (engine over ceiling, as ratioOf computes them, from the
// two phases of the same round, which share the machine's conditions) and
// their median as res.Ratio. Each phase runs under the pprof label side
// (engine or ceiling), which the goroutines it starts inherit (the
// engine's committer, Pebble's flushes and compactions), so a CPU profile
// separates the sides: go tool pprof -tagfocus side=engine.
func runRounds(res *Result, rounds int, ceiling, eng func() (Measurement, error), ratioOf func(e, c Measurement) float64) error {
	var es, cs []Measurement
	var cpu []float64
	for round := range rounds {
		var e, c Measurement
		for i := range 2 {
			var err error
			if (i+round)%2 == 0 {
				pprof.Do(context.Background(), pprof.Labels("side", "ceiling"), func(context.Context) { c, err = ceiling() })
			} else {
				pprof.Do(context.Background(), pprof.Labels("side", "engine"), func(context.Context) { e, err = eng() })
			}
			if err != nil {
				return err
			}
		}
		es, cs = append(es, e), append(cs, c)
		res.RoundRatios = append(res.RoundRatios, ratioOf(e, c))
		cpu = append(cpu, ratio(float64(c.CPUPerRecord), float64(e.CPUPerRecord)))
	}
	byRate := func(a, b Measurement) int { return cmp.Compare(a.RecordsPerSec, b.RecordsPerSec) }
	slices.SortFunc(es, byRate)
	slices.SortFunc(cs, byRate)
	res.Engine, res.Ceiling = es[(len(es)-1)/2], cs[(len(cs)-1)/2]
	res.Ratio = median(res.RoundRatios)
	res.RatioMin, res.RatioMax = slices.Min(res.RoundRatios), slices.Max(res.RoundRatios)
	res.CPURatio = median(cpu)
	return nil
}

// median returns the median of xs (the mean of the middle two for an even
// count), leaving xs as it is.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// throughputRatio is the ratio of the write and read workloads.
func throughputRatio(e, c Measurement) float64 { return ratio(e.RecordsPerSec, c.RecordsPerSec) }

// progress drives a Config's Progress callback from one goroutine, so the
// callback is never called concurrently and the hot path only adds to an
// atomic counter.
type progress struct {
	done  atomic.Int64
	total int64
	fn    func(done, total int64)
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(fn func(done, total int64), total int64) *progress {
	p := &progress{total: total, fn: fn, stop: make(chan struct{})}
	if fn == nil {
		return p
	}
	fn(0, total)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(min(p.done.Load(), total), total)
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) { p.done.Add(n) }

// close stops the ticker and reports the final count.
func (p *progress) close() {
	close(p.stop)
	p.wg.Wait()
	if p.fn != nil {
		p.fn(min(p.done.Load(), p.total), p.total)
	}
}

// pool is a set of pre-generated records reused cyclically, so generating
// input costs nothing in the measured phases. Data is random
// (incompressible) and partition keys are distinct 16-character hex strings.
type pool struct {
	entries []engine.Entry
}

func newPool(n, recordSize int, seed uint64) *pool {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	data := make([]byte, n*recordSize)
	for i := 0; i+8 <= len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	for i := len(data) &^ 7; i < len(data); i++ {
		data[i] = byte(rng.Uint32())
	}
	p := &pool{entries: make([]engine.Entry, n)}
	for i := range p.entries {
		p.entries[i] = engine.Entry{
			PartitionKey: fmt.Sprintf("%016x", rng.Uint64()),
			Data:         data[i*recordSize : (i+1)*recordSize : (i+1)*recordSize],
		}
	}
	return p
}

// payload is the user bytes of an entry.
func payload(e *engine.Entry) int64 { return int64(len(e.Data) + len(e.PartitionKey)) }

// ceilingKeys allocates record counters for the ceiling: per shard, from
// 1, shared by all writer goroutines.
type ceilingKeys struct {
	next []atomic.Uint64
}

func newCeilingKeys(shards int) *ceilingKeys {
	return &ceilingKeys{next: make([]atomic.Uint64, shards)}
}

// reserve returns the first of n fresh counters of shard s.
func (k *ceilingKeys) reserve(s int, n uint64) uint64 { return k.next[s].Add(n) - n + 1 }

// ceilingStream is the stream id the ceiling writes records under; any
// value works, the engine's first stream gets 1.
const ceilingStream = 1

// setRecord adds one record to b with the engine's key and value layout.
func setRecord(b *pebble.Batch, s int, counter uint64, arrivalMs int64, e *engine.Entry) {
	op := b.SetDeferred(shard.RecordKeyLen, shard.ValueLen(e.PartitionKey, false, e.Data))
	shard.PutRecordKey(op.Key, ceilingStream, uint32(s), counter)
	shard.PutValue(op.Value, arrivalMs, e.PartitionKey, nil, e.Data)
	_ = op.Finish()
}

// phaseDir makes a fresh subdirectory of dir for one phase.
func phaseDir(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(dir, name+"-")
}

func ctxOrBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
