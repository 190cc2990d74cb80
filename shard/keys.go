package shard

import "encoding/binary"

// Key spaces. Every Pebble key starts with one of these prefix bytes:
//
//	0x01 meta       | name                          engine metadata (format version, MAC secret, id counters)
//	0x02 catalog    | stream name                   stream catalog entry (engine codec)
//	0x03 records    | streamID(4) | shard(4) | counter(8)   record value (see value.go)
//	0x04 consumers  | streamID(4) | name | 0x00 | shard(4)  durable consumer checkpoints
//	0x05 shardstate | streamID(4) | shard(4) | name         per-shard state (trim point, byte counts)
//	0x06 streamconsumers | streamID(4) | name              registered (enhanced fan-out) stream consumers
//
// All integers are big-endian so keys sort numerically.
const (
	PrefixMeta       byte = 0x01
	PrefixCatalog    byte = 0x02
	PrefixRecords    byte = 0x03
	PrefixConsumers  byte = 0x04
	PrefixShardState byte = 0x05
	// PrefixStreamConsumers held registered stream consumers (Kinesis
	// enhanced fan-out), keyed streamID(4) | name, in builds before they
	// became stream attributes of the server. Nothing writes it now; the
	// engine's Open migrates what it finds (engine/migrate.go).
	PrefixStreamConsumers byte = 0x06
)

// RecordKeyLen is the length of a record key.
const RecordKeyLen = 1 + 4 + 4 + 8

// AppendRecordKey appends the key of record counter in shard of stream.
func AppendRecordKey(dst []byte, stream uint32, shard uint32, counter uint64) []byte {
	dst = append(dst, PrefixRecords)
	dst = binary.BigEndian.AppendUint32(dst, stream)
	dst = binary.BigEndian.AppendUint32(dst, shard)
	return binary.BigEndian.AppendUint64(dst, counter)
}

// PutRecordKey writes a record key into dst, which must be RecordKeyLen long.
func PutRecordKey(dst []byte, stream uint32, shard uint32, counter uint64) {
	dst[0] = PrefixRecords
	binary.BigEndian.PutUint32(dst[1:], stream)
	binary.BigEndian.PutUint32(dst[5:], shard)
	binary.BigEndian.PutUint64(dst[9:], counter)
}

// DecodeRecordKey splits a record key; ok is false if k is not one.
func DecodeRecordKey(k []byte) (stream, shard uint32, counter uint64, ok bool) {
	if len(k) != RecordKeyLen || k[0] != PrefixRecords {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint32(k[5:]), binary.BigEndian.Uint64(k[9:]), true
}

// StreamRecordsSpan returns [start, end) covering every record of stream.
func StreamRecordsSpan(stream uint32) (start, end []byte) {
	start = binary.BigEndian.AppendUint32([]byte{PrefixRecords}, stream)
	end = binary.BigEndian.AppendUint32([]byte{PrefixRecords}, stream+1)
	if stream == ^uint32(0) {
		end = []byte{PrefixRecords + 1}
	}
	return start, end
}

// StreamSpan returns [start, end) covering keys of stream in key space prefix.
func StreamSpan(prefix byte, stream uint32) (start, end []byte) {
	start = binary.BigEndian.AppendUint32([]byte{prefix}, stream)
	if stream == ^uint32(0) {
		return start, []byte{prefix + 1}
	}
	return start, binary.BigEndian.AppendUint32([]byte{prefix}, stream+1)
}

// MetaKey returns the key of engine metadata entry name.
func MetaKey(name string) []byte { return append([]byte{PrefixMeta}, name...) }

// CatalogKey returns the catalog key of stream name.
func CatalogKey(name string) []byte { return append([]byte{PrefixCatalog}, name...) }

// ShardStateKey returns the key of per-shard state entry name.
func ShardStateKey(stream, shard uint32, name string) []byte {
	k := binary.BigEndian.AppendUint32([]byte{PrefixShardState}, stream)
	k = binary.BigEndian.AppendUint32(k, shard)
	return append(k, name...)
}

// Names of per-shard state entries (ShardStateKey).
const (
	// StateStats holds bytes(8) | records(8) | through(8): the value bytes
	// and number of the shard's live records with counters ≤ through (see
	// PutStats). A 16-byte value (no through) counts every live record.
	StateStats = "stats"
	// StateTrim holds the trim point: the first counter not deleted.
	StateTrim = "trim"
)

// ConsumerKey returns the key of durable consumer name's record in stream.
// Consumer names never contain 0x00, so the shard checkpoints
// (CheckpointKey) sort right after it.
func ConsumerKey(stream uint32, name string) []byte {
	k := binary.BigEndian.AppendUint32([]byte{PrefixConsumers}, stream)
	k = append(k, name...)
	return append(k, 0)
}

// CheckpointKey returns the key of consumer name's checkpoint in shard.
func CheckpointKey(stream uint32, name string, shard uint32) []byte {
	return binary.BigEndian.AppendUint32(ConsumerKey(stream, name), shard)
}

// StatsLen is the length of a StateStats value (PutStats).
const StatsLen = 24

// PutStats encodes a shard's counts into dst (StatsLen bytes): bytes and
// records count the live records with counters ≤ through. The Writer
// does not rewrite the counts at every commit (see Writer); records above
// through are counted by whoever loads the value, by reading them.
func PutStats(dst []byte, bytes, records int64, through uint64) {
	binary.BigEndian.PutUint64(dst[0:], uint64(bytes))
	binary.BigEndian.PutUint64(dst[8:], uint64(records))
	binary.BigEndian.PutUint64(dst[16:], through)
}

// DecodeStats decodes a StateStats value. A 16-byte value, which earlier
// builds wrote at every commit, counts every record: through is then
// ^uint64(0). ok is false for any other length.
func DecodeStats(v []byte) (bytes, records int64, through uint64, ok bool) {
	switch len(v) {
	case 16:
		through = ^uint64(0)
	case StatsLen:
		through = binary.BigEndian.Uint64(v[16:])
	default:
		return 0, 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:])), through, true
}
