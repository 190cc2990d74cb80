package engine

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
)

// Invariant 8: a sequence number, once returned, never names a different
// record, in any durability mode and after any crash or lost WAL tail.
//
// Records, their counters and the catalog all live in Pebble, so a lost
// WAL tail (a NoSync crash, a WAL damaged on disk) takes the evidence of
// the lost counters with it. The sequence file keeps that evidence outside
// Pebble, in a small file in the data directory, replaced atomically
// (write, fsync, rename, fsync the directory):
//
//   - the ceiling: every counter handed out in any shard is below it. Open
//     raises it a block (seqBlock counters) above the counters in use
//     before any write, and the Writer raises it again, durably, before a
//     batch would reach it — once per 2^32 records of the busiest shard,
//     so it costs nothing measurable.
//   - whether the last session ended with Close ("clean").
//   - per shard, a high-water mark: a counter known durable when the file
//     was written. Close writes the exact last counters; in fsync'd mode
//     the engine also writes the marks about once a second while records
//     arrive.
//
// At open, a shard whose recovered records end below its high-water mark
// lost acknowledged records: that is reported (log, DB.Recovery) and the
// shard continues above the mark. After an unclean shutdown every shard
// continues at the old ceiling or above, whatever was lost or not, because
// a lost tail can be undetectable (the last records, before the next mark).
// So counters are unique, strictly increasing per shard and gap-free
// within a session; a restart after a crash leaves a gap. Durable-consumer
// checkpoints beyond a shard's recovered end are reported too, and the
// shard continues above them.
const (
	seqFileName = "KVSTREAM-SEQ"
	seqFileNew  = "KVSTREAM-SEQ-NEW"
	seqMagic    = "KVSQ"
	seqVersion  = 1
	seqBlock    = 1 << 32
	seqFlagDone = 1 // the session ended with Close
)

type shardKey struct{ stream, shard uint32 }

// seqState is the content of the sequence file.
type seqState struct {
	clean   bool
	ceiling uint64
	high    map[shardKey]uint64
}

func (st *seqState) encode() []byte {
	keys := slices.SortedFunc(maps.Keys(st.high), func(a, b shardKey) int {
		return cmp.Or(cmp.Compare(a.stream, b.stream), cmp.Compare(a.shard, b.shard))
	})
	b := make([]byte, 0, 22+16*len(keys))
	b = append(b, seqMagic...)
	b = append(b, seqVersion, 0)
	if st.clean {
		b[5] = seqFlagDone
	}
	b = binary.BigEndian.AppendUint64(b, st.ceiling)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, k.stream)
		b = binary.BigEndian.AppendUint32(b, k.shard)
		b = binary.BigEndian.AppendUint64(b, st.high[k])
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func decodeSeqState(b []byte) (seqState, error) {
	if len(b) < 22 || string(b[:4]) != seqMagic {
		return seqState{}, errors.New("not a sequence file")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return seqState{}, errors.New("checksum mismatch")
	}
	if b[4] != seqVersion {
		return seqState{}, fmt.Errorf("version %d, want %d", b[4], seqVersion)
	}
	st := seqState{clean: b[5]&seqFlagDone != 0, ceiling: binary.BigEndian.Uint64(b[6:]), high: map[shardKey]uint64{}}
	n := binary.BigEndian.Uint32(b[14:])
	rest := body[18:]
	if uint64(len(rest)) != 16*uint64(n) {
		return seqState{}, fmt.Errorf("%d bytes for %d shards", len(rest), n)
	}
	for i := 0; i < len(rest); i += 16 {
		k := shardKey{binary.BigEndian.Uint32(rest[i:]), binary.BigEndian.Uint32(rest[i+4:])}
		st.high[k] = binary.BigEndian.Uint64(rest[i+8:])
	}
	return st, nil
}

// seqFile reads and replaces the sequence file. Its methods are safe for
// concurrent use; st is what the file holds.
type seqFile struct {
	fs  vfs.FS
	dir string
	mu  sync.Mutex
	st  seqState
}

// read returns the file's state; found is false if there is no file.
func (f *seqFile) read() (st seqState, found bool, err error) {
	file, err := f.fs.Open(f.fs.PathJoin(f.dir, seqFileName))
	if errors.Is(err, os.ErrNotExist) {
		return seqState{}, false, nil
	}
	if err != nil {
		return seqState{}, false, err
	}
	defer file.Close()
	b, err := io.ReadAll(io.LimitReader(file, 64<<20))
	if err != nil {
		return seqState{}, true, err
	}
	st, err = decodeSeqState(b)
	return st, true, err
}

// writeLocked replaces the file with st, durably. The caller holds f.mu.
func (f *seqFile) writeLocked(st seqState) error {
	tmp, path := f.fs.PathJoin(f.dir, seqFileNew), f.fs.PathJoin(f.dir, seqFileName)
	file, err := f.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = file.Write(st.encode())
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.fs.Rename(tmp, path)
	}
	if err == nil {
		var d vfs.File
		if d, err = f.fs.OpenDir(f.dir); err == nil {
			err = d.Sync()
			if cerr := d.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f.st = st
	return nil
}

// raise durably raises the ceiling to at least min plus a block; it is
// the Writer's Raise and takes no engine lock.
func (f *seqFile) raise(min uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.ceiling = ceilingAbove(max(st.ceiling, min))
	if err := f.writeLocked(st); err != nil {
		return 0, err
	}
	return st.ceiling, nil
}

// save durably records the high-water marks (and whether the session
// ended cleanly), keeping the ceiling. It skips the write when nothing
// changed.
func (f *seqFile) save(high map[shardKey]uint64, clean bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st.clean == clean && maps.Equal(f.st.high, high) {
		return nil
	}
	st := f.st
	st.clean, st.high = clean, high
	return f.writeLocked(st)
}

// ceilingAbove returns c plus a block, capped below MaxCounter.
func ceilingAbove(c uint64) uint64 {
	if c >= shard.MaxCounter-seqBlock {
		return shard.MaxCounter
	}
	return c + seqBlock
}

// RecoveryReport is what Open found about the end of the previous session
// (DB.Recovery). Every problem in it was also logged through
// Options.Logger when the DB opened.
type RecoveryReport struct {
	// Clean reports whether the previous session ended with Close. After
	// an unclean end (a crash, kill -9, a fatal failure, a power loss)
	// every shard's counters continue above every counter handed out
	// before, so the next sequence numbers leave a gap.
	Clean bool
	// SequenceFile describes a problem with the sequence file (missing in
	// a data directory that holds data, or damaged), "" if none. Counters
	// then continue a block above the highest recovered one, which is
	// unique unless more than 2^32 counters of a shard were lost.
	SequenceFile string
	// Lost lists the shards whose recovered records end below a counter
	// that was known durable: acknowledged records were lost (a damaged or
	// truncated WAL, a disk that lied about fsync). Detection covers what
	// was durable when the sequence file was last written: at Close,
	// and about every second while fsync'd records arrive.
	Lost []LostRange
	// LostRecords is the number of counters in Lost: records that were
	// acknowledged and are gone (records of the range that retention had
	// removed before the loss count too).
	LostRecords int64
	// ConsumerGaps lists durable-consumer checkpoints that lay beyond
	// their shard's recovered end: those consumers resume at the shard's
	// next record.
	ConsumerGaps []ConsumerGap
}

// LostRange is a run of lost counters of one shard.
type LostRange struct {
	Stream  string
	ShardID ShardID
	// First and Last are the first and last lost counters
	// (SequenceNumber.Counter).
	First, Last uint64
}

// ConsumerGap is a durable consumer whose checkpoint lay beyond the
// recovered end of a shard.
type ConsumerGap struct {
	Stream, Consumer string
	ShardID          ShardID
	// Checkpoint is the checkpointed counter; RecoveredEnd is the shard's
	// last recovered counter.
	Checkpoint, RecoveredEnd uint64
}

// Recovery returns what Open found about the end of the previous
// session: whether it was clean, and any lost records or consumer gaps.
func (db *DB) Recovery() RecoveryReport {
	r := db.recovery
	r.Lost = slices.Clone(r.Lost)
	r.ConsumerGaps = slices.Clone(r.ConsumerGaps)
	return r
}

// recoverSequences runs at open, after load and before the Writer starts:
// it reads the sequence file, reports lost records and consumer gaps,
// sets every shard's next counter so that no counter is ever issued twice,
// and writes the file back (unclean, with a fresh ceiling) before any
// write can happen. It returns the ceiling for the Writer.
func (db *DB) recoverSequences(fresh bool) (uint64, error) {
	f := db.seq
	st, found, err := f.read()
	rep := &db.recovery
	log := db.opts.Logger
	switch {
	case err != nil:
		rep.SequenceFile = fmt.Sprintf("sequence file %s is damaged (%v)", f.fs.PathJoin(f.dir, seqFileName), err)
	case !found && !fresh:
		rep.SequenceFile = fmt.Sprintf("sequence file %s is missing", f.fs.PathJoin(f.dir, seqFileName))
	}
	known := err == nil && found
	if rep.SequenceFile != "" {
		log.Error("kvstream: "+rep.SequenceFile+"; counters continue a block above the highest recovered one", "dir", db.dir)
	}
	rep.Clean = known && st.clean || fresh

	checkpoints, err := db.checkpointsByShard()
	if err != nil {
		return 0, err
	}
	var top uint64
	high := map[shardKey]uint64{}
	for _, s := range db.mu.streams {
		for id, l := range s.logs {
			k := shardKey{s.id, uint32(id)}
			end := l.Published()
			next := end + 1
			if hw := st.high[k]; hw > end {
				rep.Lost = append(rep.Lost, LostRange{Stream: s.meta.Name, ShardID: id, First: end + 1, Last: hw})
				rep.LostRecords += int64(hw - end)
				log.Error("kvstream: acknowledged records are lost: the shard's records end before a counter known durable (damaged or truncated WAL?)",
					"dir", db.dir, "stream", s.meta.Name, "shard", id.String(), "recovered_end", end, "durable_mark", hw, "lost", hw-end)
				next = hw + 1
			}
			if known && !st.clean {
				next = max(next, st.ceiling)
			}
			for _, cp := range checkpoints[k] {
				if cp.counter > end {
					rep.ConsumerGaps = append(rep.ConsumerGaps, ConsumerGap{Stream: s.meta.Name, Consumer: cp.consumer, ShardID: id, Checkpoint: cp.counter, RecoveredEnd: end})
					log.Warn("kvstream: a durable consumer's checkpoint lies beyond the shard's recovered end; it resumes at the next record",
						"dir", db.dir, "stream", s.meta.Name, "consumer", cp.consumer, "shard", id.String(), "checkpoint", cp.counter, "recovered_end", end)
					next = max(next, cp.counter+1)
				}
			}
			l.ContinueAt(next)
			top = max(top, l.Next())
			if end > 0 {
				high[k] = end
			}
		}
	}
	slices.SortFunc(rep.Lost, func(a, b LostRange) int {
		return cmp.Or(cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.ShardID, b.ShardID))
	})
	slices.SortFunc(rep.ConsumerGaps, func(a, b ConsumerGap) int {
		return cmp.Or(cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.Consumer, b.Consumer), cmp.Compare(a.ShardID, b.ShardID))
	})
	if !known && !fresh {
		for _, s := range db.mu.streams {
			for _, l := range s.logs {
				l.ContinueAt(ceilingAbove(top))
			}
		}
		top = ceilingAbove(top)
	}
	if !rep.Clean && rep.SequenceFile == "" {
		log.Warn("kvstream: the previous session did not end with Close; counters continue above every counter handed out before", "dir", db.dir)
	}
	next := seqState{ceiling: max(st.ceiling, ceilingAbove(top)), high: high}
	if db.opts.ReadOnly {
		return next.ceiling, nil // a read-only DB hands out no counters and writes nothing
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writeLocked(next); err != nil {
		return 0, &shard.Error{Kind: shard.ErrWriteFailed, Msg: "open " + db.dir, Cause: err}
	}
	return next.ceiling, nil
}

type checkpointAt struct {
	consumer string
	counter  uint64
}

// checkpointsByShard returns every durable-consumer checkpoint by shard.
func (db *DB) checkpointsByShard() (map[shardKey][]checkpointAt, error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{shard.PrefixConsumers}, UpperBound: []byte{shard.PrefixConsumers + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[shardKey][]checkpointAt{}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < 1+4+1+4 {
			continue
		}
		rest := k[5:]
		i := bytes.IndexByte(rest, 0)
		if i < 0 || len(rest)-i-1 != 4 {
			continue // a consumer's own entry
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		if len(v) != 8 {
			continue
		}
		sk := shardKey{binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint32(rest[i+1:])}
		out[sk] = append(out[sk], checkpointAt{consumer: string(rest[:i]), counter: binary.BigEndian.Uint64(v)})
	}
	return out, it.Error()
}

// highWater returns every shard's last visible counter: in fsync'd mode,
// a counter known durable.
func (db *DB) highWater() map[shardKey]uint64 {
	db.mu.RLock()
	streams := make([]*stream, 0, len(db.mu.streams))
	for _, s := range db.mu.streams {
		streams = append(streams, s)
	}
	db.mu.RUnlock()
	high := map[shardKey]uint64{}
	for _, s := range streams {
		s.mu.RLock()
		if !s.deleted {
			for id, l := range s.logs {
				if p := l.Published(); p > 0 {
					high[shardKey{s.id, uint32(id)}] = p
				}
			}
		}
		s.mu.RUnlock()
	}
	return high
}

// saveHighWater writes the high-water marks to the sequence file if they
// changed (fsync'd mode only: NoSync records are not durable when visible).
func (db *DB) saveHighWater() error {
	if db.opts.NoSync || db.fail.fuse.Err() != nil {
		return nil
	}
	return db.seq.save(db.highWater(), false)
}
