package shard_test

import (
	"crypto/md5"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

var (
	two128  = new(big.Int).Lsh(big.NewInt(1), 128)
	maxHash = new(big.Int).Sub(two128, big.NewInt(1))
)

func bigOf(t *testing.T, h shard.HashKey) *big.Int {
	t.Helper()
	b, ok := new(big.Int).SetString(h.String(), 10)
	require.True(t, ok)
	return b
}

// wantRanges computes Kinesis' CreateStream ranges independently with
// math/big: step = floor(2^128/n), range i = [i*step, (i+1)*step-1], the
// last one ends at 2^128-1.
func wantRanges(n int) [][2]*big.Int {
	step := new(big.Int).Div(two128, big.NewInt(int64(n)))
	out := make([][2]*big.Int, n)
	for i := range n {
		start := new(big.Int).Mul(step, big.NewInt(int64(i)))
		end := new(big.Int).Sub(new(big.Int).Add(start, step), big.NewInt(1))
		if i == n-1 {
			end = new(big.Int).Set(maxHash)
		}
		out[i] = [2]*big.Int{start, end}
	}
	return out
}

func TestSplitHashSpaceExact(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 7, 10, 16, 1000, 10000} {
		got := shard.SplitHashSpace(n)
		want := wantRanges(n)
		require.Len(t, got, n)
		for i := range n {
			require.Equal(t, want[i][0].String(), got[i].Start.String(), "n=%d range %d start", n, i)
			require.Equal(t, want[i][1].String(), got[i].End.String(), "n=%d range %d end", n, i)
		}
	}
	require.Nil(t, shard.SplitHashSpace(0))
	require.Nil(t, shard.SplitHashSpace(-1))
}

func TestSplitHashSpaceKnownValues(t *testing.T) {
	const max = "340282366920938463463374607431768211455"
	// N=1: the whole space.
	r := shard.SplitHashSpace(1)
	require.Equal(t, "0", r[0].Start.String())
	require.Equal(t, max, r[0].End.String())
	require.Equal(t, shard.MaxHashKey, r[0].End)
	// N=2 splits at 2^127.
	r = shard.SplitHashSpace(2)
	require.Equal(t, "170141183460469231731687303715884105727", r[0].End.String())
	require.Equal(t, "170141183460469231731687303715884105728", r[1].Start.String())
	require.Equal(t, max, r[1].End.String())
	// N=3, as checked against AWS (KINESIS.md §3.2).
	r = shard.SplitHashSpace(3)
	require.Equal(t, [][2]string{
		{"0", "113427455640312821154458202477256070484"},
		{"113427455640312821154458202477256070485", "226854911280625642308916404954512140969"},
		{"226854911280625642308916404954512140970", max},
	}, [][2]string{
		{r[0].Start.String(), r[0].End.String()},
		{r[1].Start.String(), r[1].End.String()},
		{r[2].Start.String(), r[2].End.String()},
	})
	// N=7: the last range absorbs the remainder (2^128 mod 7 = 4).
	r = shard.SplitHashSpace(7)
	step := new(big.Int).Div(two128, big.NewInt(7))
	require.Equal(t, step.String(), r[1].Start.String())
	require.Equal(t, "48611766702991209066196372490252601636", r[1].Start.String())
	require.Equal(t, new(big.Int).Mul(step, big.NewInt(6)).String(), r[6].Start.String())
	require.Equal(t, max, r[6].End.String())
	lastLen := new(big.Int).Sub(maxHash, bigOf(t, r[6].Start))
	require.Equal(t, new(big.Int).Add(step, big.NewInt(3)).String(), lastLen.String(), "last range holds step+4 keys")
}

func TestPartitionerMD5MatchesKinesis(t *testing.T) {
	require.Equal(t, "16955237001963240173058271559858726497", shard.PartitionerMD5.Hash("a").String())
	// Any key: MD5 as an unsigned big-endian 128-bit integer.
	for _, k := range []string{"", "NY", "user-42", "ü€𝄞", string(make([]byte, 256))} {
		sum := md5.Sum([]byte(k))
		require.Equal(t, new(big.Int).SetBytes(sum[:]).String(), shard.PartitionerMD5.Hash(k).String(), k)
	}
}

func TestPartitionerXXHashHighBitsAndStable(t *testing.T) {
	h := shard.PartitionerXXHash.Hash("NY")
	require.Zero(t, h.Lo, "xxhash64 sits in the high 64 bits")
	require.Equal(t, h, shard.PartitionerXXHash.Hash("NY"))
	require.NotEqual(t, h, shard.PartitionerXXHash.Hash("NJ"))
	require.Equal(t, "xxhash", shard.PartitionerXXHash.String())
	require.Equal(t, "md5", shard.PartitionerMD5.String())
	require.True(t, shard.PartitionerMD5.Valid())
	require.False(t, shard.Partitioner(2).Valid())
}

func TestParseHashKey(t *testing.T) {
	ok := []string{"0", "1", "9", "18446744073709551615", "18446744073709551616",
		"340282366920938463463374607431768211455"}
	for _, s := range ok {
		h, good := shard.ParseHashKey(s)
		require.True(t, good, s)
		require.Equal(t, s, h.String())
	}
	bad := []string{"", "-1", "+1", " 1", "1 ", "1.5", "1e3", "0x10", "abc",
		"340282366920938463463374607431768211456",  // 2^128
		"340282366920938463463374607431768211465",  // 2^128 + 9 (carry in the last digit)
		"999999999999999999999999999999999999999",  // 39 nines
		"1000000000000000000000000000000000000000", // 40 digits
		"٣", // a non-ASCII digit
	}
	for _, s := range bad {
		_, good := shard.ParseHashKey(s)
		require.False(t, good, "%q must be rejected", s)
	}
	// Random round trips against math/big.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		h := shard.HashKey{Hi: rng.Uint64(), Lo: rng.Uint64()}
		if rng.IntN(4) == 0 {
			h.Hi = 0
		}
		s := h.String()
		b, _ := new(big.Int).SetString(s, 10)
		want := new(big.Int).Lsh(new(big.Int).SetUint64(h.Hi), 64)
		want.Add(want, new(big.Int).SetUint64(h.Lo))
		require.Equal(t, want.String(), b.String())
		back, good := shard.ParseHashKey(s)
		require.True(t, good)
		require.Equal(t, h, back)
	}
}

func TestHashKeyArithmetic(t *testing.T) {
	a := shard.HashKey{Hi: 0, Lo: ^uint64(0)}
	require.Equal(t, shard.HashKey{Hi: 1, Lo: 0}, a.Add(1))
	require.Equal(t, a, a.Add(1).Sub(1))
	require.Equal(t, shard.HashKey{}, shard.MaxHashKey.Add(1), "Add wraps at 2^128")
	require.Equal(t, -1, a.Cmp(a.Add(1)))
	require.Equal(t, 1, shard.MaxHashKey.Cmp(a))
	require.Equal(t, 0, a.Cmp(a))
	require.Equal(t, shard.HashKey{Hi: 1 << 63}.String(), "170141183460469231731687303715884105728")
	m := shard.Mid(shard.HashKey{}, shard.MaxHashKey)
	require.Equal(t, "170141183460469231731687303715884105727", m.String())
	r := shard.HashRange{Start: shard.HashKey{Lo: 10}, End: shard.HashKey{Lo: 20}}
	require.True(t, r.Contains(shard.HashKey{Lo: 10}))
	require.True(t, r.Contains(shard.HashKey{Lo: 20}))
	require.False(t, r.Contains(shard.HashKey{Lo: 9}))
	require.False(t, r.Contains(shard.HashKey{Lo: 21}))

	var h shard.HashKey
	require.NoError(t, h.UnmarshalText([]byte("340282366920938463463374607431768211455")))
	require.Equal(t, shard.MaxHashKey, h)
	err := h.UnmarshalText([]byte("340282366920938463463374607431768211456"))
	require.ErrorIs(t, err, shard.ErrValidation)
	b, err := shard.MaxHashKey.MarshalText()
	require.NoError(t, err)
	require.Equal(t, "340282366920938463463374607431768211455", string(b))
}

func TestShardIDs(t *testing.T) {
	require.Equal(t, "shardId-000000000000", shard.ShardID(0).String())
	require.Equal(t, "shardId-000000000042", shard.ShardID(42).String())
	require.Equal(t, "shardId-002147483647", shard.ShardID(1<<31-1).String())
	for s, want := range map[string]shard.ShardID{
		"shardId-000000000005": 5, "shardId-5": 5, "x-5": 5, "shardId-2147483647": 1<<31 - 1,
	} {
		id, ok := shard.ParseShardID(s)
		require.True(t, ok, s)
		require.Equal(t, want, id, s)
	}
	for _, s := range []string{"", "shardId", "shardId-", "shardId-x", "shardId--1", "shardId-2147483648", "5"} {
		_, ok := shard.ParseShardID(s)
		require.False(t, ok, "%q", s)
	}
}
