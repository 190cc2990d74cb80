package engine

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
)

// Profile selects how much memory Pebble may use.
type Profile uint8

const (
	// ProfileSmall targets edge devices: 4 MiB memtables and an 8 MiB block
	// cache, about 64 MiB RSS under load. It is the default.
	ProfileSmall Profile = iota
	// ProfileThroughput uses 64 MiB memtables and a 256 MiB cache, tuned on
	// 2-core machines for ~3x the ingest rate of ProfileSmall.
	ProfileThroughput
)

// Options configure a DB. A nil *Options is valid and means all defaults;
// Open never modifies the caller's struct.
type Options struct {
	// FS is the filesystem Pebble uses. Default: vfs.Default (the OS).
	// vfs.NewMem() is a supported in-memory mode: the same semantics, minus durability across processes.
	FS vfs.FS
	// NoSync turns off fsync before acknowledging puts. Default false:
	// every acknowledged put is on stable storage, and concurrent puts
	// share fsyncs (group commit).
	//
	// With NoSync, a put is acknowledged once it is in Pebble's WAL
	// buffer in memory. A crash of the process (kill -9, a panic, a fatal
	// failure) loses the records Pebble had not yet written to the WAL
	// file: normally the last milliseconds of writes, at most about one
	// memtable (4 MiB with ProfileSmall, 64 MiB with ProfileThroughput). A
	// power loss or OS crash also loses what the OS had not written out:
	// everything since the last fsync of the WAL (a memtable rotation,
	// Close, or a catalog change, which is always fsync'd). What is lost is
	// always a tail: per shard, the recovered records are a gap-free
	// prefix of what was acknowledged, never a mix, and no batch is
	// half-applied. Stream and shard changes (create, delete, reshard,
	// retention) and consumer registrations are fsync'd in both modes;
	// durable-consumer checkpoints follow NoSync. Sequence numbers stay
	// unique regardless: a number once returned never names a different
	// record, because after an unclean shutdown counters continue above a
	// durably reserved ceiling (see DB.Recovery).
	NoSync bool
	// ReadOnly opens an existing data directory without writing anything:
	// no file or directory is created, modified or removed, the trimmer
	// does not run, and every write returns ErrReadOnly. Open fails with
	// ErrNotDataDir if dir is not an existing kvstream data directory. A
	// read-only DB excludes writers of the directory like any other DB.
	// Default false.
	ReadOnly bool
	// OnFatal is called once when a WAL write or fsync fails, or Pebble
	// reports another fatal error; the DB has then stopped (fail-stop).
	// Default: print the error on stderr and exit the process with
	// FatalExitCode. A restart recovers every fsync'd acknowledgement.
	//
	// If OnFatal returns, the goroutine that hit the failure blocks
	// forever (it is inside Pebble, which cannot continue soundly), every
	// later call of the DB returns an error wrapping ErrFailed without
	// touching Pebble, Close returns that error without closing Pebble,
	// and the data directory stays locked until the process exits.
	OnFatal func(error)
	// Logger receives the engine's own reports: fatal failures, lost
	// records found at open, consumer checkpoints beyond the recovered
	// end, disk full and ballast changes, Pebble's background errors
	// (failed flushes and compactions), write stalls and slow disks.
	// Default slog.Default().
	Logger *slog.Logger
	// Clock returns the current time. Default time.Now. Tests inject a
	// fake clock to move time without sleeping.
	Clock func() time.Time
	// IteratorTTL is how long a shard iterator token stays valid.
	// Default 5 minutes, as Kinesis.
	IteratorTTL time.Duration
	// MaxRecordBytes caps data plus partition key of one record.
	// Default 1 MiB (1,048,576), as Kinesis.
	MaxRecordBytes int
	// MaxPutRecordsEntries caps the entries of one PutRecords. Default 500.
	MaxPutRecordsEntries int
	// MaxPutRecordsBytes caps data plus keys of one PutRecords. Default 5 MiB.
	MaxPutRecordsBytes int
	// MaxGetRecords caps the records of one GetRecords. Default 10,000.
	MaxGetRecords int
	// MaxGetRecordsBytes caps the data of one GetRecords. Default 10 MiB.
	MaxGetRecordsBytes int
	// MinRetention is the shortest stream retention accepted. Default 1
	// minute (Kinesis' own minimum is 24 hours; the server enforces that).
	MinRetention time.Duration
	// MaxShards caps open shards across all streams. Default 20,000 (the
	// Kinesis default quota in us-east-1).
	MaxShards int
	// TrimInterval is how often the background trimmer deletes expired
	// records. Default 30 seconds.
	TrimInterval time.Duration
	// Profile selects Pebble's memory budget. Default ProfileSmall.
	Profile Profile
	// Pebble, if set, replaces the profile's Pebble options: a clone of
	// it is used as is, and Profile is ignored (start from
	// PebbleOptions(profile) to tune a profile). kvstream always sets FS,
	// FormatMajorVersion and Logger on the clone, and
	// Experimental.SpanPolicyFunc if it is nil (see PebbleOptions); every
	// other field is the caller's. A Cache set here stays the caller's to
	// Unref.
	Pebble *pebble.Options

	// MinFreeBytes is the space the data directory's filesystem must keep
	// available: below it, puts fail fast with ErrDiskFull (retryable)
	// instead of filling the disk, while reads and the calls that free
	// space (DeleteStream, retention and MaxBytes changes, trimming) keep
	// working; puts resume by themselves once space returns. Free space is
	// read with statfs at most every 250 ms (sooner after a burst of
	// writes) and at once when any write fails with ENOSPC, which also
	// refuses puts for a second. Default 0: the larger of 64 MiB and 2 %
	// of the filesystem, but at most 10 % of it (Open resolves it;
	// DB.StorageStats reports the value in use). -1 disables the check and
	// the ballast. Nothing is checked on a filesystem that cannot report
	// free space (vfs.NewMem).
	MinFreeBytes int64
	// BallastBytes is the size of the emergency ballast, the file
	// auxiliary/EMERGENCY_BALLAST in the data directory: space set aside
	// while the disk has room and released when it runs out (available
	// space under half of MinFreeBytes, or any ENOSPC), so deletions,
	// trimming and Pebble's flushes and compactions can still complete.
	// It is recreated once MinFreeBytes plus its size are available; until
	// then puts stay refused. Default 0: 1 % of the filesystem, at most
	// 1 GiB. -1 disables it.
	BallastBytes int64
}

// Clone returns a copy of o (nil-safe).
func (o *Options) Clone() *Options {
	if o == nil {
		return &Options{}
	}
	c := *o
	return &c
}

// EnsureDefaults fills every zero field with its default and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.OnFatal == nil {
		o.OnFatal = defaultOnFatal
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.IteratorTTL == 0 {
		o.IteratorTTL = 5 * time.Minute
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = 1 << 20
	}
	if o.MaxPutRecordsEntries == 0 {
		o.MaxPutRecordsEntries = 500
	}
	if o.MaxPutRecordsBytes == 0 {
		o.MaxPutRecordsBytes = 5 << 20
	}
	if o.MaxGetRecords == 0 {
		o.MaxGetRecords = 10000
	}
	if o.MaxGetRecordsBytes == 0 {
		o.MaxGetRecordsBytes = 10 << 20
	}
	if o.MinRetention == 0 {
		o.MinRetention = time.Minute
	}
	if o.MaxShards == 0 {
		o.MaxShards = 20000
	}
	if o.TrimInterval == 0 {
		o.TrimInterval = 30 * time.Second
	}
	return o
}

// Validate reports the first invalid field, wrapping ErrInvalidOptions.
func (o *Options) Validate() error {
	bad := func(format string, args ...any) error {
		return shard.Errorf(shard.ErrInvalidOptions, format, args...)
	}
	switch {
	case o.IteratorTTL < 0:
		return bad("IteratorTTL %v must be positive", o.IteratorTTL)
	case o.MaxRecordBytes < 0 || o.MaxRecordBytes > 64<<20:
		return bad("MaxRecordBytes %d must be in (0, 64 MiB]", o.MaxRecordBytes)
	case o.MaxPutRecordsEntries < 0:
		return bad("MaxPutRecordsEntries %d must be positive", o.MaxPutRecordsEntries)
	case o.MaxPutRecordsBytes < 0:
		return bad("MaxPutRecordsBytes %d must be positive", o.MaxPutRecordsBytes)
	case o.MaxGetRecords < 0:
		return bad("MaxGetRecords %d must be positive", o.MaxGetRecords)
	case o.MaxGetRecordsBytes < 0:
		return bad("MaxGetRecordsBytes %d must be positive", o.MaxGetRecordsBytes)
	case o.MinRetention < 0:
		return bad("MinRetention %v must be positive", o.MinRetention)
	case o.MaxShards < 0:
		return bad("MaxShards %d must be positive", o.MaxShards)
	case o.TrimInterval < 0:
		return bad("TrimInterval %v must be positive", o.TrimInterval)
	case o.MinFreeBytes < -1:
		return bad("MinFreeBytes %d must be positive, 0 (default) or -1 (disabled)", o.MinFreeBytes)
	case o.BallastBytes < -1:
		return bad("BallastBytes %d must be positive, 0 (default) or -1 (disabled)", o.BallastBytes)
	case o.Profile > ProfileThroughput:
		return bad("Profile %d is not ProfileSmall or ProfileThroughput", o.Profile)
	}
	return nil
}

func (o *Options) nowMs() int64 { return o.Clock().UnixMilli() }

// PebbleOptions returns the Pebble options of memory profile p, as the
// engine opens Pebble with them (FS unset: the OS). The caller owns the
// returned block cache reference (Cache.Unref it after pebble.Open). The
// bench package uses it so the raw-Pebble ceiling runs the same settings.
func PebbleOptions(p Profile) *pebble.Options {
	po := &pebble.Options{}
	if p == ProfileThroughput {
		po.MemTableSize = 64 << 20
		po.MemTableStopWritesThreshold = 4
		po.L0StopWritesThreshold = 1000
		po.L0CompactionThreshold = 4
		po.CompactionConcurrencyRange = func() (int, int) { return 1, 1 }
		po.Cache = pebble.NewCache(256 << 20)
		po.Levels[0].BlockSize = 32 << 10
	} else {
		po.MemTableSize = 4 << 20
		po.Cache = pebble.NewCache(8 << 20)
	}
	po.FormatMajorVersion = pebble.FormatNewest
	po.Logger = quietLogger{}
	po.Experimental.SpanPolicyFunc = splitRecordTables
	return po
}

// splitRecordTables is the engine's Pebble SpanPolicyFunc: every flush and
// compaction output table ends where the records' key space starts or
// ends, so the engine's other keys (metadata, catalog, consumers, shard
// counts and trim points) never share a table with records. A shard's
// records only ever grow at its end, so tables of records rarely overlap
// older ones; one table holding the last records and a rewritten counts
// key overlapped every table flushed before it, and compactions rewrote
// the records again and again (kvstream bench putrecords, throughput
// profile: engine ÷ ceiling CPU per record 0.75–0.81 without the split,
// 0.86–0.94 with it).
func splitRecordTables(start []byte) (pebble.SpanPolicy, []byte, error) {
	switch {
	case len(start) == 0 || start[0] < shard.PrefixRecords:
		return pebble.SpanPolicy{}, recordsStart, nil
	case start[0] == shard.PrefixRecords:
		return pebble.SpanPolicy{}, recordsEnd, nil
	}
	return pebble.SpanPolicy{}, nil, nil
}

// recordsStart and recordsEnd bound the records' key space.
var (
	recordsStart = []byte{shard.PrefixRecords}
	recordsEnd   = []byte{shard.PrefixRecords + 1}
)

// pebbleOptions builds Pebble's options from the profile, or from the
// caller's Options.Pebble.
func (o *Options) pebbleOptions() *pebble.Options {
	var po *pebble.Options
	if o.Pebble != nil {
		po = o.Pebble.Clone()
		po.FormatMajorVersion = pebble.FormatNewest
		po.Logger = quietLogger{}
		if po.Experimental.SpanPolicyFunc == nil {
			po.Experimental.SpanPolicyFunc = splitRecordTables
		}
	} else {
		po = PebbleOptions(o.Profile)
	}
	po.FS = o.FS
	return po
}

// quietLogger drops Pebble's informational logs; Fatalf ends the process
// as the default Options.OnFatal does. Open replaces it with a logger that
// routes Fatalf to the DB's fail-stop handling (see failStop).
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(format string, a ...any) {}
func (quietLogger) Fatalf(format string, a ...any) {
	defaultOnFatal(fmt.Errorf(format, a...))
}
