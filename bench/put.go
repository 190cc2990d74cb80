package bench

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/engine"
)

// PutConfig configures the single-record workload: Goroutines goroutines
// each call PutRecord with one record at a time until Records records are
// stored. The ceiling has the same goroutines each committing a one-record
// Pebble batch with the same sync mode, so Pebble's own commit pipeline
// groups their WAL writes and fsyncs.
type PutConfig struct {
	// Profile is the Pebble memory profile of both sides.
	// DefaultPutConfig: engine.ProfileThroughput.
	Profile engine.Profile
	// NoSync acknowledges puts without fsync (both sides). Default false.
	NoSync bool
	// Shards is the stream's shard count. Default 4.
	Shards int
	// RecordSize is the data size of each record in bytes (plus a 16-byte
	// partition key). Default 100.
	RecordSize int
	// Records is how many records each side writes per round.
	// Default 300,000.
	Records int64
	// Goroutines is the number of concurrent callers. Default 64.
	Goroutines int
	// Rounds, Progress and Context are as in AppendConfig.
	Rounds   int
	Progress func(done, total int64)
	Context  context.Context
}

// DefaultPutConfig returns the PutRecord workload: one 100 B
// record per call from 64 goroutines, 4 shards, fsync'd, ProfileThroughput.
func DefaultPutConfig() PutConfig {
	return PutConfig{
		Profile:    engine.ProfileThroughput,
		Shards:     4,
		RecordSize: 100,
		Records:    300_000,
		Goroutines: 64,
		Rounds:     1,
	}
}

// RunPut runs the PutRecord workload and its raw-Pebble ceiling under dir.
func RunPut(dir string, cfg PutConfig) (Result, error) {
	if cfg.Shards < 1 || cfg.RecordSize < 0 || cfg.Records < 1 || cfg.Goroutines < 1 || cfg.Rounds < 1 {
		return Result{}, fmt.Errorf("kvstream: bench: invalid PutConfig %+v: Shards, Records, Goroutines and Rounds must be ≥ 1", cfg)
	}
	ctx := ctxOrBackground(cfg.Context)
	p := newPool(int(min(cfg.Records, 1<<16)), cfg.RecordSize, 2)
	prog := newProgress(cfg.Progress, 2*cfg.Records*int64(cfg.Rounds))
	defer prog.close()
	res := Result{
		Workload: "PutRecord",
		Params:   fmt.Sprintf("1 × %d B per call, %s, %s, %d records", cfg.RecordSize, count(cfg.Shards, "shard"), count(cfg.Goroutines, "goroutine"), cfg.Records),
		Profile:  ProfileName(cfg.Profile),
		Sync:     !cfg.NoSync,
		Rounds:   cfg.Rounds,
	}
	err := runRounds(&res, cfg.Rounds,
		func() (Measurement, error) { return putPhase(ctx, dir, &cfg, p, prog, true) },
		func() (Measurement, error) { return putPhase(ctx, dir, &cfg, p, prog, false) },
		throughputRatio)
	return res, err
}

// putPhase runs one side of the PutRecord workload.
func putPhase(ctx context.Context, dir string, cfg *PutConfig, p *pool, prog *progress, ceiling bool) (m Measurement, err error) {
	name := "putrecord-engine"
	if ceiling {
		name = "putrecord-pebble"
	}
	pdir, err := phaseDir(dir, name)
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(pdir)

	// put stores entry e from goroutine w; the ceiling's per-goroutine
	// batches are reused.
	var put func(w int, e *engine.Entry) error
	var closeDB func() error
	if ceiling {
		db, err := openPebble(pdir, cfg.Profile)
		if err != nil {
			return m, err
		}
		wo := pebble.Sync
		if cfg.NoSync {
			wo = pebble.NoSync
		}
		keys := newCeilingKeys(cfg.Shards)
		bs := make([]*pebble.Batch, cfg.Goroutines)
		for i := range bs {
			bs[i] = db.NewBatch()
		}
		closeDB = func() error {
			for _, b := range bs {
				_ = b.Close()
			}
			return db.Close()
		}
		var rr atomic.Uint32
		put = func(w int, e *engine.Entry) error {
			b := bs[w]
			s := int(rr.Add(1)) % cfg.Shards
			setRecord(b, s, keys.reserve(s, 1), time.Now().UnixMilli(), e)
			err := b.Commit(wo)
			b.Reset()
			return err
		}
	} else {
		db, err := openEngine(pdir, cfg.Profile, cfg.NoSync, cfg.Shards)
		if err != nil {
			return m, err
		}
		closeDB = db.Close
		put = func(_ int, e *engine.Entry) error {
			_, err := db.PutRecord(ctx, StreamName, *e)
			return err
		}
	}
	defer func() {
		if closeDB != nil {
			_ = closeDB()
		}
	}()

	var next atomic.Int64
	var lat latencies
	var bytes atomic.Int64
	rss := startMeter()
	start := time.Now()
	err = workers(cfg.Goroutines, func(w int) error {
		ds := make([]time.Duration, 0, cfg.Records/int64(cfg.Goroutines)+1)
		defer func() { lat.add(ds) }()
		var nb int64
		defer func() { bytes.Add(nb) }()
		for {
			i := next.Add(1) - 1
			if i >= cfg.Records {
				return nil
			}
			if i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			e := &p.entries[i%int64(len(p.entries))]
			t0 := time.Now()
			err := put(w, e)
			ds = append(ds, time.Since(t0))
			if err != nil {
				return err
			}
			nb += payload(e)
			prog.add(1)
		}
	})
	m.Elapsed = time.Since(start)
	if err != nil {
		return m, err
	}
	m.Records, m.Bytes = cfg.Records, bytes.Load()
	m.finish(&lat, rss)
	err, closeDB = closeDB(), nil
	if err != nil {
		return m, err
	}
	m.DiskBytesPerRecord, err = diskPerRecord(pdir, cfg.Profile, m.Records)
	m.chargeBackground(rss)
	return m, err
}
