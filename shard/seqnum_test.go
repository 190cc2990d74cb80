package shard_test

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// The AWS sample from KINESIS.md §3.3.
const awsSample = "49647060812288014558888668248263847763900017820167045122"

func TestSequenceNumberDecodesAWSSample(t *testing.T) {
	n, ok := shard.ParseSequenceNumber(awsSample)
	require.True(t, ok)
	require.Equal(t, uint32(0), n.Shard)
	require.Equal(t, uint64(26054), n.Counter)
	require.Equal(t, time.Date(2023, 12, 5, 3, 24, 37, 0, time.UTC).Unix(), int64(n.ShardCreated))
	require.Equal(t, time.Date(2023, 12, 5, 7, 9, 12, 0, time.UTC).Unix(), int64(n.Written))
	require.Equal(t, awsSample, n.String(), "re-encoding gives the same digits")
}

// TestSequenceNumberLayout checks the encoding against an independent
// math/big construction of the 47-nibble layout.
func TestSequenceNumberLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		n := shard.SequenceNumber{
			ShardCreated: rng.Uint64() & (1<<36 - 1),
			Shard:        rng.Uint32(),
			Counter:      rng.Uint64() & shard.MaxCounter,
			Written:      rng.Uint64() & (1<<36 - 1),
		}
		if rng.IntN(3) == 0 {
			n.Shard = uint32(rng.IntN(16))
		}
		hex := fmt.Sprintf("2%09x%01x%016x00%09x%08x2", n.ShardCreated, n.Shard&0xf, n.Counter, n.Written, n.Shard)
		require.Len(t, hex, 47)
		want, _ := new(big.Int).SetString(hex, 16)
		s := n.String()
		require.Equal(t, want.String(), s)
		require.Len(t, s, 56, "every number has AWS's 56 digits")
		back, ok := shard.ParseSequenceNumber(s)
		require.True(t, ok, s)
		require.Equal(t, n, back)
		b, err := n.MarshalText()
		require.NoError(t, err)
		var u shard.SequenceNumber
		require.NoError(t, u.UnmarshalText(b))
		require.Equal(t, n, u)
	}
}

func TestSequenceNumberEdgesAre56Digits(t *testing.T) {
	for _, n := range []shard.SequenceNumber{
		{},
		{Counter: 1},
		{ShardCreated: 1<<36 - 1, Shard: ^uint32(0), Counter: shard.MaxCounter, Written: 1<<36 - 1},
		{ShardCreated: 1700000000, Shard: 5, Counter: shard.MaxCounter, Written: 1700000001},
	} {
		s := n.String()
		require.Len(t, s, 56, "%+v", n)
		back, ok := shard.ParseSequenceNumber(s)
		require.True(t, ok)
		require.Equal(t, n, back)
	}
	require.True(t, shard.SequenceNumber{}.IsZero())
	require.False(t, shard.SequenceNumber{Counter: 1}.IsZero())
}

// Within one shard, numbers order like their counters, both as big
// integers and as strings (equal length).
func TestSequenceNumberOrderFollowsCounter(t *testing.T) {
	base := shard.SequenceNumber{ShardCreated: 1750000000, Shard: 3}
	prev := new(big.Int)
	prevS := ""
	for _, c := range []uint64{0, 1, 2, 255, 256, 1 << 32, 1<<48 - 1, 1 << 48, shard.MaxCounter - 1, shard.MaxCounter} {
		n := base
		n.Counter = c
		// A later write time of an earlier record must not reorder it.
		n.Written = 1750000000 + 1000 - uint64(c%1000)
		s := n.String()
		b, _ := new(big.Int).SetString(s, 10)
		require.Equal(t, 1, b.Cmp(prev), "counter %d", c)
		require.Greater(t, s, prevS)
		prev, prevS = b, s
	}
}

func TestParseSequenceNumberRejects(t *testing.T) {
	valid := shard.SequenceNumber{ShardCreated: 1750000000, Shard: 7, Counter: 42, Written: 1750000001}.String()
	bad := []string{
		"", "0", "1", "-1", " " + valid, valid + " ", valid[:55], valid + "0",
		strings.Replace(valid, valid[10:11], "x", 1),
		"49545115243490985018280067714973144582180062593244200961", // 56 digits, top nibble 1
		"21269647605082290318165018318298316802",                   // a 38-digit (2014) number
		strings.Repeat("9", 56), strings.Repeat("9", 58), strings.Repeat("9", 200),
	}
	// Nibble-level corruptions of a valid number.
	mk := func(hex string) string {
		b, _ := new(big.Int).SetString(hex, 16)
		return b.String()
	}
	bad = append(bad,
		mk("3"+strings.Repeat("0", 45)+"2"),                                        // top nibble 3
		mk("2"+strings.Repeat("0", 45)+"3"),                                        // bottom nibble 3
		mk("2"+"000000000"+"0"+"8000000000000000"+"00"+"000000000"+"00000000"+"2"), // counter top bit set
		mk("2"+"000000000"+"0"+"0000000000000001"+"01"+"000000000"+"00000000"+"2"), // the "00" byte is not zero
		mk("2"+"000000000"+"1"+"0000000000000001"+"00"+"000000000"+"00000002"+"2"), // low shard nibbles disagree
	)
	for _, s := range bad {
		_, ok := shard.ParseSequenceNumber(s)
		require.False(t, ok, "%q must be rejected", s)
	}
	var n shard.SequenceNumber
	require.ErrorIs(t, n.UnmarshalText([]byte("12")), shard.ErrInvalidArgument)
}

func TestErrorWrapsKindAndCause(t *testing.T) {
	cause := fmt.Errorf("disk on fire")
	err := error(&shard.Error{Kind: shard.ErrWriteFailed, Msg: "commit failed", Cause: cause})
	require.ErrorIs(t, err, shard.ErrWriteFailed)
	require.ErrorIs(t, err, cause)
	require.NotErrorIs(t, err, shard.ErrClosed)
	require.Equal(t, "commit failed", shard.Message(err))
	require.Equal(t, "kvstream: write failed: commit failed: disk on fire", err.Error())
	e2 := shard.Errorf(shard.ErrValidation, "Limit %d must be in [1, %d]", 0, 10000)
	require.ErrorIs(t, e2, shard.ErrValidation)
	require.Equal(t, "kvstream: validation failed: Limit 0 must be in [1, 10000]", e2.Error())
	require.Equal(t, "plain", shard.Message(fmt.Errorf("plain")))
	require.True(t, shard.IsCorruptionError(fmt.Errorf("x: %w", shard.ErrCorruption)))
	// Every sentinel carries the package prefix.
	for _, s := range []error{shard.ErrClosed, shard.ErrStreamNotFound, shard.ErrStreamExists, shard.ErrShardNotFound,
		shard.ErrConsumerNotFound, shard.ErrValidation, shard.ErrInvalidArgument, shard.ErrExpiredIterator,
		shard.ErrThroughputExceeded, shard.ErrStreamFull, shard.ErrResourceInUse, shard.ErrLimitExceeded,
		shard.ErrInvalidOptions, shard.ErrLocked, shard.ErrCorruption, shard.ErrWriteFailed} {
		require.True(t, strings.HasPrefix(s.Error(), "kvstream: "), s.Error())
	}
}
