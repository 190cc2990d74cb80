package engine

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
)

// FormatVersion is the on-disk format this build writes and reads.
const FormatVersion = 1

const (
	metaFormat     = "format"
	metaSecret     = "secret"
	metaNextStream = "next-stream-id"
	metaLastSecs   = "last-shard-secs"
)

// DB is an open data directory. All methods are safe for concurrent use.
// Close it exactly once; calls after Close return ErrClosed.
type DB struct {
	opts   *Options
	dir    string
	pdb    *pebble.DB
	writer *shard.Writer
	tokens *iterator.Codec
	fail   *failStop // fail-stop state (failstop.go)
	seq    *seqFile  // sequence-number ceiling and marks (seqfile.go)
	// recovery is what Open found; read-only after Open.
	recovery RecoveryReport
	// openMarks are the sequence file's exact last counters when the
	// previous session ended with Close (nil otherwise); set only while
	// Open loads the catalog (loadShard).
	openMarks map[shardKey]uint64
	// gate ends reads and writes at Close: every use of Pebble but the
	// Writer's runs inside it (enterRead, enterWrite), and iterators
	// handed to callers are made by it (iterator.Gate). It comes before
	// every lock in the lock order.
	gate iterator.Gate

	closed atomic.Bool

	// Locks. The order is gate (entered, see enterWrite), trimMu,
	// createMu, stream.ctl, stream.mu, db.mu, Consumer.mu: a goroutine
	// holding one may take only those after it.
	// Readers (DescribeStream, ListStreams, ListShards, GetShardIterator,
	// GetRecords, iterators, attributes, a durable consumer's reads) take
	// no stream lock at all (they read the stream's published view,
	// view.go) and db.mu only shared and briefly; db.mu is never held
	// across a commit or a wait, and no lock is held while a put waits for
	// throughput. So no reader ever waits for an fsync. The locks held
	// across an fsync'd commit are taken by writers only: stream.ctl
	// (control-plane changes of one stream), createMu (only CreateStream
	// takes it), trimMu (only trims), a stream's mu shared by its puts
	// (and durable consumer checkpoints), and exclusively by a reshard
	// across its commit, so no record lands in a shard being closed; a
	// reshard's fsync is the one a stream's puts wait for.
	trimMu   sync.Mutex // serializes trims (see trimStream)
	createMu sync.Mutex // serializes CreateStream, so ids persist in order

	// mu guards the stream maps and the id/time allocators.
	mu struct {
		sync.RWMutex
		streams    map[string]*stream
		byID       map[uint32]*stream
		nextStream uint32
		lastSecs   uint64
		// pendingShards counts the shards of streams being created.
		pendingShards int
	}

	bg background

	disk   *diskMonitor   // nil when free space is not checked
	events *storageEvents // Pebble's events, for Health and StorageStats
}

// stream is the in-memory state of one stream.
type stream struct {
	// ctl serializes the stream's control-plane changes (changeMeta,
	// DeleteStream) and is held across their commits; no reader and no
	// put takes it.
	ctl sync.Mutex
	// mu is held shared by puts from routing until their commit returns,
	// and exclusively by reshards across their commit (so no record lands
	// in a shard after it closes) and briefly by other changes to install
	// their result. Lock order: see DB.
	mu      sync.RWMutex
	meta    *streamMeta                  // guarded by mu
	logs    map[shard.ShardID]*shard.Log // every shard with data; guarded by mu
	open    []*shard.Log                 // open shards sorted by range start; guarded by mu
	ranges  []shard.HashRange            // ranges of open, same order
	deleted bool                         // written under ctl and mu; read under either

	id          uint32
	retentionMs atomic.Int64
	floorMs     atomic.Int64 // meta.FloorMs
	// maxRecordBytes is the stream's effective record limit
	// (meta.MaxRecordBytes, or Options.MaxRecordBytes when that is 0).
	maxRecordBytes atomic.Int64
	// nOpen is len(open), readable without mu (shard-quota counts run
	// under db.mu, which must not wait for a stream lock).
	nOpen atomic.Int32
	// view is the stream's state for readers, who take no lock (view.go).
	view atomic.Pointer[streamView]
}

// Open opens (creating if needed) the data directory dir. A second Open
// of a directory that is already open, in this process or another one,
// fails with ErrLocked. Open refuses to initialise a non-empty directory
// that is not a kvstream data directory (ErrNotDataDir); OS failures are
// ErrStorage and damaged data is ErrCorruption (see open.go for the
// rules). With Options.ReadOnly it writes nothing.
func Open(dir string, opts *Options) (*DB, error) {
	o := opts.Clone().EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	fail := newFailStop(dir, o)
	var disk *diskMonitor
	if !o.ReadOnly { // a read-only open creates no ballast and refuses puts anyway
		disk = newDiskMonitor(o, dir)
	}
	events := newStorageEvents(o, disk)
	pdb, err := openPebble(dir, o, false, fail, events)
	if err != nil {
		return nil, err
	}
	// From here on a failed WAL write or fsync is fatal (failstop.go).
	fail.armed.Store(true)
	db := &DB{opts: o, dir: dir, pdb: pdb, fail: fail, seq: &seqFile{fs: o.FS, dir: dir}, disk: disk, events: events}
	db.mu.streams = make(map[string]*stream)
	db.mu.byID = make(map[uint32]*stream)
	db.openMarks = db.seq.cleanMarks()
	fresh, err := db.load()
	db.openMarks = nil
	var ceiling uint64
	if err == nil {
		ceiling, err = db.recoverSequences(fresh)
	}
	if err != nil {
		if fail.fuse.Err() == nil { // a failed Pebble cannot close
			_ = pdb.Close()
		}
		return nil, loadError(dir, err)
	}
	db.writer = shard.NewWriter(pdb, shard.WriterConfig{Sync: !o.NoSync, Now: o.nowMs, Fuse: fail.fuse, Ceiling: ceiling, Raise: db.seq.raise})
	if !o.ReadOnly {
		db.bg.start(db)
		if err := db.startStorage(); err != nil {
			db.bg.stop()
			db.writer.Close()
			_ = pdb.Close()
			return nil, err
		}
	}
	return db, nil
}

// load reads the format version, secret and catalog, and recovers every
// shard's last counter. fresh reports a new data directory.
func (db *DB) load() (fresh bool, err error) {
	v, err := db.get(shard.MetaKey(metaFormat))
	if err != nil {
		return false, err
	}
	if v != nil {
		return false, db.loadExisting(v)
	}
	if err := db.checkNewDir(); err != nil {
		return true, err
	}
	// A new directory: write the format version and a fresh secret.
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return true, err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(shard.MetaKey(metaFormat), binary.BigEndian.AppendUint32(nil, FormatVersion), nil)
	_ = b.Set(shard.MetaKey(metaSecret), secret, nil)
	if err := db.fail.fuse.Commit(db.pdb, b, pebble.Sync); err != nil {
		return true, err
	}
	db.tokens = iterator.NewCodec(secret, db.opts.IteratorTTL)
	db.mu.nextStream = 1
	return true, nil
}

// loadExisting loads a data directory whose format version is v.
func (db *DB) loadExisting(v []byte) error {
	if len(v) != 4 {
		return shard.Errorf(shard.ErrCorruption, "data directory %s has a %d-byte format version %x", db.dir, len(v), v)
	}
	if binary.BigEndian.Uint32(v) != FormatVersion {
		return shard.Errorf(shard.ErrFormatVersion, "data directory %s has format version %x; this build reads version %d", db.dir, v, FormatVersion)
	}
	secret, err := db.get(shard.MetaKey(metaSecret))
	if err != nil {
		return err
	}
	if len(secret) != 32 {
		return shard.Errorf(shard.ErrCorruption, "data directory %s has no iterator secret", db.dir)
	}
	db.tokens = iterator.NewCodec(secret, db.opts.IteratorTTL)
	db.mu.nextStream = 1
	if v, err := db.get(shard.MetaKey(metaNextStream)); err != nil {
		return err
	} else if len(v) == 4 {
		db.mu.nextStream = binary.BigEndian.Uint32(v)
	}
	if v, err := db.get(shard.MetaKey(metaLastSecs)); err != nil {
		return err
	} else if len(v) == 8 {
		db.mu.lastSecs = binary.BigEndian.Uint64(v)
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{shard.PrefixCatalog}, UpperBound: []byte{shard.PrefixCatalog + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	migration := db.pdb.NewBatch()
	defer migration.Close()
	for ok := it.First(); ok; ok = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		m, err := decodeStreamMeta(val)
		if err != nil {
			return err
		}
		if _, err := db.migrateLegacy(migration, m); err != nil {
			return err
		}
		s, err := db.newStreamState(m)
		if err != nil {
			return err
		}
		db.mu.streams[m.Name] = s
		db.mu.byID[m.ID] = s
	}
	if err := it.Error(); err != nil {
		return err
	}
	if migration.Empty() || db.opts.ReadOnly {
		return nil
	}
	return db.fail.fuse.Commit(db.pdb, migration, pebble.Sync)
}

// newStreamState builds the in-memory state of m, recovering each shard's
// last counter with one bounded seek.
func (db *DB) newStreamState(m *streamMeta) (*stream, error) {
	s := &stream{meta: m, id: m.ID, logs: make(map[shard.ShardID]*shard.Log, len(m.Shards))}
	s.retentionMs.Store(m.RetentionMs)
	s.floorMs.Store(m.FloorMs)
	s.maxRecordBytes.Store(int64(db.recordLimit(m)))
	states, err := db.loadShardStates(m.ID)
	if err != nil {
		return nil, err
	}
	ids := make([]shard.ShardID, len(m.Shards))
	for i, sm := range m.Shards {
		ids[i] = sm.ID
	}
	loaded, err := db.loadShards(m.ID, ids, states)
	if err != nil {
		return nil, err
	}
	for i, sm := range m.Shards {
		ls := &loaded[i]
		last := ls.last
		if sm.Closed && sm.EndCounter > last {
			last = sm.EndCounter
		}
		trim := states[sm.ID].trim
		if trim > last+1 {
			// Every record was trimmed: counters continue after the
			// trim point, never restart.
			last = trim - 1
		}
		l := shard.NewLog(m.ID, sm.ID, sm.Created, last, ls.arrival, trim)
		l.StreamName = m.Name
		l.SetStats(ls.bytes, ls.records, min(ls.through, last))
		if sm.Closed {
			l.Close()
		}
		s.logs[sm.ID] = l
	}
	s.rebuildRoutingLocked()
	s.installThrottlesLocked(db.opts.Clock(), false)
	s.publishLocked()
	return s, nil
}

// installThrottlesLocked gives shards token buckets for the stream's
// limits: every shard when all is set (the limits changed), otherwise only
// shards that have none yet (new children). The caller holds s.mu.
func (s *stream) installThrottlesLocked(now time.Time, all bool) {
	for _, l := range s.logs {
		if all || l.Throttle() == nil {
			l.SetThrottle(shard.NewThrottle(s.meta.Limits.shardLimits(), now))
		}
	}
}

// bytes returns the stream's stored record bytes.
func (s *stream) bytes() int64 {
	var n int64
	for _, l := range s.logs {
		n += l.Bytes.Load()
	}
	return n
}

// syncLogsLocked makes the shard logs follow s.meta after a committed
// catalog change: logs of new shards are created, logs of shards that left
// the catalog are dropped, and routing is rebuilt. It returns the logs of
// closed shards still open, for the caller to close (no append can
// follow: the caller holds s.mu exclusively) once it has published the
// view: a reader woken by the close must find the shard's children.
func (s *stream) syncLogsLocked() (closing []*shard.Log) {
	keep := make(map[shard.ShardID]bool, len(s.meta.Shards))
	for _, sm := range s.meta.Shards {
		keep[sm.ID] = true
		l := s.logs[sm.ID]
		if l == nil {
			l = shard.NewLog(s.id, sm.ID, sm.Created, 0, 0, 0)
			l.StreamName = s.meta.Name
			s.logs[sm.ID] = l
		}
		if sm.Closed && !l.IsClosed() {
			closing = append(closing, l)
		}
	}
	for id := range s.logs {
		if !keep[id] {
			delete(s.logs, id)
		}
	}
	s.rebuildRoutingLocked()
	return closing
}

// rebuildRoutingLocked recomputes the sorted open-shard table from meta.
func (s *stream) rebuildRoutingLocked() {
	s.open = s.open[:0]
	s.ranges = s.ranges[:0]
	idx := make([]int, 0, len(s.meta.Shards))
	for i, sm := range s.meta.Shards {
		if !sm.Closed {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		return s.meta.Shards[a].Range.Start.Cmp(s.meta.Shards[b].Range.Start)
	})
	for _, i := range idx {
		sm := s.meta.Shards[i]
		s.open = append(s.open, s.logs[sm.ID])
		s.ranges = append(s.ranges, sm.Range)
	}
	s.nOpen.Store(int32(len(s.open)))
}

// route returns the open shard whose range contains h. The caller holds
// s.mu (shared is enough). Open ranges tile the whole space.
func (s *stream) route(h shard.HashKey) *shard.Log {
	// The last open range whose start is ≤ h; the ranges are sorted and
	// tile the space, so that range contains h. This runs once per record.
	// A stream's ranges are usually CreateStream's (or UpdateShardCount's)
	// equal split, where that range is h.Hi·n/2^64 or the next one: try
	// those first, checked, then search (a lookup instead of log2(n)
	// unpredictable branches, which showed at 2048 shards).
	n := len(s.ranges)
	g, _ := bits.Mul64(h.Hi, uint64(n))
	for j := int(g); j <= int(g)+1 && j < n; j++ {
		if hashLE(s.ranges[j].Start, h) && (j == n-1 || !hashLE(s.ranges[j+1].Start, h)) {
			return s.open[j]
		}
	}
	lo, hi := 0, n-1
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if hashLE(s.ranges[mid].Start, h) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return s.open[lo]
}

// hashLE reports whether a ≤ b.
func hashLE(a, b shard.HashKey) bool { return a.Hi < b.Hi || (a.Hi == b.Hi && a.Lo <= b.Lo) }

func (db *DB) get(key []byte) ([]byte, error) {
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	return out, closer.Close()
}

func (db *DB) writeOpts() *pebble.WriteOptions {
	if db.opts.NoSync {
		return pebble.NoSync
	}
	return pebble.Sync
}

// check returns ErrClosed after Close, and the failure (wrapping
// ErrFailed) after a fatal storage failure.
func (db *DB) check() error {
	if err := db.fail.fuse.Err(); err != nil {
		return err
	}
	if db.closed.Load() {
		return shard.Errorf(shard.ErrClosed, "the DB is closed")
	}
	return nil
}

// enterRead starts a read of Pebble, returning the function that ends it,
// or ErrClosed during or after Close (which waits for reads in flight).
// A read must not start another one (see iterator.Gate).
func (db *DB) enterRead() (func(), error) {
	if ok, err := db.gate.Enter(); !ok {
		return nil, err
	}
	return db.gate.Leave, nil
}

// enterWrite starts a write that uses Pebble directly (a catalog change,
// a checkpoint, a trim: everything but puts, which commit through the
// Writer, whose Close ends them with ErrClosed), returning the function
// that ends it, or ErrClosed during or after Close, which waits for the
// writes in flight. It is the read gate (enterRead): a write enters it
// before taking any engine lock (so a lock holder never waits for the
// gate) and never enters it twice.
func (db *DB) enterWrite() (func(), error) { return db.enterRead() }

// Close stops background work, waits for in-flight puts, writes and
// reads, records in the sequence file that the session ended cleanly, and
// closes the data directory. Reads and writes racing it or after it, and
// iterators still open, fail with ErrClosed (never with a Pebble error or
// a panic). With NoSync it first flushes the memtables, so every
// acknowledged put is durable; with the default durability every
// acknowledged put already is. After a fatal failure (Options.OnFatal) it
// returns the failure and leaves Pebble alone: the directory stays locked
// until the process exits.
func (db *DB) Close() error {
	if !db.closed.CompareAndSwap(false, true) {
		return shard.Errorf(shard.ErrClosed, "the DB is already closed")
	}
	db.bg.stop()
	db.writer.Close()
	db.disk.close()
	// Collect under db.mu, release it, then take each stream's lock
	// (lock order: see DB).
	db.mu.RLock()
	streams := make([]*stream, 0, len(db.mu.streams))
	for _, s := range db.mu.streams {
		streams = append(streams, s)
	}
	db.mu.RUnlock()
	// The Writer has stopped (unless the DB failed): bring every shard's
	// persisted counts up to date, so the next Open reads no records to
	// count them (it would if this did not happen, e.g. after a crash).
	// Not fsync'd: a lost update costs the next Open that reading only.
	saveStats := !db.opts.ReadOnly && db.fail.fuse.Err() == nil
	var statsErr error
	for _, s := range streams {
		s.mu.Lock()
		if saveStats && !s.deleted {
			b := db.pdb.NewBatch()
			n := 0
			for _, l := range s.logs {
				if l.AppendStats(b) {
					n++
				}
			}
			if n > 0 {
				statsErr = errors.Join(statsErr, db.writer.CommitBatch(b, pebble.NoSync))
			}
			_ = b.Close()
		}
		for _, l := range s.logs {
			l.Close() // wake tail readers
		}
		s.mu.Unlock()
	}
	// Wait for reads in flight; later reads, and iterators still open,
	// get ErrClosed.
	gerr := db.gate.Close(shard.Errorf(shard.ErrClosed, "the DB is closed"))
	if err := db.fail.fuse.Err(); err != nil {
		return err
	}
	if db.opts.ReadOnly {
		return errors.Join(gerr, db.pdb.Close()) // nothing was written; the sequence file stays as it was
	}
	err := statsErr
	if err == nil && db.opts.NoSync {
		err = db.pdb.Flush()
	}
	if err == nil {
		// Every counter handed out is now durable: the exact marks let
		// the next Open detect any record lost while the DB is closed. The
		// file is written while the directory lock is still held.
		err = db.seq.save(db.highWater(), true)
	}
	return errors.Join(gerr, err, db.pdb.Close())
}

// Options returns a copy of the options the DB was opened with, defaults
// filled in.
func (db *DB) Options() Options { return *db.opts }

// Dir returns the data directory.
func (db *DB) Dir() string { return db.dir }

// streamByName returns the named stream or ErrStreamNotFound.
func (db *DB) streamByName(name string) (*stream, error) {
	if err := db.check(); err != nil {
		return nil, err
	}
	db.mu.RLock()
	s := db.mu.streams[name]
	db.mu.RUnlock()
	if s == nil {
		return nil, notFound(name)
	}
	return s, nil
}
