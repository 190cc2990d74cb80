// Package shard is one of the engine's internals: one shard's record log
// on Pebble (the key codec, sequence numbers, the group-commit Writer,
// trims, 128-bit hash-key ranges, throttle buckets) and the sentinel
// errors and structured Error the engine re-exports. Programs use the
// engine package, which re-exports what they need (ShardID, HashKey,
// SequenceNumber, Record, Error, the Err… sentinels); this package's
// exported surface exists for engine and iterator and may change with
// them.
package shard
