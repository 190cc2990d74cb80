package bench

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/procstat"
)

// The benchmarks run the library workloads at their default sizes (the
// issue's targets) and report the engine's throughput, the raw-Pebble
// ceiling measured in the same run, and their ratio. One iteration is a
// whole workload, so run them with -benchtime 1x:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/ -args -bench.rounds=3
//
// Flags after -args: -bench.rounds (runs per side, median reported),
// -bench.scale (multiplies record counts; 0.1 for a quick look),
// -bench.profile (small or throughput), -bench.producers (PutRecords
// callers), -bench.dir (keep the read data set between runs). Profile with
// the usual -cpuprofile/-memprofile and `go tool pprof -top -focus
// 'appendEngine|readEngine|putPhase'` to separate the engine side.
//
// ns/op is the wall time of the whole run (both sides, loading and
// measuring disk use) and means little; read the custom metrics: ratio
// (engine ÷ ceiling), rec/s and pebble-rec/s, MB/s, latencies, CPU per
// record of each side, peak RSS and disk bytes per record.
var (
	flagScale  = flag.Float64("bench.scale", 1, "multiply every benchmark's record count by this")
	flagRounds = flag.Int("bench.rounds", 1, "rounds per workload; each round runs both sides (see Result.Rounds)")
	flagProd   = flag.Int("bench.producers", 0, "PutRecords producer goroutines (default: DefaultAppendConfig's)")
	flagDir    = flag.String("bench.dir", "", "keep read data sets in this directory across runs (default: a temporary directory)")
	flagProf   = flag.String("bench.profile", "throughput", "engine memory profile of both sides: small or throughput")
)

// profile returns the -bench.profile flag's profile.
func profile(b *testing.B) engine.Profile {
	p, err := ParseProfile(*flagProf)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func scaled(n int64) int64 { return max(1, int64(float64(n)**flagScale)) }

// report logs r and reports its figures as benchmark metrics.
func report(b *testing.B, r Result) {
	b.Helper()
	b.Log(r)
	b.ReportMetric(r.Ratio, "ratio")
	b.ReportMetric(r.CPURatio, "cpu-ratio")
	b.ReportMetric(r.Engine.RecordsPerSec, "rec/s")
	b.ReportMetric(r.Ceiling.RecordsPerSec, "pebble-rec/s")
	b.ReportMetric(r.Engine.MBPerSec, "MB/s")
	if r.Engine.Ops > 0 {
		b.ReportMetric(float64(r.Engine.P50.Microseconds()), "p50-µs")
		b.ReportMetric(float64(r.Engine.P99.Microseconds()), "p99-µs")
		b.ReportMetric(float64(r.Ceiling.P50.Microseconds()), "pebble-p50-µs")
	}
	b.ReportMetric(float64(r.Engine.CPUPerRecord), "cpu-ns/rec")
	b.ReportMetric(float64(r.Ceiling.CPUPerRecord), "pebble-cpu-ns/rec")
	b.ReportMetric(float64(r.Engine.PeakRSS)/(1<<20), "rss-MiB")
	b.ReportMetric(r.Engine.DiskBytesPerRecord, "disk-B/rec")
}

func BenchmarkPutRecords(b *testing.B) {
	for _, sync := range []bool{true, false} {
		name := "sync"
		if !sync {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultAppendConfig()
			cfg.Profile = profile(b)
			cfg.NoSync = !sync
			cfg.Records = scaled(cfg.Records)
			cfg.Rounds = *flagRounds
			if *flagProd > 0 {
				cfg.Producers = *flagProd
			}
			var r Result
			for i := 0; i < b.N; i++ {
				var err error
				if r, err = RunAppend(b.TempDir(), cfg); err != nil {
					b.Fatal(err)
				}
			}
			report(b, r)
		})
	}
}

func BenchmarkPutRecord(b *testing.B) {
	cfg := DefaultPutConfig()
	cfg.Profile = profile(b)
	cfg.Records = scaled(cfg.Records)
	cfg.Rounds = *flagRounds
	var r Result
	for i := 0; i < b.N; i++ {
		var err error
		if r, err = RunPut(b.TempDir(), cfg); err != nil {
			b.Fatal(err)
		}
	}
	report(b, r)
}

func BenchmarkRead(b *testing.B) {
	dir := *flagDir
	if dir == "" {
		dir = b.TempDir() // shared by both sub-benchmarks: one load
	}
	for _, via := range []ReadAPI{ViaGetRecords, ViaIterator} {
		b.Run(via.String(), func(b *testing.B) {
			cfg := DefaultReadConfig()
			cfg.Profile = profile(b)
			cfg.Via = via
			cfg.Records = scaled(cfg.Records)
			cfg.Rounds = *flagRounds
			var r Result
			for i := 0; i < b.N; i++ {
				var err error
				if r, err = RunRead(dir, cfg); err != nil {
					b.Fatal(err)
				}
			}
			report(b, r)
		})
	}
}

func BenchmarkTail(b *testing.B) {
	for _, sync := range []bool{true, false} {
		name := "sync"
		if !sync {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultTailConfig()
			cfg.Profile = profile(b)
			cfg.NoSync = !sync
			cfg.Records = scaled(cfg.Records)
			cfg.Rounds = *flagRounds
			var r Result
			for i := 0; i < b.N; i++ {
				var err error
				if r, err = RunTail(b.TempDir(), cfg); err != nil {
					b.Fatal(err)
				}
			}
			report(b, r)
		})
	}
}

// BenchmarkReadWarm reads one shard of 200,000 records (scaled by
// -bench.scale) again and again with a warm block cache, each read path
// of the engine beside its raw-Pebble ceiling (the code RunRead times),
// and reports the CPU and allocation per record. Unlike BenchmarkRead,
// whose cold full reads on a shared machine move by tens of percent from
// run to run, this resolves a few nanoseconds per record; compare the
// engine's cpu-ns/rec with the pebble one's:
//
//	go test -run '^$' -bench ReadWarm -count 5 ./bench/
func BenchmarkReadWarm(b *testing.B) {
	dir := *flagDir
	if dir == "" {
		dir = b.TempDir()
	}
	cfg := DefaultReadConfig()
	cfg.Profile = profile(b)
	cfg.Shards = 1
	cfg.Records = scaled(200_000)
	ddir := filepath.Join(dir, fmt.Sprintf("read-%d-%d-%d-%s", cfg.Records, cfg.Shards, cfg.RecordSize, ProfileName(cfg.Profile)))
	prog := newProgress(nil, 0)
	defer prog.close()
	ds, err := loadDataset(context.Background(), ddir, &cfg, prog)
	if err != nil {
		b.Fatal(err)
	}
	id := ds.Shards[0]
	var lat latencies
	engineRead := func(via ReadAPI) func(b *testing.B) {
		return func(b *testing.B) {
			db, err := engine.Open(ddir, &engine.Options{Profile: cfg.Profile, NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			read := func() (int64, error) {
				if via == ViaIterator {
					n, _, err := readIterator(context.Background(), db, id, prog)
					return n, err
				}
				lat.all = lat.all[:0]
				n, _, err := readGetRecords(context.Background(), db, id, cfg.Limit, &lat, prog)
				return n, err
			}
			warmRead(b, cfg.Records, read)
		}
	}
	pebbleRead := func(via ReadAPI) func(b *testing.B) {
		return func(b *testing.B) {
			pdb, err := openPebble(ddir, cfg.Profile)
			if err != nil {
				b.Fatal(err)
			}
			defer pdb.Close()
			read := func() (int64, error) {
				if via == ViaIterator {
					n, _, err := scanShard(pdb, ds.StreamID, id)
					return n, err
				}
				var n int64
				for from := uint64(1); ; {
					page, err := readPage(pdb, ds.StreamID, id, from, cfg.Limit)
					if err != nil || len(page) == 0 {
						return n, err
					}
					n += int64(len(page))
					from = page[len(page)-1].Counter + 1
				}
			}
			warmRead(b, cfg.Records, read)
		}
	}
	for _, via := range []ReadAPI{ViaIterator, ViaGetRecords} {
		b.Run(via.String()+"/engine", engineRead(via))
		b.Run(via.String()+"/pebble", pebbleRead(via))
	}
}

// warmRead runs read once to warm the cache, then b.N times, checking it
// reads want records each time, and reports per-record figures.
func warmRead(b *testing.B, want int64, read func() (int64, error)) {
	b.Helper()
	if n, err := read(); err != nil || n != want {
		b.Fatalf("read %d records (want %d): %v", n, want, err)
	}
	b.ReportAllocs()
	cpu0 := procstat.CPU()
	var n int64
	for b.Loop() {
		got, err := read()
		if err != nil || got != want {
			b.Fatalf("read %d records (want %d): %v", got, want, err)
		}
		n += got
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/rec")
	b.ReportMetric(float64(procstat.CPU()-cpu0)/float64(n), "cpu-ns/rec")
}
