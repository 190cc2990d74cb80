package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/shard"
)

// TailConfig configures the tail-latency workload: one producer puts
// Records records, one per PutRecord call, at Rate records per second into
// a one-shard stream, while one consumer tails the shard (Iterate from
// LATEST, then Next/Wait, which blocks without polling). Each record
// carries its put time; the latency is from the start of the put to the
// consumer holding the record, so it includes the commit (and fsync).
//
// The ceiling is the least raw-Pebble code that does the same: the
// producer commits a one-record batch (same key and value layout, same
// sync mode), then publishes the counter and wakes the consumer through a
// close-and-replace channel; the consumer opens a Pebble iterator over the
// new records and decodes them.
type TailConfig struct {
	// Profile is the Pebble memory profile of both sides.
	// DefaultTailConfig: engine.ProfileThroughput.
	Profile engine.Profile
	// NoSync acknowledges puts without fsync (both sides). Default false.
	NoSync bool
	// RecordSize is the data size of each record (at least 8: the put
	// time is stored in it), plus a 16-byte partition key. Default 100.
	RecordSize int
	// Records is how many records each side delivers per round.
	// Default 5,000.
	Records int64
	// Rate is the producer's target in records per second; if commits are
	// slower, it puts as fast as they allow. Default 2,000.
	Rate float64
	// Rounds, Progress and Context are as in AppendConfig.
	Rounds   int
	Progress func(done, total int64)
	Context  context.Context
}

// DefaultTailConfig returns the tail-latency workload: 5,000 records of
// 100 B at 2,000 records/s, fsync'd, ProfileThroughput.
func DefaultTailConfig() TailConfig {
	return TailConfig{
		Profile:    engine.ProfileThroughput,
		RecordSize: 100,
		Records:    5_000,
		Rate:       2_000,
		Rounds:     1,
	}
}

// RunTail runs the tail-latency workload and its raw-Pebble ceiling under
// dir. Result.Ratio is ceiling p50 over engine p50.
func RunTail(dir string, cfg TailConfig) (Result, error) {
	if cfg.RecordSize < 8 || cfg.Records < 1 || cfg.Rate <= 0 || cfg.Rounds < 1 {
		return Result{}, fmt.Errorf("kvstream: bench: invalid TailConfig %+v: RecordSize must be ≥ 8, Rate > 0, Records and Rounds ≥ 1", cfg)
	}
	ctx := ctxOrBackground(cfg.Context)
	p := newPool(int(min(cfg.Records, 1<<16)), cfg.RecordSize, 4)
	prog := newProgress(cfg.Progress, 2*cfg.Records*int64(cfg.Rounds))
	defer prog.close()
	res := Result{
		Workload: "Tail",
		Params:   fmt.Sprintf("1 × %d B per PutRecord at %.0f rec/s, 1 shard, 1 tailing consumer, %d records", cfg.RecordSize, cfg.Rate, cfg.Records),
		Profile:  ProfileName(cfg.Profile),
		Sync:     !cfg.NoSync,
		Rounds:   cfg.Rounds,
	}
	err := runRounds(&res, cfg.Rounds,
		func() (Measurement, error) { return tailPhase(ctx, dir, &cfg, p, prog, true) },
		func() (Measurement, error) { return tailPhase(ctx, dir, &cfg, p, prog, false) },
		func(e, c Measurement) float64 { return ratio(float64(c.P50), float64(e.P50)) })
	return res, err
}

// tailSide is one side's producer and consumer.
type tailSide interface {
	// put stores e (whose Data starts with the put time).
	put(ctx context.Context, e *engine.Entry) error
	// consume reads records as they become visible and calls got with
	// each one's data, until got returns false or ctx ends.
	consume(ctx context.Context, got func(data []byte) bool) error
	close() error
}

func tailPhase(ctx context.Context, dir string, cfg *TailConfig, p *pool, prog *progress, ceiling bool) (m Measurement, err error) {
	name := "tail-engine"
	if ceiling {
		name = "tail-pebble"
	}
	pdir, err := phaseDir(dir, name)
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(pdir)
	var side tailSide
	if ceiling {
		side, err = newTailCeiling(pdir, cfg)
	} else {
		side, err = newTailEngine(pdir, cfg)
	}
	if err != nil {
		return m, err
	}
	defer func() {
		if side != nil {
			_ = side.close()
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	base := time.Now()
	lat := make([]time.Duration, 0, cfg.Records)
	var consumed int64
	var nb int64
	var cerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cerr = side.consume(ctx, func(data []byte) bool {
			lat = append(lat, time.Since(base)-time.Duration(binary.LittleEndian.Uint64(data)))
			nb += int64(len(data)) + 16
			consumed++
			prog.add(1)
			return consumed < cfg.Records
		})
	}()

	// Entries are copied so the put time can be written into their data.
	buf := make([]byte, cfg.RecordSize)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	rss := startMeter()
	start := time.Now()
	var perr error
	for i := range cfg.Records {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if perr = ctx.Err(); perr != nil {
			break
		}
		e := p.entries[i%int64(len(p.entries))]
		copy(buf, e.Data)
		binary.LittleEndian.PutUint64(buf, uint64(time.Since(base)))
		e.Data = buf
		if perr = side.put(ctx, &e); perr != nil {
			break
		}
	}
	if perr != nil {
		cancel()
	}
	wg.Wait()
	m.Elapsed = time.Since(start)
	if err := errors.Join(perr, cerr); err != nil {
		return m, err
	}
	m.Records, m.Bytes = consumed, nb
	l := latencies{all: lat}
	m.finish(&l, rss)
	err, side = side.close(), nil
	if err != nil {
		return m, err
	}
	m.DiskBytesPerRecord, err = diskPerRecord(pdir, cfg.Profile, m.Records)
	return m, err
}

type tailEngine struct {
	db *engine.DB
	it *engine.Iterator
}

func newTailEngine(dir string, cfg *TailConfig) (*tailEngine, error) {
	db, err := openEngine(dir, cfg.Profile, cfg.NoSync, 1)
	if err != nil {
		return nil, err
	}
	it, err := db.Iterate(StreamName, 0, engine.Latest())
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &tailEngine{db: db, it: it}, nil
}

func (t *tailEngine) put(ctx context.Context, e *engine.Entry) error {
	_, err := t.db.PutRecord(ctx, StreamName, *e)
	return err
}

func (t *tailEngine) consume(ctx context.Context, got func([]byte) bool) error {
	for {
		for t.it.Next() {
			if !got(t.it.Record().Data) {
				return nil
			}
		}
		if err := t.it.Err(); err != nil {
			return err
		}
		if err := t.it.Wait(ctx); err != nil {
			return err
		}
	}
}

func (t *tailEngine) close() error {
	return errors.Join(t.it.Close(), t.db.Close())
}

// tailCeiling is a minimal raw-Pebble tail: one writer, a published
// counter and a close-and-replace wake-up channel.
type tailCeiling struct {
	db   *pebble.DB
	wo   *pebble.WriteOptions
	b    *pebble.Batch
	next uint64 // producer's next counter

	published atomic.Uint64
	mu        sync.Mutex
	ch        chan struct{}
}

func newTailCeiling(dir string, cfg *TailConfig) (*tailCeiling, error) {
	db, err := openPebble(dir, cfg.Profile)
	if err != nil {
		return nil, err
	}
	t := &tailCeiling{db: db, wo: pebble.Sync, b: db.NewBatch(), next: 1, ch: make(chan struct{})}
	if cfg.NoSync {
		t.wo = pebble.NoSync
	}
	return t, nil
}

func (t *tailCeiling) put(_ context.Context, e *engine.Entry) error {
	setRecord(t.b, 0, t.next, time.Now().UnixMilli(), e)
	err := t.b.Commit(t.wo)
	t.b.Reset()
	if err != nil {
		return err
	}
	t.published.Store(t.next)
	t.next++
	t.mu.Lock()
	close(t.ch)
	t.ch = make(chan struct{})
	t.mu.Unlock()
	return nil
}

func (t *tailCeiling) changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ch
}

func (t *tailCeiling) consume(ctx context.Context, got func([]byte) bool) error {
	next := uint64(1)
	for {
		ch := t.changed()
		pub := t.published.Load()
		if pub < next {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		lower := shard.AppendRecordKey(nil, ceilingStream, 0, next)
		upper := shard.AppendRecordKey(nil, ceilingStream, 0, pub+1)
		it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return err
			}
			d, vok := shard.DecodeValue(v)
			if !vok {
				_ = it.Close()
				return errors.New("kvstream: bench: record value does not decode")
			}
			next++
			if !got(d.Data) {
				return it.Close()
			}
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return err
		}
	}
}

func (t *tailCeiling) close() error {
	return errors.Join(t.b.Close(), t.db.Close())
}
