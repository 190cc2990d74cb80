package engine

import (
	"fmt"
	"time"

	"github.com/kvstream/kvstream/shard"
)

const (
	maxStreamName    = 128
	maxPartitionKey  = 256
	maxRetention     = 8760 * time.Hour
	defaultRetention = 24 * time.Hour
)

func validationf(format string, args ...any) error {
	return shard.Errorf(shard.ErrValidation, format, args...)
}

// validateStreamName checks Kinesis' StreamName constraints:
// 1–128 characters of [a-zA-Z0-9_.-].
func validateStreamName(name string) error {
	if len(name) == 0 || len(name) > maxStreamName {
		return validationf("StreamName %q must be 1 to %d characters long (it has %d)", name, maxStreamName, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return validationf("StreamName %q must match [a-zA-Z0-9_.-]+ (character %d is %q)", name, i+1, c)
		}
	}
	return nil
}

// partitionKeyLen returns the key's length in UTF-16 code units, the unit
// Kinesis (a Java service) measures.
func partitionKeyLen(pk string) int {
	if len(pk) <= maxPartitionKey {
		// UTF-16 units never exceed UTF-8 bytes, so short keys are within
		// the limit whatever their length in units; report bytes.
		return len(pk)
	}
	n := 0
	for _, r := range pk {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// validateEntry checks one entry's static constraints. i is its index in
// a PutRecords call (-1 for PutRecord), used to name the field.
func validateEntry(e *Entry, i, maxRecordBytes int) error {
	field := func(f string) string {
		if i < 0 {
			return f
		}
		return "Records[" + itoa(i) + "]." + f
	}
	if n := partitionKeyLen(e.PartitionKey); n < 1 || n > maxPartitionKey {
		return validationf("%s must be 1 to %d characters long (it has %d)", field("PartitionKey"), maxPartitionKey, n)
	}
	if n := len(e.Data) + len(e.PartitionKey); n > maxRecordBytes {
		return validationf("%s plus PartitionKey is %d bytes, more than the limit of %d bytes", field("Data"), n, maxRecordBytes)
	}
	return nil
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	if i == 0 {
		return "0"
	}
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

// parseExplicitHashKey parses an ExplicitHashKey with Kinesis' message.
func parseExplicitHashKey(s string) (shard.HashKey, error) {
	h, ok := shard.ParseHashKey(s)
	if !ok {
		return h, &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonExplicitHashKey, Field: "ExplicitHashKey", Value: s,
			Msg: fmt.Sprintf("ExplicitHashKey %q is not a decimal in [0, 2^128-1]", s)}
	}
	return h, nil
}

// validateRetention checks a retention period against the DB's bounds.
func (db *DB) validateRetention(d time.Duration) error {
	if d < db.opts.MinRetention || d > maxRetention {
		return &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonRetentionRange, Field: "Retention",
			Actual: d.Milliseconds(), Limit: db.opts.MinRetention.Milliseconds(), Requested: maxRetention.Milliseconds(),
			Msg: fmt.Sprintf("Retention %v must be in [%v, %v]", d, db.opts.MinRetention, maxRetention)}
	}
	return nil
}
