package engine

import (
	"context"
	"sync"
	"time"
)

// background owns the engine's goroutines (the trimmer, the high-water
// recorder): Open starts
// them, Close stops them with a quit channel and a WaitGroup.
type background struct {
	quit   chan struct{}
	kickCh chan struct{} // buffered 1: "a stream may be over MaxBytes"
	wg     sync.WaitGroup
}

func (b *background) start(db *DB) {
	b.quit = make(chan struct{})
	b.kickCh = make(chan struct{}, 1)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(db.opts.TrimInterval)
		defer t.Stop()
		for {
			select {
			case <-b.quit:
				return
			case <-t.C:
			case <-b.kickCh:
			}
			db.trimAll()
		}
	}()
	if !db.opts.NoSync {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			t := time.NewTicker(highWaterInterval)
			defer t.Stop()
			for {
				select {
				case <-b.quit:
					return
				case <-t.C:
				}
				// A failed write is retried at the next tick; the marks
				// only sharpen loss detection (seqfile.go).
				_ = db.saveHighWater()
			}
		}()
	}
}

// highWaterInterval is how often fsync'd mode records the shards'
// high-water marks in the sequence file (only when they changed).
const highWaterInterval = time.Second

// kick asks the trimmer to run soon; it never blocks.
func (b *background) kick() {
	select {
	case b.kickCh <- struct{}{}:
	default:
	}
}

func (b *background) stop() {
	if b.quit != nil {
		close(b.quit)
	}
	b.wg.Wait()
}

// trimAll trims every stream; errors are left for the next round (a
// failed write is sticky and reported to writers).
func (db *DB) trimAll() {
	db.mu.RLock()
	streams := make([]*stream, 0, len(db.mu.streams))
	for _, s := range db.mu.streams {
		streams = append(streams, s)
	}
	db.mu.RUnlock()
	for _, s := range streams {
		if db.closed.Load() {
			return
		}
		_ = db.trimStream(context.Background(), s)
	}
}
