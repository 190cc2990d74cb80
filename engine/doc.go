// Package engine is kvstream's public API: an embedded, persistent stream
// engine with the semantics of Amazon Kinesis Data Streams, on one Pebble
// data directory. It is the only package an application imports. The types
// it re-exports by alias from the lower packages (Record, SequenceNumber,
// ShardID, HashKey, StartPosition, Iterator, Error) are defined in
// github.com/kvstream/kvstream/shard and .../iterator; each alias here
// lists its methods.
//
// # Open
//
// [Open] opens a data directory, creating it if needed; nil [Options] mean
// all defaults: every acknowledged put is fsync'd, and Pebble gets the
// small memory profile (about 64 MiB, for edge devices; [ProfileThroughput]
// for servers). A data directory belongs to one [DB] at a time: a second
// Open, in this process or another, fails with [ErrLocked]. A DB's methods
// are safe for concurrent use; [DB.Close] it once.
//
// # Streams and puts
//
// A stream is made of shards, each owning a range of the 128-bit hash-key
// space. [DB.CreateStream] takes a [StreamConfig]: ShardCount is required,
// every other field defaults sensibly (24 h retention, xxhash partitioner,
// no throughput limits, no size bound). [DB.PutRecord] and [DB.PutRecords]
// route each [Entry] by the hash of its partition key (or its explicit hash
// key): records of one key go to one shard, in order, and each gets a
// [SequenceNumber] that grows within its shard. PutRecords reports each
// entry on its own: one may fail (throttled with [ErrThroughputExceeded],
// refused with [ErrStreamFull]) while the others are stored.
// [DB.SplitShard], [DB.MergeShards] and [DB.UpdateShardCount] reshard as
// Kinesis does: the old shards close and stay readable, new ones take the
// writes.
//
// # Reading and tailing
//
// Two read APIs read one shard from a [StartPosition]: [TrimHorizon] (the
// oldest record kept), [Latest] (only what comes next),
// [AtSequenceNumber], [AfterSequenceNumber] or [AtTimestamp].
//
//   - [DB.Iterate] returns an [Iterator]: Next, Record, Err and Close, All
//     for range-over-func, and Wait(ctx), which blocks until the next record
//     commits (tailing without polling) or the shard closes (ShardEnded).
//     Record().Data is borrowed until the next Next.
//   - [DB.GetShardIterator] and [DB.GetRecords] are the Kinesis-shaped API:
//     an opaque token that expires after Options.IteratorTTL, pages of
//     records, NextShardIterator, MillisBehindLatest, and ChildShards at the
//     end of a closed shard.
//
// # Durable consumers
//
// A [Consumer] ([DB.Consumer]) is kvstream's own durable
// cursor: a name with a checkpoint per shard, stored in the data directory.
// [Consumer.Records] yields every shard's records, each parent shard to its
// end before its children, and blocks for more when caught up; the
// application calls [Consumer.Checkpoint] once it has processed a record,
// and after a restart the consumer resumes after its checkpoints (at least
// once). [Consumer.Lag] says how far behind it is. This is what an
// in-process reader of a stream normally wants.
//
// # Stream attributes
//
// The engine keeps what it gives a meaning to. What only a layer above
// it needs (the Kinesis server's capacity mode, encryption and
// shard-level metrics settings, its enhanced fan-out consumer registry,
// resource policies) is stored as stream attributes: small byte values
// under string keys that the engine persists with the stream's catalog
// entry, returns without reading disk, and deletes with the stream
// ([DB.SetAttr], [DB.Attr], [DB.Attrs], [DB.UpdateAttrs] for an atomic
// read-modify-write, StreamConfig.Attrs at creation). Data directories of
// builds that kept those Kinesis settings in the engine are migrated to
// attributes by the first Open.
//
// # Retention and size bounds
//
// Records stay readable for the stream's retention ([DB.SetRetention] and
// friends change it). Readers skip expired records at once; a background
// trimmer deletes them every Options.TrimInterval ([DB.Trim] does it now).
// StreamConfig.MaxBytes bounds a stream's stored bytes ([DB.SetMaxBytes]
// changes it): with [DiscardOld], the default, a put over the bound wakes
// the trimmer, which deletes the oldest records until the stream fits, so
// the stream may exceed the bound for a moment; with [DiscardNew] a put
// that would exceed it fails with [ErrStreamFull] and nothing is deleted
// early. Give an edge device's streams a bound so that an outage of
// whatever drains them cannot fill its disk.
//
// # Durability and failures
//
// A put returns once its batch is fsync'd; concurrent puts share fsyncs
// (group commit). An acknowledged record survives a crash, kill -9 and
// power loss. Options.NoSync acknowledges before the fsync: faster, and a
// crash may lose the last acknowledged records; its doc says exactly what.
//
// A failed write or fsync ends the process; a restart recovers every
// fsync'd acknowledgement. The DB is fail-stop by design, as Pebble itself
// and PostgreSQL (after the 2018 fsync findings) are: when a WAL write or
// fsync fails, nothing is retried and nothing runs on the half-broken
// store. Options.OnFatal is called, by default printing the error and
// exiting with FatalExitCode (74); a custom hook that returns leaves the
// DB stopped, every call failing with ErrFailed.
//
// A sequence number, once returned, never names a different record, in
// any durability mode and after any crash or lost WAL tail: after an
// unclean shutdown, counters continue above every counter handed out
// before (a durably reserved ceiling in the data directory's sequence
// file), and acknowledged records found missing at open are logged and
// reported by DB.Recovery. Damaged data is never silent: reads that meet
// it return a *CorruptionError, and Check (kvstream check) verifies a
// whole data directory without writing to it.
//
// # Errors
//
// Errors wrap one of the sentinels ([ErrStreamNotFound],
// [ErrStreamExists], [ErrShardNotFound], [ErrValidation],
// [ErrThroughputExceeded], [ErrLocked], ...): test them with errors.Is.
// Their concrete type is [*Error]: the kind, a [Reason] for the condition
// within it, and the values involved (stream, shard, field, limit, ...)
// as fields, with a plain-English message ([Message] returns it without
// the kind's prefix). Use errors.As to word an error your own way;
// kvstream serve renders Kinesis' texts from these fields. Bad input
// never panics: it returns [ErrValidation] or [ErrInvalidArgument] naming
// the field and the limit. [ErrCorruption] ([IsCorruptionError])
// means stored data failed its checks; it is never caused by input.
package engine
