package shard

import (
	"encoding/binary"
	"time"
)

// Record value layout (no JSON, no per-field tags):
//
//	arrivalMs(8, big-endian) | flags(1) | uvarint(len(pk)) | pk | [ehk(16) if flags&1] | data
//
// The arrival time sits at a fixed offset so it can be read without
// decoding the rest (AT_TIMESTAMP search, retention).
const (
	valueFlagEHK    = 1
	valueHeaderLen  = 9
	maxPartitionKey = 1 << 16
)

// ValueLen returns the encoded length of a record value.
func ValueLen(pk string, hasEHK bool, data []byte) int {
	n := valueHeaderLen + uvarintLen(uint64(len(pk))) + len(pk) + len(data)
	if hasEHK {
		n += 16
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// PutValue encodes a record value into dst, which must be exactly
// ValueLen(pk, ehk != nil, data) bytes long.
func PutValue(dst []byte, arrivalMs int64, pk string, ehk *HashKey, data []byte) {
	binary.BigEndian.PutUint64(dst, uint64(arrivalMs))
	dst[8] = 0
	if ehk != nil {
		dst[8] = valueFlagEHK
	}
	i := valueHeaderLen + binary.PutUvarint(dst[valueHeaderLen:], uint64(len(pk)))
	i += copy(dst[i:], pk)
	if ehk != nil {
		binary.BigEndian.PutUint64(dst[i:], ehk.Hi)
		binary.BigEndian.PutUint64(dst[i+8:], ehk.Lo)
		i += 16
	}
	copy(dst[i:], data)
}

// ValueArrival returns the arrival time (Unix ms) stored in a record value.
func ValueArrival(v []byte) (int64, bool) {
	if len(v) < valueHeaderLen {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), true
}

// DecodedValue is a record value split into its fields. PartitionKey and
// Data alias the encoded bytes.
type DecodedValue struct {
	ArrivalMs       int64
	PartitionKey    []byte
	ExplicitHashKey *HashKey
	Data            []byte
}

// DecodeValue splits v; ok is false if v is malformed.
func DecodeValue(v []byte) (d DecodedValue, ok bool) {
	if len(v) < valueHeaderLen || v[8]&^valueFlagEHK != 0 {
		return d, false
	}
	d.ArrivalMs = int64(binary.BigEndian.Uint64(v))
	pkLen, n := binary.Uvarint(v[valueHeaderLen:])
	if n <= 0 || pkLen > maxPartitionKey {
		return d, false
	}
	i := valueHeaderLen + n
	if uint64(len(v)-i) < pkLen {
		return d, false
	}
	d.PartitionKey = v[i : i+int(pkLen)]
	i += int(pkLen)
	if v[8]&valueFlagEHK != 0 {
		if len(v)-i < 16 {
			return d, false
		}
		d.ExplicitHashKey = &HashKey{Hi: binary.BigEndian.Uint64(v[i:]), Lo: binary.BigEndian.Uint64(v[i+8:])}
		i += 16
	}
	d.Data = v[i:]
	return d, true
}

// SplitValue locates the fields of record value v without copying or
// allocating: the partition key is v[pk:pkEnd] and the data v[data:];
// data > pkEnd when there is an explicit hash key (ValueHashKey(v, pkEnd)
// reads it). ok is false if v is malformed; it accepts exactly the values
// DecodeValue accepts.
func SplitValue(v []byte) (arrivalMs int64, pk, pkEnd, data int, ok bool) {
	if len(v) < valueHeaderLen+1 || v[8]&^valueFlagEHK != 0 {
		return 0, 0, 0, 0, false
	}
	var pkLen uint64
	if b := v[valueHeaderLen]; b < 0x80 { // keys under 128 bytes: one byte
		pkLen, pk = uint64(b), valueHeaderLen+1
	} else {
		l, n := binary.Uvarint(v[valueHeaderLen:])
		if n <= 0 {
			return 0, 0, 0, 0, false
		}
		pkLen, pk = l, valueHeaderLen+n
	}
	if pkLen > maxPartitionKey || uint64(len(v)-pk) < pkLen {
		return 0, 0, 0, 0, false
	}
	pkEnd = pk + int(pkLen)
	data = pkEnd
	if v[8]&valueFlagEHK != 0 {
		if len(v)-pkEnd < 16 {
			return 0, 0, 0, 0, false
		}
		data += 16
	}
	return int64(binary.BigEndian.Uint64(v)), pk, pkEnd, data, true
}

// ValueHashKey returns the explicit hash key stored at v[at:at+16] (at is
// the pkEnd SplitValue returned for a value with one).
func ValueHashKey(v []byte, at int) *HashKey {
	return &HashKey{Hi: binary.BigEndian.Uint64(v[at:]), Lo: binary.BigEndian.Uint64(v[at+8:])}
}

// Record is one record as readers see it. It is a plain value; Data is
// borrowed (see the producing call's contract) unless cloned.
type Record struct {
	// ShardID is the shard the record lives in.
	ShardID ShardID
	// SequenceNumber is the record's position in its shard.
	SequenceNumber SequenceNumber
	// PartitionKey is the key the producer gave. It is the reader's to
	// keep; readers copy keys (and GetRecords also data) into memory
	// shared by neighbouring records, so keeping one record's key or data
	// can keep a few KiB (Iterator) or its page's arena (GetRecords) alive.
	PartitionKey string
	// ExplicitHashKey is set when the producer routed by explicit hash key.
	ExplicitHashKey *HashKey
	// Data is the payload.
	Data []byte
	// Timestamp is the approximate arrival time (millisecond precision).
	Timestamp time.Time
}

// Clone returns a copy of r whose Data is owned by the caller.
func (r Record) Clone() Record {
	r.Data = append([]byte(nil), r.Data...)
	return r
}
