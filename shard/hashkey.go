package shard

import (
	"crypto/md5"
	"encoding/binary"
	"math/big"
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// HashKey is a point in Kinesis' 128-bit hash-key space, [0, 2^128-1].
// The zero value is hash key 0. HashKey is a comparable value type.
type HashKey struct{ Hi, Lo uint64 }

// MaxHashKey is 2^128-1, the end of the hash-key space.
var MaxHashKey = HashKey{Hi: ^uint64(0), Lo: ^uint64(0)}

// Cmp returns -1, 0 or +1 as h is less than, equal to or greater than o.
func (h HashKey) Cmp(o HashKey) int {
	switch {
	case h.Hi < o.Hi:
		return -1
	case h.Hi > o.Hi:
		return 1
	case h.Lo < o.Lo:
		return -1
	case h.Lo > o.Lo:
		return 1
	}
	return 0
}

// Add returns h+n, wrapping at 2^128.
func (h HashKey) Add(n uint64) HashKey {
	lo, c := bits.Add64(h.Lo, n, 0)
	return HashKey{Hi: h.Hi + c, Lo: lo}
}

// Sub returns h-n, wrapping at 0.
func (h HashKey) Sub(n uint64) HashKey {
	lo, b := bits.Sub64(h.Lo, n, 0)
	return HashKey{Hi: h.Hi - b, Lo: lo}
}

func (h HashKey) big() *big.Int {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], h.Hi)
	binary.BigEndian.PutUint64(b[8:], h.Lo)
	return new(big.Int).SetBytes(b[:])
}

// String returns h in decimal, as Kinesis writes hash keys.
func (h HashKey) String() string {
	if h.Hi == 0 {
		return formatUint(h.Lo)
	}
	return h.big().String()
}

func formatUint(v uint64) string {
	var buf [20]byte
	i := len(buf)
	for v >= 10 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	i--
	buf[i] = byte('0' + v)
	return string(buf[i:])
}

// ParseHashKey parses a decimal hash key in [0, 2^128-1]. Only ASCII digits
// are accepted (no sign, no spaces); ok is false otherwise.
func ParseHashKey(s string) (h HashKey, ok bool) {
	if len(s) == 0 || len(s) > 39 {
		return HashKey{}, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return HashKey{}, false
		}
		// h = h*10 + c, failing on overflow past 2^128-1.
		hi1, lo1 := bits.Mul64(h.Lo, 10)
		hi2, lo2 := bits.Mul64(h.Hi, 10)
		if hi2 != 0 {
			return HashKey{}, false
		}
		hi, carry := bits.Add64(lo2, hi1, 0)
		if carry != 0 {
			return HashKey{}, false
		}
		lo, c2 := bits.Add64(lo1, uint64(c-'0'), 0)
		hi, carry = bits.Add64(hi, 0, c2)
		if carry != 0 {
			return HashKey{}, false
		}
		h = HashKey{Hi: hi, Lo: lo}
	}
	return h, true
}

// Partitioner maps a partition key to a hash key. It is a persisted,
// per-stream setting.
type Partitioner uint8

const (
	// PartitionerXXHash places xxhash64 of the key in the high 64 bits. It
	// is the library default: fast and well spread.
	PartitionerXXHash Partitioner = iota
	// PartitionerMD5 is Kinesis' placement: MD5 of the key's UTF-8 bytes as
	// an unsigned big-endian 128-bit integer.
	PartitionerMD5
)

// String returns "xxhash" or "md5".
func (p Partitioner) String() string {
	switch p {
	case PartitionerXXHash:
		return "xxhash"
	case PartitionerMD5:
		return "md5"
	}
	return "unknown"
}

// Valid reports whether p is a known partitioner.
func (p Partitioner) Valid() bool { return p <= PartitionerMD5 }

// Hash returns the hash key of partitionKey.
func (p Partitioner) Hash(partitionKey string) HashKey {
	if p == PartitionerMD5 {
		sum := md5.Sum([]byte(partitionKey))
		return HashKey{Hi: binary.BigEndian.Uint64(sum[:8]), Lo: binary.BigEndian.Uint64(sum[8:])}
	}
	return HashKey{Hi: xxhash.Sum64String(partitionKey)}
}

// HashRange is an inclusive range [Start, End] of hash keys.
type HashRange struct{ Start, End HashKey }

// Contains reports whether h lies in r.
func (r HashRange) Contains(h HashKey) bool { return r.Start.Cmp(h) <= 0 && h.Cmp(r.End) <= 0 }

// SplitHashSpace divides the hash-key space into n ranges exactly as
// Kinesis' CreateStream does: step = floor(2^128/n), range i is
// [i*step, (i+1)*step-1] and the last range ends at 2^128-1. n must be ≥ 1.
func SplitHashSpace(n int) []HashRange {
	if n < 1 {
		return nil
	}
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	step := new(big.Int).Div(space, big.NewInt(int64(n)))
	out := make([]HashRange, n)
	cur := new(big.Int)
	for i := range n {
		start := fromBig(cur)
		cur.Add(cur, step)
		end := fromBig(new(big.Int).Sub(cur, big.NewInt(1)))
		if i == n-1 {
			end = MaxHashKey
		}
		out[i] = HashRange{Start: start, End: end}
	}
	return out
}

func fromBig(b *big.Int) HashKey {
	var buf [16]byte
	b.FillBytes(buf[:])
	return HashKey{Hi: binary.BigEndian.Uint64(buf[:8]), Lo: binary.BigEndian.Uint64(buf[8:])}
}

// Mid returns floor((a+b)/2) without overflow.
func Mid(a, b HashKey) HashKey {
	s := new(big.Int).Add(a.big(), b.big())
	return fromBig(s.Rsh(s, 1))
}

// MarshalText encodes h in decimal.
func (h HashKey) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a decimal hash key.
func (h *HashKey) UnmarshalText(b []byte) error {
	v, ok := ParseHashKey(string(b))
	if !ok {
		return Errorf(ErrValidation, "hash key %q is not a decimal in [0, 2^128-1]", b)
	}
	*h = v
	return nil
}
