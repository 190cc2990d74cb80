package iterator_test

import (
	"testing"

	"github.com/kvstream/kvstream/iterator"
)

// BenchmarkGatedReaders reads one shard of 100,000 records (in Pebble's
// memtable) with one gated Iterator per goroutine, GOMAXPROCS goroutines
// at once: the cost of the read gate when readers on different cores
// pass it for every record. ns/op is per record read.
//
//	go test -run '^$' -bench GatedReaders -cpu 1,2 ./iterator/
func BenchmarkGatedReaders(b *testing.B) {
	const records = 100_000
	pdb, l := gateDB(b, records)
	defer pdb.Close()
	var g iterator.Gate
	defer g.Close(errGateClosed)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var it *iterator.Iterator
		for pb.Next() {
			if it == nil || !it.Next() {
				if it != nil {
					if err := it.Close(); err != nil {
						b.Error(err)
						return
					}
				}
				it = g.New(pdb, l, 1, nil)
				if !it.Next() {
					b.Error("no record")
					return
				}
			}
			_ = it.Record()
		}
		if it != nil {
			_ = it.Close()
		}
	})
}
