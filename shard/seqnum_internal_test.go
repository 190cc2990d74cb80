package shard

import (
	"fmt"
	"math/big"
	"math/bits"
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

// div1e19 agrees with bits.Div64 for random dividends and the edges.
func TestDiv1e19MatchesDiv64(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(u1, u0 uint64) {
		wq, wr := bits.Div64(u1, u0, 1e19)
		q, r := div1e19(u1, u0)
		if q != wq || r != wr {
			t.Fatalf("div1e19(%d, %d) = %d, %d; want %d, %d", u1, u0, q, r, wq, wr)
		}
	}
	edges := []uint64{0, 1, 1e19 - 1, 1e19, 1e19 + 1, 1 << 63, ^uint64(0), ^uint64(0) - 1}
	for _, u1 := range []uint64{0, 1, 1e19 - 2, 1e19 - 1, 1 << 62} {
		for _, u0 := range edges {
			check(u1, u0)
		}
	}
	for range 200000 {
		check(rng.Uint64N(1e19), rng.Uint64())
	}
}

// put8 writes the same digits as strconv, for every 4-digit lane value and
// random 8-digit numbers.
func TestPut8MatchesStrconv(t *testing.T) {
	check := func(x uint32) {
		var d [8]byte
		put8(&d, x)
		if want := fmt.Sprintf("%08d", x); string(d[:]) != want {
			t.Fatalf("put8(%d) = %q, want %q", x, d[:], want)
		}
	}
	for x := range uint32(10000) {
		check(x)
		check(x * 10000)
		check(x*10000 + 9999 - x)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		check(rng.Uint32N(1e8))
	}
	check(1e8 - 1)
}
