package server

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Fan-out shares work between the subscriptions of one shard: consumers
// that follow the tail are woken by the same commit and read the same
// records, so the first to encode a run of records publishes it to the
// shard's feed, and the others send those bytes instead of reading and
// encoding the records again. Records are immutable once committed, so an
// encoded run starting at counter c is exactly what any reader at c would
// encode (retention can only have removed records meanwhile, which is
// within Kinesis' approximate retention).

// feedSegments is how many encoded runs a feed keeps, and
// maxFeedSegmentBytes the largest run it keeps: tail reads are small (a
// commit's worth); large runs come from readers catching up, which rarely
// read the same run at the same time.
const (
	feedSegments        = 8
	maxFeedSegmentBytes = 128 << 10
)

// segment is an encoded run of records: counters [first, next).
type segment struct {
	first, next uint64
	data        []byte // eventBuilder records, immutable once published
	n, size     int    // records; data plus partition-key bytes
	last        engine.SequenceNumber
	lastArrival time.Time
}

// feedKey names a shard incarnation (the creation second tells a stream
// recreated under the same name apart) and an encoding.
type feedKey struct {
	stream  string
	shard   engine.ShardID
	created uint64
	codec   codec
}

// feed is one shard's recent encoded runs, shared by its subscriptions.
type feed struct {
	key  feedKey
	refs atomic.Int32 // changed under feeds.mu
	mu   sync.Mutex
	segs [feedSegments]segment
	pos  int
}

// feeds holds the feeds of shards with running subscriptions.
type feeds struct {
	mu sync.Mutex
	m  map[feedKey]*feed
}

// acquire returns the feed of key, creating it; release it when done.
func (fs *feeds) acquire(key feedKey) *feed {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m == nil {
		fs.m = make(map[feedKey]*feed)
	}
	f := fs.m[key]
	if f == nil {
		f = &feed{key: key}
		fs.m[key] = f
	}
	f.refs.Add(1)
	return f
}

func (fs *feeds) release(f *feed) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f.refs.Add(-1) == 0 {
		delete(fs.m, f.key)
	}
}

// shared reports whether other subscriptions read the shard, so that
// publishing a run may save work.
func (f *feed) shared() bool { return f.refs.Load() > 1 }

// lookup returns the run starting at counter first, if the feed has it.
func (f *feed) lookup(first uint64) (segment, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.segs {
		if s := f.segs[i]; s.n > 0 && s.first == first {
			return s, true
		}
	}
	return segment{}, false
}

// publish adds a copy of a run, replacing the oldest one.
func (f *feed) publish(s segment) {
	if s.n == 0 || len(s.data) > maxFeedSegmentBytes {
		return
	}
	s.data = slices.Clone(s.data)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.segs {
		if f.segs[i].n > 0 && f.segs[i].first == s.first {
			return // another subscription got there first
		}
	}
	f.segs[f.pos] = s
	f.pos = (f.pos + 1) % feedSegments
}
