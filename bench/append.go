package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/engine"
)

// AppendConfig configures the batched-ingest workload: Producers
// goroutines each call PutRecords with BatchSize records until Records
// records are stored (PutRecordsTo, each goroutine reusing its results
// slice as the ceiling reuses its batch). The ceiling has the same number of goroutines each
// committing a Pebble batch of the same BatchSize records (round-robin over
// Shards shards, per-shard counters, written in key order) with the same
// sync mode.
type AppendConfig struct {
	// Profile is the Pebble memory profile of both sides.
	// DefaultAppendConfig: engine.ProfileThroughput.
	Profile engine.Profile
	// NoSync acknowledges puts without fsync (both sides). Default false:
	// every PutRecords / batch commit is fsync'd.
	NoSync bool
	// Shards is the stream's shard count. Default 4.
	Shards int
	// BatchSize is the number of records per PutRecords call and per
	// ceiling batch. Default 500 (the Kinesis maximum).
	BatchSize int
	// RecordSize is the data size of each record in bytes; each record
	// also has a 16-byte partition key. Default 100.
	RecordSize int
	// Records is how many records each side writes per round.
	// Default 2,000,000.
	Records int64
	// Producers is the number of concurrent writer goroutines. Default 1.
	Producers int
	// Rounds is how many times each side runs (see Result.Rounds).
	// Default 1.
	Rounds int
	// Progress, if set, is called about every 100 ms, from one goroutine,
	// with the records done and the total over all phases.
	Progress func(done, total int64)
	// Context, if set, stops the run early when done; Run then closes what
	// it opened and returns the context's error.
	Context context.Context
}

// DefaultAppendConfig returns the PutRecords workload: 500 × 100 B
// records per call, 4 shards, fsync'd, ProfileThroughput.
func DefaultAppendConfig() AppendConfig {
	return AppendConfig{
		Profile:    engine.ProfileThroughput,
		Shards:     4,
		BatchSize:  500,
		RecordSize: 100,
		Records:    2_000_000,
		Producers:  1,
		Rounds:     1,
	}
}

func (c *AppendConfig) validate() error {
	if c.Shards < 1 || c.BatchSize < 1 || c.RecordSize < 0 || c.Records < 1 || c.Producers < 1 || c.Rounds < 1 {
		return fmt.Errorf("kvstream: bench: invalid AppendConfig %+v: Shards, BatchSize, Records, Producers and Rounds must be ≥ 1", *c)
	}
	return nil
}

// RunAppend runs the PutRecords workload and its raw-Pebble ceiling under
// dir.
func RunAppend(dir string, cfg AppendConfig) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	ctx := ctxOrBackground(cfg.Context)
	poolN := min(max(1, 1<<16/cfg.BatchSize), int((cfg.Records+int64(cfg.BatchSize)-1)/int64(cfg.BatchSize))) * cfg.BatchSize
	p := newPool(poolN, cfg.RecordSize, 1)
	prog := newProgress(cfg.Progress, 2*cfg.Records*int64(cfg.Rounds))
	defer prog.close()

	res := Result{
		Workload: "PutRecords",
		Params: fmt.Sprintf("%d × %d B per call, %s, %s, %d records",
			cfg.BatchSize, cfg.RecordSize, count(cfg.Shards, "shard"), count(cfg.Producers, "producer"), cfg.Records),
		Profile: ProfileName(cfg.Profile),
		Sync:    !cfg.NoSync,
		Rounds:  cfg.Rounds,
	}
	err := runRounds(&res, cfg.Rounds,
		func() (Measurement, error) { return appendCeiling(ctx, dir, &cfg, p, prog) },
		func() (Measurement, error) { return appendEngine(ctx, dir, &cfg, p, prog) },
		throughputRatio)
	return res, err
}

// batches splits records into numbered batches claimed by workers.
type batches struct {
	next    atomic.Int64
	n       int64
	size    int
	records int64
}

func newBatches(records int64, size int) *batches {
	return &batches{n: (records + int64(size) - 1) / int64(size), size: size, records: records}
}

// claim returns the next batch's window into entries, or false when done.
func (b *batches) claim(entries []engine.Entry) ([]engine.Entry, bool) {
	i := b.next.Add(1) - 1
	if i >= b.n {
		return nil, false
	}
	n := int(min(int64(b.size), b.records-i*int64(b.size)))
	off := int(i*int64(b.size)) % len(entries)
	return entries[off : off+n], true
}

// workers runs fn on n goroutines and returns the first error.
func workers(n int, fn func(w int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = fn(w)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func appendEngine(ctx context.Context, dir string, cfg *AppendConfig, p *pool, prog *progress) (m Measurement, err error) {
	pdir, err := phaseDir(dir, "putrecords-engine")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(pdir)
	db, err := openEngine(pdir, cfg.Profile, cfg.NoSync, cfg.Shards)
	if err != nil {
		return m, err
	}
	defer func() {
		if db != nil {
			_ = db.Close()
		}
	}()
	bs := newBatches(cfg.Records, cfg.BatchSize)
	var lat latencies
	var bytes atomic.Int64
	rss := startMeter()
	start := time.Now()
	err = workers(cfg.Producers, func(int) error {
		ds := make([]time.Duration, 0, bs.n/int64(cfg.Producers)+1)
		defer func() { lat.add(ds) }()
		var nb int64
		defer func() { bytes.Add(nb) }()
		// The results slice is reused, as the ceiling reuses its batch
		// (engine.DB.PutRecordsTo).
		var rs []engine.PutResult
		for {
			win, ok := bs.claim(p.entries)
			if !ok {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			t0 := time.Now()
			var err error
			rs, err = db.PutRecordsTo(ctx, StreamName, win, rs[:0])
			ds = append(ds, time.Since(t0))
			if err != nil {
				return err
			}
			for i := range rs {
				if rs[i].Err != nil {
					return rs[i].Err
				}
				nb += payload(&win[i])
			}
			prog.add(int64(len(win)))
		}
	})
	m.Elapsed = time.Since(start)
	if err != nil {
		return m, err
	}
	m.Records, m.Bytes = cfg.Records, bytes.Load()
	m.finish(&lat, rss)
	err, db = db.Close(), nil
	if err != nil {
		return m, err
	}
	m.DiskBytesPerRecord, err = diskPerRecord(pdir, cfg.Profile, m.Records)
	m.chargeBackground(rss)
	return m, err
}

func appendCeiling(ctx context.Context, dir string, cfg *AppendConfig, p *pool, prog *progress) (m Measurement, err error) {
	pdir, err := phaseDir(dir, "putrecords-pebble")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(pdir)
	db, err := openPebble(pdir, cfg.Profile)
	if err != nil {
		return m, err
	}
	defer func() {
		if db != nil {
			_ = db.Close()
		}
	}()
	wo := pebble.Sync
	if cfg.NoSync {
		wo = pebble.NoSync
	}
	keys := newCeilingKeys(cfg.Shards)
	bs := newBatches(cfg.Records, cfg.BatchSize)
	var lat latencies
	var bytes atomic.Int64
	rss := startMeter()
	start := time.Now()
	err = workers(cfg.Producers, func(int) error {
		ds := make([]time.Duration, 0, bs.n/int64(cfg.Producers)+1)
		defer func() { lat.add(ds) }()
		var nb int64
		defer func() { bytes.Add(nb) }()
		b := db.NewBatch()
		defer b.Close()
		next := make([]uint64, cfg.Shards)
		for {
			win, ok := bs.claim(p.entries)
			if !ok {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			t0 := time.Now()
			for s := range next {
				n := (len(win) - s + cfg.Shards - 1) / cfg.Shards // records j ≡ s mod Shards
				next[s] = keys.reserve(s, uint64(n))
			}
			now := time.Now().UnixMilli()
			// In key order, shard by shard, as the engine's Writer puts a
			// commit into its batch: Pebble inserts a batch into the
			// memtable in batch order, and a key right after the previous
			// one costs no search.
			for s := range next {
				for j := s; j < len(win); j += cfg.Shards {
					setRecord(b, s, next[s], now, &win[j])
					next[s]++
					nb += payload(&win[j])
				}
			}
			err := b.Commit(wo)
			b.Reset()
			ds = append(ds, time.Since(t0))
			if err != nil {
				return err
			}
			prog.add(int64(len(win)))
		}
	})
	m.Elapsed = time.Since(start)
	if err != nil {
		return m, err
	}
	m.Records, m.Bytes = cfg.Records, bytes.Load()
	m.finish(&lat, rss)
	err, db = db.Close(), nil
	if err != nil {
		return m, err
	}
	m.DiskBytesPerRecord, err = diskPerRecord(pdir, cfg.Profile, m.Records)
	m.chargeBackground(rss)
	return m, err
}

// count writes n and noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
