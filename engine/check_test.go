package engine_test

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/dirtest"
	"github.com/stretchr/testify/require"
)

// fixture is a data directory on disk with data in two sstables and in
// the WAL: stream "a" (3 shards, 4,500 records flushed in session 1;
// shard 0 split in session 2, 100 more records), stream "b" (1 shard,
// 150 records of which the first 100 are trimmed by retention, flushed in
// session 2; 20 more in the WAL only), and a durable consumer.
type fixture struct {
	dir   string
	total int64 // readable records
	clk   *stepClock
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	clk := newStepClock()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	payload := func() []byte {
		b := make([]byte, 100)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	putN := func(db *engine.DB, stream string, n int) {
		for n > 0 {
			k := min(n, 450)
			entries := make([]engine.Entry, k)
			for i := range entries {
				entries[i] = engine.Entry{PartitionKey: "k" + itoa(rng.IntN(1<<20)), Data: payload()}
			}
			res, err := db.PutRecords(ctx, stream, entries)
			require.NoError(t, err)
			for _, r := range res {
				require.NoError(t, r.Err)
			}
			n -= k
		}
	}
	// Session 1: NoSync, so Close flushes the memtable to an sstable.
	// Compactions off, so the two flushes stay two sstables.
	opts := &engine.Options{NoSync: true, Clock: clk.Now, TrimInterval: time.Hour,
		Pebble: &pebble.Options{DisableAutomaticCompactions: true}}
	db, err := engine.Open(dir, opts)
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("a", engine.StreamConfig{ShardCount: 3}))
	putN(db, "a", 4500)
	require.NoError(t, db.Close())

	// Session 2.
	db, err = engine.Open(dir, opts)
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("b", engine.StreamConfig{ShardCount: 1, Retention: time.Minute}))
	putN(db, "b", 100)
	clk.Set(clk.Now().Add(2 * time.Minute))
	putN(db, "b", 50)
	require.NoError(t, db.Trim(ctx, "b"))
	require.NoError(t, db.SplitShard("a", 0, "85070591730234615865843651857942052864"))
	putN(db, "a", 100)
	c, err := db.Consumer("a", "billing", nil)
	require.NoError(t, err)
	recs := shardRecords(t, db, "a", 1)
	require.NoError(t, c.Checkpoint(recs[10]))
	require.NoError(t, db.Close())

	// Session 3: records of "a" only (and their shards' counts).
	db, err = engine.Open(dir, opts)
	require.NoError(t, err)
	putN(db, "a", 200)
	require.NoError(t, db.Close())

	// Session 4: fsync'd puts, not flushed: they live in the WAL.
	db, err = engine.Open(dir, &engine.Options{Clock: clk.Now, TrimInterval: time.Hour, Pebble: opts.Pebble})
	require.NoError(t, err)
	putN(db, "b", 20)
	require.NoError(t, db.Close())
	return fixture{dir: dir, total: 4500 + 100 + 200 + 50 + 20, clk: clk}
}

// ssts returns the paths of the fixture's sstables of records (one per
// session: the engine keeps records in tables of their own), largest
// first (session 1's, with most of stream "a", comes first).
func ssts(t *testing.T, dir string) []string {
	t.Helper()
	m := recordTables(t, dir)
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		return fi.Size()
	}
	slices.SortFunc(m, func(a, b string) int { return int(size(b) - size(a)) })
	require.Len(t, m, 3, "the fixture should have three sstables of records")
	return m
}

// checkUnchanged runs Check and requires it to leave dir exactly as it
// was (names, sizes, modes, times, contents).
func checkUnchanged(t *testing.T, dir string) *engine.CheckReport {
	t.Helper()
	before := dirtest.Hash(t, dir)
	rep, err := engine.Check(dir, nil)
	require.NoError(t, err)
	require.Equal(t, before, dirtest.Hash(t, dir), "Check modified the directory")
	return rep
}

func TestCheckHealthy(t *testing.T) {
	f := newFixture(t)
	// Without a LOCK file, a read-only open has nothing to lock, and must
	// not create one.
	require.NoError(t, os.Remove(filepath.Join(f.dir, "LOCK")))
	rep := checkUnchanged(t, f.dir)
	require.NotContains(t, dirNames(t, f.dir), "LOCK")
	require.True(t, rep.OK(), "problems: %v", rep.Problems)
	require.Empty(t, rep.Warnings)
	require.Equal(t, f.total, rep.Records())
	require.EqualValues(t, engine.FormatVersion, rep.FormatVersion)
	require.GreaterOrEqual(t, rep.SSTables, 2)
	require.Len(t, rep.Streams, 2)
	for _, s := range rep.Streams {
		for _, sh := range s.Shards {
			require.Equal(t, sh.StatsRecords, sh.Records, "%s %s", s.Name, sh.ShardID)
			require.Equal(t, sh.StatsBytes, sh.Bytes, "%s %s", s.Name, sh.ShardID)
			require.Empty(t, sh.Unreadable)
			if sh.Records > 0 {
				require.EqualValues(t, sh.Records, sh.LastCounter-sh.FirstCounter+1)
			}
		}
	}
	b := rep.Streams[slices.IndexFunc(rep.Streams, func(s engine.StreamCheck) bool { return s.Name == "b" })]
	require.EqualValues(t, 101, b.Shards[0].TrimPoint)
	require.EqualValues(t, 101, b.Shards[0].FirstCounter)
	require.EqualValues(t, 170, b.Shards[0].LastCounter, "records in the WAL are checked too")
	a := rep.Streams[slices.IndexFunc(rep.Streams, func(s engine.StreamCheck) bool { return s.Name == "a" })]
	require.True(t, a.Shards[0].Closed)
	require.Equal(t, a.Shards[0].LastCounter, a.Shards[0].EndCounter)

	// The directory still opens and works normally afterwards.
	db := openDB(t, f.dir, nil)
	put(t, db, "a", "k", "after check")
}

// corruptBlock flips bytes in the middle of the sstable's middle data
// block (its checksum no longer matches) and returns the file's name.
func corruptBlock(t *testing.T, path string) {
	t.Helper()
	po := &pebble.Options{}
	po.EnsureDefaults()
	f, err := vfs.Default.Open(path)
	require.NoError(t, err)
	readable, err := sstable.NewSimpleReadable(f)
	require.NoError(t, err)
	r, err := sstable.NewReader(context.Background(), readable, po.MakeReaderOptions())
	require.NoError(t, err)
	l, err := r.Layout()
	require.NoError(t, err)
	require.Greater(t, len(l.Data), 10)
	bh := l.Data[len(l.Data)/2].Handle
	require.NoError(t, r.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := range 4 {
		b[int(bh.Offset+bh.Length/2)+i] ^= 0xa5
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

func TestCheckCorruptBlock(t *testing.T) {
	f := newFixture(t)
	table := ssts(t, f.dir)[0]
	corruptBlock(t, table)
	rep := checkUnchanged(t, f.dir)
	require.False(t, rep.OK())
	require.True(t, slices.ContainsFunc(rep.Problems, func(p engine.CheckProblem) bool {
		return p.Kind == "sstable" && p.File == filepath.Base(table) && strings.Contains(p.Message, "checksum")
	}), "problems: %v", rep.Problems)

	// Exactly one shard lost exactly one range; every other record reads.
	var damaged *engine.ShardCheck
	for si := range rep.Streams {
		for hi := range rep.Streams[si].Shards {
			sh := &rep.Streams[si].Shards[hi]
			if len(sh.Unreadable) == 0 {
				require.Equal(t, sh.StatsRecords, sh.Records, "%s %s", rep.Streams[si].Name, sh.ShardID)
				continue
			}
			require.Nil(t, damaged, "a second damaged shard %s", sh.ShardID)
			require.Equal(t, "a", rep.Streams[si].Name)
			damaged = sh
		}
	}
	require.NotNil(t, damaged)
	require.Len(t, damaged.Unreadable, 1)
	ur := damaged.Unreadable[0]
	require.Greater(t, ur.FromCounter, uint64(1))
	require.GreaterOrEqual(t, ur.ToCounter, ur.FromCounter)
	require.Less(t, ur.ToCounter, damaged.LastCounter)
	require.NotEmpty(t, ur.AfterSequenceNumber)
	require.NotEmpty(t, ur.BeforeSequenceNumber)
	require.Contains(t, ur.Error, "checksum")
	require.Equal(t, damaged.StatsRecords, damaged.Records+int64(ur.ToCounter-ur.FromCounter+1),
		"the readable records and the unreadable range make up the shard")
	require.True(t, slices.ContainsFunc(rep.Problems, func(p engine.CheckProblem) bool {
		return p.Kind == "records" && p.Stream == "a" && p.Shard == damaged.ShardID
	}))

	// The engine opens the directory; reads of the damaged shard stop at
	// the damage with ErrCorruption naming the position; other shards
	// and the rest of the damaged one read normally.
	db := openDB(t, f.dir, &engine.Options{Clock: f.clk.Now})
	id, ok := engine.ParseShardID(damaged.ShardID)
	require.True(t, ok)
	ctx := context.Background()
	tok, err := db.GetShardIterator("a", id, engine.TrimHorizon())
	require.NoError(t, err)
	out, err := db.GetRecords(ctx, tok, 0)
	require.NoError(t, err, "the records before the damage come back first")
	require.Len(t, out.Records, int(ur.FromCounter-1))
	require.Equal(t, ur.AfterSequenceNumber, out.Records[len(out.Records)-1].SequenceNumber.String())
	_, err = db.GetRecords(ctx, out.NextShardIterator, 0)
	require.ErrorIs(t, err, engine.ErrCorruption)
	require.True(t, engine.IsCorruptionError(err))
	var ce *engine.CorruptionError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "a", ce.Stream)
	require.Equal(t, id, ce.Shard)
	require.Equal(t, ur.FromCounter, ce.Counter)
	require.Contains(t, engine.Message(err), "stream a")
	require.Contains(t, engine.Message(err), damaged.ShardID)
	require.Contains(t, engine.Message(err), "damaged")

	it, err := db.Iterate("a", id, engine.TrimHorizon())
	require.NoError(t, err)
	n := 0
	for range it.All() {
		n++
	}
	require.Equal(t, int(ur.FromCounter-1), n)
	require.ErrorAs(t, it.Err(), &ce)
	require.Equal(t, ur.AfterSequenceNumber, ce.After.String())
	require.NoError(t, it.Close())

	// Resuming after the range reads the rest of the shard.
	sn, ok := engine.ParseSequenceNumber(ur.BeforeSequenceNumber)
	require.True(t, ok)
	it, err = db.Iterate("a", id, engine.AtSequenceNumber(sn))
	require.NoError(t, err)
	n = 0
	for range it.All() {
		n++
	}
	require.NoError(t, it.Err())
	require.NoError(t, it.Close())
	require.EqualValues(t, damaged.Records-int64(ur.FromCounter-1), n)

	for _, s := range rep.Streams {
		for _, sh := range s.Shards {
			if sh.ShardID == damaged.ShardID && s.Name == "a" {
				continue
			}
			sid, _ := engine.ParseShardID(sh.ShardID)
			require.Len(t, shardRecords(t, db, s.Name, sid), int(sh.Records-max(0, int64(sh.TrimPoint)-int64(sh.FirstCounter))))
		}
	}
	// Writes go on.
	put(t, db, "a", "k", "after damage")
}

func TestCheckMissingSSTable(t *testing.T) {
	f := newFixture(t)
	tables := ssts(t, f.dir)
	slices.Sort(tables)
	gone := tables[len(tables)-1] // session 3's: records of "a" from shard 1 on
	require.NoError(t, os.Remove(gone))
	rep := checkUnchanged(t, f.dir)
	require.False(t, rep.OK())
	name := filepath.Base(gone)
	require.True(t, slices.ContainsFunc(rep.Problems, func(p engine.CheckProblem) bool {
		return p.Kind == "sstable" && p.File == name && strings.Contains(p.Message, "missing")
	}), "problems: %v", rep.Problems)
	// The catalog survived; shard 0 of "a" (closed before session 3) is
	// below the missing table's keys and reads in full; the shards the
	// table overlaps cannot be read.
	require.Len(t, rep.Streams, 2)
	a := rep.Streams[slices.IndexFunc(rep.Streams, func(s engine.StreamCheck) bool { return s.Name == "a" })]
	require.Empty(t, a.Shards[0].Unreadable)
	require.Positive(t, a.Shards[0].Records)
	require.NotEmpty(t, a.Shards[1].Unreadable, "the missing table's records are listed as unreadable")
	require.EqualValues(t, 1, a.Shards[1].Unreadable[0].FromCounter)
	require.Contains(t, a.Shards[1].Unreadable[0].Error, "does not exist")

	// Open says the directory is damaged, not an OS error, and names the
	// table; it changes nothing (but the lock's time: a writable open
	// locks by truncating LOCK).
	before := dirtest.HashExcept(t, f.dir, "LOCK")
	_, err := engine.Open(f.dir, nil)
	require.ErrorIs(t, err, engine.ErrCorruption)
	require.NotErrorIs(t, err, engine.ErrStorage)
	require.Contains(t, err.Error(), strings.TrimSuffix(name, ".sst"))
	require.Contains(t, err.Error(), "missing")
	require.Equal(t, before, dirtest.HashExcept(t, f.dir, "LOCK"))
}

// manifestRecords returns the offsets at which the MANIFEST's records
// start.
func manifestRecords(t *testing.T, path string) []int64 {
	t.Helper()
	fh, err := os.Open(path)
	require.NoError(t, err)
	defer fh.Close()
	rr := record.NewReader(fh, 0)
	var offs []int64
	for {
		off := rr.Offset()
		r, err := rr.Next()
		if err != nil {
			break
		}
		_, err = io.Copy(io.Discard, r)
		require.NoError(t, err)
		offs = append(offs, off)
	}
	return offs
}

func TestCheckDamagedManifest(t *testing.T) {
	f := newFixture(t)
	m, err := filepath.Glob(filepath.Join(f.dir, "marker.manifest.*"))
	require.NoError(t, err)
	require.Len(t, m, 1)
	m[0] = filepath.Join(f.dir, m[0][strings.LastIndex(m[0], ".MANIFEST-")+1:])
	offs := manifestRecords(t, m[0])
	require.GreaterOrEqual(t, len(offs), 2, "the fixture's MANIFEST should hold several version edits")
	b, err := os.ReadFile(m[0])
	require.NoError(t, err)
	// Damage the payload of the first record: valid records follow.
	mid := offs[0] + 10
	b[mid] ^= 0xff
	require.NoError(t, os.WriteFile(m[0], b, 0o644))

	before := dirtest.Hash(t, f.dir)
	rep, err := engine.Check(f.dir, nil)
	require.Equal(t, before, dirtest.Hash(t, f.dir))
	require.NoError(t, err)
	require.False(t, rep.OK())
	require.True(t, slices.ContainsFunc(rep.Problems, func(p engine.CheckProblem) bool {
		return p.Kind == "manifest" && p.File == filepath.Base(m[0]) && strings.Contains(p.Message, "damaged")
	}), "problems: %v", rep.Problems)
	require.True(t, slices.ContainsFunc(rep.Problems, func(p engine.CheckProblem) bool {
		return p.Kind == "open" && strings.Contains(p.Message, "manifest")
	}), "problems: %v", rep.Problems)
}

func TestCheckRefusesWhatItCannotCheck(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		_, err := engine.Check(dir, nil)
		require.ErrorIs(t, err, engine.ErrNotDataDir)
		require.Contains(t, err.Error(), dir)
		require.NoDirExists(t, dir)
	})
	t.Run("empty", func(t *testing.T) {
		dir := t.TempDir()
		_, err := engine.Check(dir, nil)
		require.ErrorIs(t, err, engine.ErrNotDataDir)
		require.Empty(t, dirNames(t, dir))
	})
	t.Run("foreign", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644))
		before := dirtest.Hash(t, dir)
		_, err := engine.Check(dir, nil)
		require.ErrorIs(t, err, engine.ErrNotDataDir)
		require.Contains(t, err.Error(), "notes.txt")
		require.Equal(t, before, dirtest.Hash(t, dir))
	})
	t.Run("file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "f")
		require.NoError(t, os.WriteFile(p, nil, 0o644))
		_, err := engine.Check(p, nil)
		require.ErrorIs(t, err, engine.ErrStorage)
		require.NotErrorIs(t, err, engine.ErrCorruption)
	})
	t.Run("open in this process", func(t *testing.T) {
		dir := t.TempDir()
		db := openDB(t, dir, nil)
		require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
		_, err := engine.Check(dir, nil)
		require.ErrorIs(t, err, engine.ErrLocked)
		// The writer's lock survived the attempt (an fcntl lock is lost
		// when any descriptor of the file is closed in its process).
		require.NoError(t, db.Close())
		_, err = engine.Check(dir, nil)
		require.NoError(t, err)
	})
	t.Run("open in another process", func(t *testing.T) {
		dir := t.TempDir()
		db := openDB(t, dir, nil)
		require.NoError(t, db.Close())
		pid := holdDirInChild(t, dir, false)
		_, err := engine.Check(dir, nil)
		require.ErrorIs(t, err, engine.ErrLocked)
		require.Contains(t, err.Error(), "process "+itoa(pid))
	})
}

// BenchmarkCheck measures Check on a directory of 200,000 100-byte
// records in 4 shards, flushed to sstables: records/s verified.
func BenchmarkCheck(b *testing.B) {
	dir := b.TempDir()
	db, err := engine.Open(dir, &engine.Options{NoSync: true})
	require.NoError(b, err)
	require.NoError(b, db.CreateStream("s", engine.StreamConfig{ShardCount: 4}))
	const n = 200_000
	data := make([]byte, 100)
	entries := make([]engine.Entry, 500)
	for i := 0; i < n; i += len(entries) {
		for j := range entries {
			entries[j] = engine.Entry{PartitionKey: itoa(i + j), Data: data}
		}
		_, err := db.PutRecords(context.Background(), "s", entries)
		require.NoError(b, err)
	}
	require.NoError(b, db.Close())
	b.ResetTimer()
	for b.Loop() {
		rep, err := engine.Check(dir, nil)
		require.NoError(b, err)
		require.True(b, rep.OK())
		require.EqualValues(b, n, rep.Records())
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
