package server

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// How AWS reads shard ids and the sequence numbers clients give
// GetShardIterator, as recorded from AWS by kinesalite's conformance tests.

// parseShardID reads a shard id as AWS does: the text between the first
// and the second '-' (the whole id when there is none) must be decimal
// digits naming a shard index in [0, 2^31−1], so "shardId-5", "x-5-y" and
// "5" all mean shardId-000000000005.
func parseShardID(s string) (engine.ShardID, bool) {
	p := s
	if parts := strings.SplitN(s, "-", 3); len(parts) > 1 && parts[1] != "" {
		p = parts[1]
	}
	if p == "" || !allDigits(p) {
		return 0, false
	}
	v, err := strconv.ParseUint(p, 10, 64)
	if err != nil || v > math.MaxInt32 {
		return 0, false
	}
	return engine.ShardID(v), true
}

// shardName prints a shard index as AWS does (Java's %012d, so a negative
// index read from a sequence number prints as shardId--02147483648).
func shardName(ix int64) string { return fmt.Sprintf("shardId-%012d", ix) }

// awsSequence is what AWS reads from a sequence number: the layout version
// (0 for the old 33-nibble layout, else the last nibble), the shard index
// and the shard's creation time in seconds.
type awsSequence struct {
	version    int
	shard      int64
	createSecs int64
}

var (
	pow2x124 = new(big.Int).Lsh(big.NewInt(1), 124)
	pow2x129 = new(big.Int).Lsh(big.NewInt(1), 129)
	pow2x185 = new(big.Int).Lsh(big.NewInt(1), 185)
	pow1x185 = new(big.Int).Lsh(big.NewInt(3), 184) // 1.5·2^185
)

// parseAWSSequence reads s (decimal digits) as AWS does; ok is false for a
// number AWS calls invalid.
func parseAWSSequence(s string) (q awsSequence, ok bool) {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return q, false
	}
	if n.Cmp(pow2x124) < 0 {
		n.Add(n, pow2x124)
	}
	hex := n.Text(16)
	nib := func(from, to int) int64 {
		v, _ := strconv.ParseUint(hex[from:to], 16, 64)
		return int64(v)
	}
	switch {
	case n.Cmp(pow2x129) < 0:
		q.version = 0
		q.createSecs = nib(1, 10)
		if q.createSecs >= maxV0CreateSecs {
			return q, false
		}
		q.shard = nib(28, 32)
	case n.Cmp(pow2x185) > 0 && n.Cmp(pow1x185) < 0:
		q.version = int(nib(len(hex)-1, len(hex)))
		q.createSecs = nib(1, 10)
		switch q.version {
		case 2:
			if hexVal(hex[11]) > 7 { // the counter's top bit
				return q, false
			}
			q.shard = int64(int32(uint32(nib(38, 46))))
		case 1:
			q.shard = nib(38, 46)
		default:
			return q, false
		}
	default:
		return q, false
	}
	return q, true
}

// startingPosition checks a GetShardIterator StartingSequenceNumber
// against shard id of the stream as AWS does, and returns the position.
func (s *Server) startingSequence(stream string, id engine.ShardID, typ, seq string) (engine.StartPosition, *apiError) {
	d, err := s.db.DescribeStream(stream)
	if err != nil {
		return engine.StartPosition{}, s.shardIteratorError(err, stream, id)
	}
	var created uint64
	found := false
	for _, sd := range d.Shards {
		if sd.ShardID == id {
			created, found = sd.StartingSequenceNumber.ShardCreated, true
		}
	}
	if !found || s.statusOf(stream, d.Status) == engine.StatusCreating {
		return engine.StartPosition{}, s.shardNotExist(stream, id)
	}
	q, ok := parseAWSSequence(seq)
	if !ok {
		return engine.StartPosition{}, newAPIError(errInvalidArgument, "StartingSequenceNumber "+seq+" used in GetShardIterator on shard "+
			id.String()+" in stream "+stream+" under account "+s.cfg.Account+" is invalid.")
	}
	if q.shard != int64(id) {
		return engine.StartPosition{}, newAPIError(errInvalidArgument, "Invalid StartingSequenceNumber. It encodes "+shardName(q.shard)+
			", while it was used in a call to a shard with "+id.String())
	}
	n, ok := engine.ParseSequenceNumber(seq)
	if q.version != 2 || q.createSecs != int64(created) || !ok {
		if q.version == 0 {
			return engine.StartPosition{}, newAPIError(errInternalFailure, "") // as AWS answers
		}
		return engine.StartPosition{}, newAPIError(errInvalidArgument, "StartingSequenceNumber "+seq+" used in GetShardIterator on shard "+
			id.String()+" in stream "+stream+" under account "+s.cfg.Account+" is invalid because it did not come from this stream.")
	}
	if typ == "AT_SEQUENCE_NUMBER" {
		return engine.AtSequenceNumber(n), nil
	}
	return engine.AfterSequenceNumber(n), nil
}

// shardNotExist is AWS's ResourceNotFoundException for a shard of a
// stream that is not there (or a stream that is not).
func (s *Server) shardNotExist(stream string, id engine.ShardID) *apiError {
	return newAPIError(errResourceNotFound, "Shard "+id.String()+" in stream "+stream+" under account "+s.cfg.Account+" does not exist")
}

// shardIteratorError renders an engine error of GetShardIterator: a
// missing stream is reported as its shard not existing, as AWS does.
func (s *Server) shardIteratorError(err error, stream string, id engine.ShardID) *apiError {
	if isStreamNotFound(err) {
		return s.shardNotExist(stream, id)
	}
	return s.engineError(err, stream)
}

// atTimestamp converts an AT_TIMESTAMP time as AWS compares it: arrival
// times are whole milliseconds and a fraction of a millisecond rounds up
// (a record that arrived at 1.749 s is not at or after 1.7491 s).
func atTimestamp(t time.Time) time.Time {
	if r := t.Sub(t.Truncate(time.Millisecond)); r > 0 {
		return t.Truncate(time.Millisecond).Add(time.Millisecond)
	}
	return t
}

// isStreamNotFound reports whether err is the engine's missing stream.
func isStreamNotFound(err error) bool { return errors.Is(err, engine.ErrStreamNotFound) }

// exactSeconds reads a JSON number of epoch seconds exactly (a float64
// cannot hold 1764000000.123), rounding a fraction of a nanosecond up.
func exactSeconds(lit string) (time.Time, bool) {
	r, ok := new(big.Rat).SetString(lit)
	if !ok {
		return time.Time{}, false
	}
	ns := new(big.Rat).Mul(r, big.NewRat(1e9, 1))
	q, m := new(big.Int).QuoRem(ns.Num(), ns.Denom(), new(big.Int))
	if m.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	// Seconds and nanoseconds apart: ±1e14 s (the range fromSeconds
	// accepts) overflows int64 nanoseconds.
	sec, nsec := new(big.Int).QuoRem(q, big.NewInt(1e9), new(big.Int))
	if nsec.Sign() < 0 {
		sec.Sub(sec, big.NewInt(1))
		nsec.Add(nsec, big.NewInt(1e9))
	}
	if !sec.IsInt64() || sec.Int64() > 1e14 || sec.Int64() < -1e14 {
		return time.Time{}, false
	}
	return time.Unix(sec.Int64(), nsec.Int64()).UTC(), true
}
