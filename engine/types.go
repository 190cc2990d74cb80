package engine

import (
	"time"

	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
)

// Types re-exported from the lower packages, so users import only engine.
// They are aliases, so go doc shows their methods only in their own
// package (go doc github.com/kvstream/kvstream/iterator Iterator); each
// comment below lists them.
type (
	// Record is one record as readers see it: ShardID, SequenceNumber,
	// PartitionKey, ExplicitHashKey (nil unless the producer gave one),
	// Data and Timestamp (the arrival time, millisecond precision). It is
	// a plain value; Data is borrowed from an Iterator until its next
	// Next, so keep a record with
	//
	//	func (r Record) Clone() Record
	//
	// Defined in github.com/kvstream/kvstream/shard.
	Record = shard.Record
	// SequenceNumber is a record's position in its shard (fields
	// ShardCreated, Shard, Counter, Written); numbers of one shard sort
	// by Counter. Methods:
	//
	//	func (n SequenceNumber) String() string                 // Kinesis' 56-digit decimal
	//	func (n SequenceNumber) IsZero() bool                   // the zero value: "none"
	//	func (n SequenceNumber) AppendTo(dst []byte) []byte
	//	func (n SequenceNumber) MarshalText() ([]byte, error)
	//	func (n *SequenceNumber) UnmarshalText(b []byte) error
	//
	// ParseSequenceNumber reads the decimal form. Defined in
	// github.com/kvstream/kvstream/shard.
	SequenceNumber = shard.SequenceNumber
	// ShardID is a shard's index within its stream. Methods:
	//
	//	func (id ShardID) String() string  // "shardId-000000000000"
	//
	// ParseShardID reads that form. Defined in
	// github.com/kvstream/kvstream/shard.
	ShardID = shard.ShardID
	// HashKey is a point in the 128-bit hash-key space. Methods:
	//
	//	func (h HashKey) String() string                 // decimal, as Kinesis writes it
	//	func (h HashKey) Cmp(o HashKey) int
	//	func (h HashKey) Add(n uint64) HashKey
	//	func (h HashKey) Sub(n uint64) HashKey
	//	func (h HashKey) MarshalText() ([]byte, error)
	//	func (h *HashKey) UnmarshalText(b []byte) error
	//
	// ParseHashKey reads the decimal form. Defined in
	// github.com/kvstream/kvstream/shard.
	HashKey = shard.HashKey
	// HashRange is an inclusive range of hash keys (Start, End). Methods:
	//
	//	func (r HashRange) Contains(h HashKey) bool
	//
	// Defined in github.com/kvstream/kvstream/shard.
	HashRange = shard.HashRange
	// Partitioner maps partition keys to hash keys: PartitionerXXHash (the
	// default) or PartitionerMD5 (exactly Kinesis' placement). Methods:
	//
	//	func (p Partitioner) Hash(partitionKey string) HashKey
	//	func (p Partitioner) String() string                    // "xxhash" or "md5"
	//	func (p Partitioner) Valid() bool
	//
	// Defined in github.com/kvstream/kvstream/shard.
	Partitioner = shard.Partitioner
	// StartPosition says where reading a shard starts. Build one with
	// TrimHorizon, Latest, AtSequenceNumber, AfterSequenceNumber or
	// AtTimestamp; the zero value is invalid. Defined in
	// github.com/kvstream/kvstream/iterator.
	StartPosition = iterator.StartPosition
	// Iterator reads one shard in sequence order; DB.Iterate returns one.
	// It sees every record visible when Next runs, skips records past
	// retention and stops at the end of a closed shard. It is not safe for
	// concurrent use. Methods:
	//
	//	func (it *Iterator) Next() bool                      // false at the end of what is visible, or on error
	//	func (it *Iterator) Record() Record                  // the current record; Data valid until Next or Close
	//	func (it *Iterator) Err() error                      // what stopped Next; check it after the loop
	//	func (it *Iterator) All() iter.Seq[Record]           // range over the rest; check Err after
	//	func (it *Iterator) Wait(ctx context.Context) error  // block until a new record commits, the shard closes, or ctx ends
	//	func (it *Iterator) CaughtUp() bool                  // every visible record has been read
	//	func (it *Iterator) ShardEnded() bool                // closed shard read to its end (Kinesis' SHARD_END)
	//	func (it *Iterator) NextCounter() uint64             // counter of the next record: a checkpoint position
	//	func (it *Iterator) Close() error                    // releases Pebble resources; idempotent
	//
	// Defined in github.com/kvstream/kvstream/iterator.
	Iterator = iterator.Iterator
	// Error is the concrete type behind the engine's errors: a Kind (one
	// of the Err… sentinels, so errors.Is works), a Reason naming the
	// condition within the kind, and the values involved (Stream, Shard,
	// Field, Limit, …) as fields; Msg is plain English and Cause an
	// underlying I/O or Pebble error if any. Use errors.As to get the
	// fields and word the error your own way (the Kinesis server does, in
	// server/render.go). Methods:
	//
	//	func (e *Error) Error() string
	//	func (e *Error) Unwrap() []error  // Kind and Cause, for errors.Is
	//
	// Defined in github.com/kvstream/kvstream/shard.
	Error = shard.Error
)

// Partitioners.
const (
	PartitionerXXHash = shard.PartitionerXXHash
	PartitionerMD5    = shard.PartitionerMD5
)

// Kinds of start positions (StartPosition.Kind); String gives the Kinesis
// ShardIteratorType name.
const (
	KindTrimHorizon         = iterator.KindTrimHorizon
	KindLatest              = iterator.KindLatest
	KindAtSequenceNumber    = iterator.KindAtSequenceNumber
	KindAfterSequenceNumber = iterator.KindAfterSequenceNumber
	KindAtTimestamp         = iterator.KindAtTimestamp
)

// MaxHashKey is 2^128-1.
var MaxHashKey = shard.MaxHashKey

// Start positions (see the iterator package).
var (
	TrimHorizon         = iterator.TrimHorizon
	Latest              = iterator.Latest
	AtSequenceNumber    = iterator.AtSequenceNumber
	AfterSequenceNumber = iterator.AfterSequenceNumber
	AtTimestamp         = iterator.AtTimestamp
)

// Parsers for the external forms.
var (
	ParseSequenceNumber = shard.ParseSequenceNumber
	ParseShardID        = shard.ParseShardID
	ParseHashKey        = shard.ParseHashKey
	Message             = shard.Message
	IsCorruptionError   = shard.IsCorruptionError
)

// Sentinel errors; see the shard package for each one's contract.
var (
	ErrClosed             = shard.ErrClosed
	ErrStreamNotFound     = shard.ErrStreamNotFound
	ErrStreamExists       = shard.ErrStreamExists
	ErrShardNotFound      = shard.ErrShardNotFound
	ErrConsumerNotFound   = shard.ErrConsumerNotFound
	ErrValidation         = shard.ErrValidation
	ErrInvalidArgument    = shard.ErrInvalidArgument
	ErrExpiredIterator    = shard.ErrExpiredIterator
	ErrThroughputExceeded = shard.ErrThroughputExceeded
	ErrStreamFull         = shard.ErrStreamFull
	ErrResourceInUse      = shard.ErrResourceInUse
	ErrLimitExceeded      = shard.ErrLimitExceeded
	ErrInvalidOptions     = shard.ErrInvalidOptions
	ErrLocked             = shard.ErrLocked
	ErrCorruption         = shard.ErrCorruption
	ErrWriteFailed        = shard.ErrWriteFailed
	ErrFailed             = shard.ErrFailed
	ErrDiskFull           = shard.ErrDiskFull
)

// Limits are per-shard throughput limits; zero means unlimited.
type Limits struct {
	WriteRecordsPerSec int `json:"write_records_per_sec,omitempty"`
	WriteBytesPerSec   int `json:"write_bytes_per_sec,omitempty"`
	ReadBytesPerSec    int `json:"read_bytes_per_sec,omitempty"`
	ReadCallsPerSec    int `json:"read_calls_per_sec,omitempty"`
	// Wait makes a put that is over the write limits wait for capacity
	// (until its ctx ends) instead of failing with ErrThroughputExceeded.
	Wait bool `json:"wait,omitempty"`
}

func (l Limits) shardLimits() shard.Limits {
	return shard.Limits{WriteRecords: l.WriteRecordsPerSec, WriteBytes: l.WriteBytesPerSec, ReadBytes: l.ReadBytesPerSec, ReadCalls: l.ReadCallsPerSec}
}

// KinesisLimits are AWS's provisioned per-shard limits.
var KinesisLimits = Limits{WriteRecordsPerSec: 1000, WriteBytesPerSec: 1 << 20, ReadBytesPerSec: 2 << 20, ReadCallsPerSec: 5}

// DiscardPolicy says what a stream at MaxBytes does with new records.
type DiscardPolicy uint8

const (
	// DiscardOld drops the oldest records to make room (the default).
	DiscardOld DiscardPolicy = iota
	// DiscardNew rejects new records with ErrStreamFull.
	DiscardNew
)

// StreamStatus is a stream's lifecycle state, as Kinesis names it.
type StreamStatus string

const (
	StatusCreating StreamStatus = "CREATING"
	StatusActive   StreamStatus = "ACTIVE"
	StatusUpdating StreamStatus = "UPDATING"
	StatusDeleting StreamStatus = "DELETING"
)

// StreamConfig configures a new stream. The zero value of every field but
// ShardCount is a sensible default.
type StreamConfig struct {
	// ShardCount is the number of shards, ≥ 1. Required.
	ShardCount int
	// Retention is how long records stay readable. Default 24 hours;
	// accepted range [Options.MinRetention, 8760h].
	Retention time.Duration
	// Partitioner maps partition keys to hash keys. Default
	// PartitionerXXHash; PartitionerMD5 places keys exactly as Kinesis.
	Partitioner Partitioner
	// Limits are per-shard throughput limits. Default unlimited.
	Limits Limits
	// MaxBytes bounds the stream's stored record bytes (0: unbounded).
	MaxBytes int64
	// Discard says what happens at MaxBytes. Default DiscardOld.
	Discard DiscardPolicy
	// ActivationDelay keeps the stream CREATING for this long, to mimic
	// AWS. Default 0: ACTIVE at once.
	ActivationDelay time.Duration
	// Tags are stored with the stream.
	Tags map[string]string
	// Attrs are the stream's first attributes (see DB.SetAttr), written
	// in the commit that creates the stream. Default none.
	Attrs map[string][]byte
	// MaxRecordBytes caps data plus partition key of one record in this
	// stream, up to 64 MiB (Kinesis streams allow up to 10 MiB). Default
	// 0: Options.MaxRecordBytes. DB.SetMaxRecordBytes changes it later.
	MaxRecordBytes int
}

// Entry is one record to put.
type Entry struct {
	// PartitionKey routes the record; 1–256 characters. Required.
	PartitionKey string
	// ExplicitHashKey, if set, overrides the partition key's hash: a
	// decimal in [0, 2^128-1].
	ExplicitHashKey string
	// Data is the payload; data plus key ≤ the stream's record limit
	// (StreamConfig.MaxRecordBytes, default Options.MaxRecordBytes).
	Data []byte
	// SequenceNumberForOrdering, if set, must be a number this shard
	// issued; the new record's number is then guaranteed greater.
	SequenceNumberForOrdering SequenceNumber
}

// PutResult is the outcome of one entry.
type PutResult struct {
	// ShardID is the shard the entry was routed to, also when Err is set.
	ShardID        ShardID
	SequenceNumber SequenceNumber
	// Err is set when this entry alone failed (PutRecords only): a
	// throttle (ErrThroughputExceeded) or a full stream (ErrStreamFull).
	Err error
}

// ShardDescription describes one shard.
type ShardDescription struct {
	ShardID               ShardID
	ParentShardID         *ShardID
	AdjacentParentShardID *ShardID
	HashKeyRange          HashRange
	// StartingSequenceNumber is the number just below the shard's first record.
	StartingSequenceNumber SequenceNumber
	// EndingSequenceNumber is set (non-zero) once the shard is closed.
	EndingSequenceNumber SequenceNumber
	// CreatedAt is when the shard was created (second precision: the
	// creation second is part of its sequence numbers).
	CreatedAt time.Time
	// ClosedAt is when a reshard closed the shard (zero while open).
	ClosedAt time.Time
	// Beyond Kinesis: the stored bytes and records of the shard.
	Bytes   int64
	Records int64
}

// Open reports whether the shard still takes writes.
func (d ShardDescription) Open() bool { return d.EndingSequenceNumber.IsZero() }

// StreamDescription describes a stream.
type StreamDescription struct {
	Name        string
	Status      StreamStatus
	CreatedAt   time.Time
	Retention   time.Duration
	Partitioner Partitioner
	Limits      Limits
	MaxBytes    int64
	Discard     DiscardPolicy
	// MaxRecordBytes is the stream's record limit in effect (its own, or
	// Options.MaxRecordBytes).
	MaxRecordBytes int
	// Shards lists every shard still holding data, open or closed, by id.
	Shards         []ShardDescription
	OpenShardCount int
	// Beyond Kinesis: the stream's stored record bytes and count.
	Bytes   int64
	Records int64
}

// ChildShard is a shard created by closing the shard being read.
type ChildShard struct {
	ShardID      ShardID
	ParentShards []ShardID
	HashKeyRange HashRange
}

// GetRecordsOutput is one page of a shard.
type GetRecordsOutput struct {
	// Records own their memory.
	Records []Record
	// NextShardIterator is empty once a closed shard has been read to its end.
	NextShardIterator string
	// MillisBehindLatest is 0 when the page reached the shard's tip.
	MillisBehindLatest int64
	// ChildShards is set at the end of a closed shard.
	ChildShards []ChildShard
}
