package bench

import (
	"flag"
	"testing"
)

var (
	flagScale  = flag.Float64("bench.scale", 1, "multiply every benchmark's record count by this")
	flagRounds = flag.Int("bench.rounds", 1, "rounds per side (best round reported)")
	flagProd   = flag.Int("bench.producers", 0, "override producers")
	flagDir    = flag.String("bench.dir", "", "keep read data sets in this directory across runs (default: a temporary directory)")
)

func BenchmarkPutRecords(b *testing.B) {
	for _, sync := range []bool{true, false} {
		name := "sync"
		if !sync {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultAppendConfig()
			cfg.NoSync = !sync
			cfg.Records = int64(float64(cfg.Records) * *flagScale)
			cfg.Rounds = *flagRounds
			if *flagProd > 0 {
				cfg.Producers = *flagProd
			}
			var r Result
			for i := 0; i < b.N; i++ {
				var err error
				r, err = RunAppend(b.TempDir(), cfg)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.Log(r)
			b.ReportMetric(r.Ratio, "ratio")
		})
	}
}

func BenchmarkPutRecord(b *testing.B) {
	cfg := DefaultPutConfig()
	cfg.Records = int64(float64(cfg.Records) * *flagScale)
	cfg.Rounds = *flagRounds
	var r Result
	for i := 0; i < b.N; i++ {
		var err error
		r, err = RunPut(b.TempDir(), cfg)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Log(r)
	b.ReportMetric(r.Ratio, "ratio")
}

func BenchmarkRead(b *testing.B) {
	dir := *flagDir
	if dir == "" {
		dir = b.TempDir()
	}
	for _, via := range []ReadAPI{ViaGetRecords, ViaIterator} {
		b.Run(via.String(), func(b *testing.B) {
			cfg := DefaultReadConfig()
			cfg.Via = via
			cfg.Records = int64(float64(cfg.Records) * *flagScale)
			cfg.Rounds = *flagRounds
			var r Result
			for i := 0; i < b.N; i++ {
				var err error
				r, err = RunRead(dir, cfg)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.Log(r)
			b.ReportMetric(r.Ratio, "ratio")
		})
	}
}
