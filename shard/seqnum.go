package shard

import (
	"encoding/binary"
	"math/bits"
)

// SequenceNumber identifies one record of one shard. Externally it is a
// 56-digit decimal in AWS's layout (47 hex nibbles, most significant
// first):
//
//	'2' | shardCreated(9) | shard&0xf(1) | counter(16, top bit 0) | "00" | written(9) | shard(8) | '2'
//
// so tools that parse real Kinesis sequence numbers accept ours, numbers of
// one shard sort by Counter, and a number carries the shard and the shard's
// creation second (unique per DB, see engine), which is how a number from
// another shard or stream is recognised. The zero value means "none".
type SequenceNumber struct {
	// ShardCreated is the shard's creation time in Unix seconds (36 bits).
	ShardCreated uint64
	// Shard is the shard index.
	Shard uint32
	// Counter is the per-shard position: 0 is the shard's starting number,
	// records count from 1 and MaxCounter marks a closed shard's end.
	Counter uint64
	// Written is the write time in Unix seconds (36 bits); it does not take
	// part in ordering.
	Written uint64
}

// MaxCounter is the counter of a closed shard's EndingSequenceNumber.
const MaxCounter = 1<<63 - 1

const secsMask = 1<<36 - 1

// IsZero reports whether n is the zero value.
func (n SequenceNumber) IsZero() bool { return n == SequenceNumber{} }

// words packs n into a 192-bit big-endian integer (w0 most significant).
// The 47 nibbles occupy the low 188 bits.
func (n SequenceNumber) words() (w0, w1, w2 uint64) {
	// Build nibble by nibble from the least significant end.
	// Low 64 bits: '2'(4) | shard(32) | written low 28 bits.
	w2 = 2 | uint64(n.Shard)<<4 | (n.Written&secsMask)<<36
	// Next: written high 8 bits | "00"(8) | counter(64) spans w1/w0.
	w1 = (n.Written&secsMask)>>28 | n.Counter<<16
	w0 = n.Counter>>48 | uint64(n.Shard&0xf)<<16 | (n.ShardCreated&secsMask)<<20 | 2<<56
	return
}

// String returns the 56-digit decimal form.
func (n SequenceNumber) String() string {
	var buf [58]byte
	return string(n.AppendTo(buf[:0]))
}

// digitPairs holds "00" through "99": AppendTo writes two digits per
// table lookup (a hot path of GetRecords and PutRecords responses).
const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// AppendTo appends the decimal form of n to dst.
func (n SequenceNumber) AppendTo(dst []byte) []byte {
	w0, w1, w2 := n.words()
	// The value is below 2^188 < 1e57: three rounds of dividing the
	// 192-bit value by 1e19, each giving 19 digits, least significant
	// first. The top word's division has no carry in, so it is a division
	// by a constant; the others divide 128 bits by multiplying with a
	// precomputed reciprocal (div1e19), several times faster than the
	// hardware's 128-bit divide.
	var digits [57]byte
	for c := 2; c >= 0; c-- {
		r := w0 % 1e19
		w0 /= 1e19
		w1, r = div1e19(r, w1)
		w2, r = div1e19(r, w2)
		put19((*[19]byte)(digits[c*19:]), r)
	}
	i := 0
	for i < len(digits)-1 && digits[i] == '0' {
		i++
	}
	return append(dst, digits[i:]...)
}

// recip1e19 is floor((2^128-1) / 1e19) - 2^64, the reciprocal div1e19
// multiplies by. 1e19 has its top bit set, as the method requires.
var recip1e19, _ = bits.Div64(^uint64(1e19), ^uint64(0), 1e19)

// div1e19 divides u1·2^64 + u0 by 1e19 (u1 < 1e19), returning quotient
// and remainder exactly as bits.Div64(u1, u0, 1e19) would: division by an
// invariant integer with a precomputed reciprocal (Möller and Granlund,
// "Improved division by invariant integers", 2011, algorithm 4).
func div1e19(u1, u0 uint64) (q, r uint64) {
	const d = 1e19
	q1, q0 := bits.Mul64(recip1e19, u1)
	var c uint64
	q0, c = bits.Add64(q0, u0, 0)
	q1, _ = bits.Add64(q1, u1+1, c)
	r = u0 - q1*d
	if r > q0 {
		q1--
		r += d
	}
	if r >= d {
		q1++
		r -= d
	}
	return q1, r
}

// put19 writes r (< 1e19) as 19 digits, in independent 8-digit halves of
// 32-bit arithmetic rather than one long chain of 64-bit divisions.
func put19(d *[19]byte, r uint64) {
	hi := r / 1e16 // at most 999
	rem := r - hi*1e16
	mid := uint32(rem / 1e8)
	lo := uint32(rem - uint64(mid)*1e8)
	d[0] = byte('0' + hi/100)
	p := (hi % 100) * 2
	d[1], d[2] = digitPairs[p], digitPairs[p+1]
	put8((*[8]byte)(d[3:]), mid)
	put8((*[8]byte)(d[11:]), lo)
}

// put8 writes x (< 1e8) as 8 digits, all eight at once in one 64-bit
// word: split into two 4-digit lanes, each lane into two 2-digit lanes
// (dividing by 100 as a multiply and shift: exact below 10,000), each of
// those into two digits (dividing by 10 likewise: exact below 100), then
// add '0' to every byte. The most significant digits sit in the low lanes,
// which a little-endian store writes first.
func put8(d *[8]byte, x uint32) {
	v := uint64(x/10000) | uint64(x%10000)<<32
	q := (v * 5243 >> 19) & 0x0000007f_0000007f
	v = q | (v-q*100)<<16
	q = (v * 103 >> 10) & 0x000f_000f_000f_000f
	v = q | (v-q*10)<<8
	binary.LittleEndian.PutUint64(d[:], v|0x3030_3030_3030_3030)
}

// ParseSequenceNumber parses the decimal form. It fails (ok false) on
// anything that is not a well-formed number in the layout above.
func ParseSequenceNumber(s string) (n SequenceNumber, ok bool) {
	if len(s) == 0 || len(s) > 57 {
		return SequenceNumber{}, false
	}
	var w0, w1, w2 uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return SequenceNumber{}, false
		}
		// w = w*10 + d over 192 bits.
		h2, l2 := bits.Mul64(w2, 10)
		h1, l1 := bits.Mul64(w1, 10)
		h0, l0 := bits.Mul64(w0, 10)
		if h0 != 0 {
			return SequenceNumber{}, false
		}
		var c1, c2 uint64
		l2, c2 = bits.Add64(l2, uint64(c-'0'), 0)
		l1, c1 = bits.Add64(l1, h2, c2)
		l0, c1 = bits.Add64(l0, h1, c1)
		if c1 != 0 {
			return SequenceNumber{}, false
		}
		w0, w1, w2 = l0, l1, l2
	}
	// 47 nibbles = 188 bits: the top nibble must be '2' and so must the
	// bottom one; the "00" byte must be zero; the counter's top bit clear.
	if w0>>56 != 2 || w2&0xf != 2 || (w1>>8)&0xff != 0 {
		return SequenceNumber{}, false
	}
	n.Shard = uint32(w2 >> 4)
	n.Written = w2>>36 | (w1&0xff)<<28
	n.Counter = w1>>16 | (w0&0xffff)<<48
	n.ShardCreated = (w0 >> 20) & secsMask
	if n.Counter > MaxCounter || uint32((w0>>16)&0xf) != n.Shard&0xf {
		return SequenceNumber{}, false
	}
	return n, true
}

// MarshalText encodes n in decimal.
func (n SequenceNumber) MarshalText() ([]byte, error) { return n.AppendTo(nil), nil }

// UnmarshalText decodes the decimal form.
func (n *SequenceNumber) UnmarshalText(b []byte) error {
	v, ok := ParseSequenceNumber(string(b))
	if !ok {
		return Errorf(ErrInvalidArgument, "sequence number %q is invalid", b)
	}
	*n = v
	return nil
}
