package server

import (
	"encoding/binary"
	"math/bits"

	"github.com/kvstream/kvstream/engine"
)

// Sequence numbers in responses, printed incrementally. A sequence number
// is a 56-digit decimal of a 188-bit value (shard.SequenceNumber), and
// printing one from scratch (SequenceNumber.AppendTo: three rounds of
// 128-bit division) costs about as much as decoding the record it names.
// But the numbers of a response come in runs: a PutRecords' records of one
// shard get consecutive counters in one commit, a GetRecords page is one
// shard's consecutive records. The value is linear in its fields,
//
//	V = K(ShardCreated, Shard) + Counter·2^80 + Written·2^36
//
// (Written masked to its 36 bits), so the next number of a run is the
// previous one's digits plus the digits of 2^80, plus those of ΔWritten·2^36
// when the second moved on, added in place eight decimal digits at a time.
// Anything else is printed from scratch; the result is the same bytes
// either way (TestSeqDigitsMatchesAppendTo).

// seqDigitsLen is the length of every well-formed sequence number: the
// value's top nibble is 2, so it lies in [2^185, 2^186), 56 digits.
const seqDigitsLen = 56

// seqDigitsSlots is how many shards' runs seqDigits follows at once
// (slot = shard index mod seqDigitsSlots).
const seqDigitsSlots = 8

// seqDigits appends sequence numbers, remembering the last one printed of
// up to seqDigitsSlots shards. The zero value is ready to use; it is not
// safe for concurrent use (one per response being built).
type seqDigits struct {
	slots [seqDigitsSlots]seqSlot
}

type seqSlot struct {
	ok bool
	n  engine.SequenceNumber
	d  [seqDigitsLen]byte // n's digits, ASCII
}

const (
	secsMask  = 1<<36 - 1
	digitOnes = 0x0101010101010101
	asciiZero = '0' * digitOnes
)

// pow80Digits is 2^80 as decimal digit values (not ASCII) in seqSlot.d's
// layout: seven big-endian words of eight digits, the last one least
// significant.
var pow80Digits = digitWords("1208925819614629174706176")

// digitWords lays out the decimal s (at most 56 digits) as digit values
// right-aligned in seven big-endian 8-digit words.
func digitWords(s string) (w [seqDigitsLen / 8]uint64) {
	var d [seqDigitsLen]byte
	copy(d[seqDigitsLen-len(s):], s)
	for i := range d {
		if d[i] != 0 {
			d[i] -= '0'
		}
	}
	for k := range w {
		w[k] = binary.BigEndian.Uint64(d[8*k:])
	}
	return w
}

// appendSeq appends n's decimal form, exactly as n.AppendTo(dst) does.
func (c *seqDigits) appendSeq(dst []byte, n engine.SequenceNumber) []byte {
	s := &c.slots[n.Shard%seqDigitsSlots]
	if s.ok && s.next(n) {
		return append(dst, s.d[:]...)
	}
	before := len(dst)
	dst = n.AppendTo(dst)
	s.ok = len(dst)-before == seqDigitsLen
	if s.ok {
		s.n = n
		copy(s.d[:], dst[before:])
	}
	return dst
}

// next turns s into n when n is the number after s.n in its shard's run
// (same shard, counter one more, written the same or later), reporting
// whether it did; s is unchanged when it did not, or emptied.
func (s *seqSlot) next(n engine.SequenceNumber) bool {
	p := s.n
	if n.ShardCreated != p.ShardCreated || n.Shard != p.Shard || n.Counter != p.Counter+1 || n.Counter == 0 {
		return false
	}
	w, pw := n.Written&secsMask, p.Written&secsMask
	// ΔWritten·2^36 must stay below 10^19, the three words addDigits
	// takes it in.
	if w < pw || w-pw >= 1<<27 {
		return false
	}
	if !addDigits(&s.d, &pow80Digits) {
		s.ok = false // cannot happen: every value has 56 digits
		return false
	}
	if w > pw {
		var dw [seqDigitsLen / 8]uint64
		v := (w - pw) << 36
		for k := len(dw) - 1; v != 0; k-- {
			// Eight digits into word k, least significant in the low byte.
			x := v % 1e8
			v /= 1e8
			var word uint64
			for j := range 8 {
				word |= (x % 10) << (8 * j)
				x /= 10
			}
			dw[k] = word
		}
		if !addDigits(&s.d, &dw) {
			s.ok = false
			return false
		}
	}
	s.n = n
	return true
}

// addDigits adds the decimal c (digit values in seqSlot.d's word layout)
// to the ASCII digits d, reporting false if the sum needs a 57th digit (d
// is then garbage). Eight digits at a time: each digit pair's sum plus 0xF6
// overflows its byte exactly when the sum is 10 or more, which carries 1
// into the next digit as the binary addition's own carry; the bytes that
// did not overflow get their 0xF6 taken back.
func addDigits(d *[seqDigitsLen]byte, c *[seqDigitsLen / 8]uint64) bool {
	var carry uint64
	for k := len(c) - 1; k >= 0; k-- {
		if c[k] == 0 && carry == 0 {
			// The constants here are right-aligned, so the higher
			// words of c are zero too: nothing more changes.
			if allZero(c[:k]) {
				return true
			}
		}
		x := binary.BigEndian.Uint64(d[8*k:]) - asciiZero
		var sum uint64
		sum, carry = bits.Add64(x, c[k]+0xF6*digitOnes, carry)
		kept := (sum & (0x80 * digitOnes)) >> 7 // bytes that did not overflow
		sum -= kept * 0xF6
		binary.BigEndian.PutUint64(d[8*k:], sum+asciiZero)
	}
	return carry == 0
}

func allZero(w []uint64) bool {
	for _, x := range w {
		if x != 0 {
			return false
		}
	}
	return true
}
