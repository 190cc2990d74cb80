package server

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/kvstream/kvstream/engine"
)

// pow80Digits is 2^80.
func TestPow80Digits(t *testing.T) {
	want := new(big.Int).Lsh(big.NewInt(1), 80).String()
	if got := digitWords(want); got != pow80Digits {
		t.Fatalf("pow80Digits is not 2^80 = %s", want)
	}
}

// seqDigits prints every number as AppendTo does: runs of consecutive
// counters (the incremental path, with and without the second moving on),
// runs of several shards interleaved, and everything that breaks a run
// (gaps, counters going back, another shard or creation time sharing the
// slot, written going back or jumping far, the counter wrapping, fields
// past their bits).
func TestSeqDigitsMatchesAppendTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var c seqDigits
	check := func(n engine.SequenceNumber) {
		t.Helper()
		want := n.AppendTo(nil)
		got := c.appendSeq([]byte("x"), n)
		if string(got[1:]) != string(want) || got[0] != 'x' {
			t.Fatalf("%+v: got %s, want %s", n, got[1:], want)
		}
	}
	randSeq := func() engine.SequenceNumber {
		return engine.SequenceNumber{
			ShardCreated: rng.Uint64() & secsMask,
			Shard:        rng.Uint32N(20),
			Counter:      rng.Uint64N(maxCounter),
			Written:      rng.Uint64() & secsMask,
		}
	}
	const shards = 12 // more than the slots: runs evict each other
	var runs [shards]engine.SequenceNumber
	for i := range runs {
		runs[i] = randSeq()
		runs[i].Shard = uint32(i)
		// Small counters and numbers whose low digits are all nines make
		// long carry chains; so do counters near the top.
		switch i % 4 {
		case 0:
			runs[i].Counter = rng.Uint64N(1000)
		case 1:
			runs[i].Counter = maxCounter - rng.Uint64N(1000)
		}
	}
	for range 300_000 {
		i := rng.IntN(shards)
		n := &runs[i]
		switch r := rng.IntN(100); {
		case r < 80:
			n.Counter++
		case r < 90:
			n.Counter++
			n.Written++
		case r < 92:
			n.Counter++
			n.Written += rng.Uint64N(1 << 28)
		case r < 94:
			n.Counter += rng.Uint64N(5)
			n.Written -= rng.Uint64N(3)
		case r < 96:
			n.ShardCreated = rng.Uint64() & secsMask
		case r < 97:
			n.Written = secsMask // the next second wraps the masked field
		case r < 98:
			n.Counter = ^uint64(0) - rng.Uint64N(3) // past MaxCounter, wrapping
		default:
			*n = randSeq()
			n.Shard = uint32(i)
			n.ShardCreated |= rng.Uint64() &^ secsMask // bits AppendTo masks
			n.Written |= rng.Uint64() &^ secsMask
		}
		check(*n)
	}
	check(engine.SequenceNumber{}) // the zero value: 56 digits too
	check(engine.SequenceNumber{Counter: 1})
}

// addDigits agrees with math/big on sums with carry chains of every
// length (digits that are nines from some position down), with and
// without a carry out of the 56th digit.
func TestAddDigitsCarryChains(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	addends := []string{"1208925819614629174706176", "1", "9999999999999999999", "68719476736"}
	for range 20000 {
		var d [seqDigitsLen]byte
		for i := range d {
			d[i] = byte('0' + rng.IntN(10))
		}
		nines := rng.IntN(seqDigitsLen + 1) // the low digits all nines
		for i := seqDigitsLen - nines; i < seqDigitsLen; i++ {
			d[i] = '9'
		}
		add := addends[rng.IntN(len(addends))]
		if rng.IntN(4) == 0 {
			add = strconv.FormatUint(rng.Uint64(), 10)
		}
		sum, _ := new(big.Int).SetString(string(d[:]), 10)
		a, _ := new(big.Int).SetString(add, 10)
		sum.Add(sum, a)
		want := fmt.Sprintf("%056s", sum.String())
		c := digitWords(add)
		got := d
		ok := addDigits(&got, &c)
		if ok != (len(want) == seqDigitsLen) || ok && string(got[:]) != want {
			t.Fatalf("%s + %s: got %s (%v), want %s", d[:], add, got[:], ok, want)
		}
	}
}

func BenchmarkSeqDigits(b *testing.B) {
	n := engine.SequenceNumber{ShardCreated: 1_700_000_000, Shard: 3, Counter: 123_456_789, Written: 1_700_000_123}
	var c seqDigits
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		n.Counter++
		buf = c.appendSeq(buf[:0], n)
	}
}

// maxCounter is the engine's largest counter (shard.MaxCounter).
const maxCounter = 1<<63 - 1
