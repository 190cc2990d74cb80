package engine

import (
	"sync"
)

// background owns the engine's goroutines: Open starts them, Close stops
// them with a quit channel and a WaitGroup.
type background struct {
	quit chan struct{}
	wg   sync.WaitGroup
}

func (b *background) start(db *DB) {
	b.quit = make(chan struct{})
}

func (b *background) stop() {
	if b.quit != nil {
		close(b.quit)
	}
	b.wg.Wait()
}
