package shard

import "strconv"

// ShardID is a shard's index within its stream. Indexes are assigned
// consecutively over the stream's life and never reused.
type ShardID uint32

// String returns the Kinesis form, "shardId-" and 12 zero-padded digits.
func (id ShardID) String() string {
	var buf [20]byte
	b := append(buf[:0], "shardId-"...)
	s := strconv.AppendUint(nil, uint64(id), 10)
	for i := len(s); i < 12; i++ {
		b = append(b, '0')
	}
	return string(append(b, s...))
}

// ParseShardID parses a shard id leniently, as Kinesis does: the number
// after the first '-' is used if it is in [0, 2^31-1], so "shardId-5" and
// "shardId-000000000005" name the same shard. ok is false otherwise.
func ParseShardID(s string) (ShardID, bool) {
	if len(s) == 0 || len(s) > 128 {
		return 0, false
	}
	i := 0
	for i < len(s) && s[i] != '-' {
		i++
	}
	if i == len(s) {
		return 0, false
	}
	v, err := strconv.ParseUint(s[i+1:], 10, 31)
	if err != nil {
		return 0, false
	}
	return ShardID(v), true
}
