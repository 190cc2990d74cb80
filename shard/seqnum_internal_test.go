package shard

import (
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// AppendTo agrees with math/big's decimal formatting of the same 188-bit
// value, for random numbers and for the edges of every field.
func TestSequenceNumberAppendToMatchesBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(n SequenceNumber) {
		w0, w1, w2 := n.words()
		v := new(big.Int).SetUint64(w0)
		v.Lsh(v, 64).Or(v, new(big.Int).SetUint64(w1))
		v.Lsh(v, 64).Or(v, new(big.Int).SetUint64(w2))
		require.Equal(t, v.String(), string(n.AppendTo(nil)), "%+v", n)
	}
	for _, c := range []uint64{0, 1, 9, 10, 99, 100, 1e18, 1e19 - 1, MaxCounter} {
		check(SequenceNumber{Counter: c})
		check(SequenceNumber{ShardCreated: secsMask, Shard: ^uint32(0), Counter: c, Written: secsMask})
	}
	for range 20000 {
		check(SequenceNumber{
			ShardCreated: rng.Uint64() & secsMask,
			Shard:        rng.Uint32(),
			Counter:      rng.Uint64() & MaxCounter,
			Written:      rng.Uint64() & secsMask,
		})
	}
}

func BenchmarkSequenceNumberAppendTo(b *testing.B) {
	n := SequenceNumber{ShardCreated: 1_700_000_000, Shard: 3, Counter: 123_456_789, Written: 1_700_000_123}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = n.AppendTo(buf[:0])
	}
}
