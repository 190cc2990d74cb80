package server

import (
	"math/big"
	"time"
)

// AWS's checks of PutRecord's SequenceNumberForOrdering, as recorded from
// AWS in kinesalite's conformance tests. A sequence number is read as a
// big integer in one of AWS's layouts:
//
//   - below 2^129 (numbers below 2^124 are read as if 2^124 were added):
//     the old 33-nibble layout, whose shard-creation seconds (nibbles 1–9)
//     must be below 16025175000;
//   - above 2^185 and below 1.5·2^185, i.e. 47 nibbles starting with 2:
//     the last nibble is the layout version. Version 2 (today's numbers)
//     must have the top bit of its 16-nibble counter (nibbles 11–26) and
//     of its 8-nibble shard index (nibbles 38–45) clear and a write time
//     (nibbles 29–37, seconds) not in the future; version 1 is accepted;
//     version 3 makes AWS fail with InternalFailure;
//   - anything else is invalid.
//
// Numbers that pass are only an ordering bound: a number AWS would accept
// that no shard of the stream issued does not constrain the new record.

type orderingCheck int

const (
	orderingOK orderingCheck = iota
	orderingInvalid
	orderingInternal // AWS answers InternalFailure
)

var (
	pow124    = new(big.Int).Lsh(big.NewInt(1), 124)
	pow129    = new(big.Int).Lsh(big.NewInt(1), 129)
	pow185    = new(big.Int).Lsh(big.NewInt(1), 185)
	pow185x15 = new(big.Int).Lsh(big.NewInt(3), 184) // 1.5·2^185
)

// maxV0CreateSecs bounds the shard-creation seconds of an old-layout
// number.
const maxV0CreateSecs = 16025175000

// checkOrderingNumber classifies s (already checked against the model's
// pattern 0|([1-9]\d{0,128})) at time now.
func checkOrderingNumber(s string, now time.Time) orderingCheck {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return orderingInvalid
	}
	if n.Cmp(pow124) < 0 {
		n.Add(n, pow124)
	}
	hex := n.Text(16)
	nib := func(from, to int) int64 { // value of hex[from:to]
		var v int64
		for _, c := range hex[from:to] {
			v = v<<4 | int64(hexVal(byte(c)))
		}
		return v
	}
	switch {
	case n.Cmp(pow129) < 0:
		if nib(1, 10) >= maxV0CreateSecs {
			return orderingInvalid
		}
		return orderingOK
	case n.Cmp(pow185) > 0 && n.Cmp(pow185x15) < 0:
		// 47 nibbles, the first one 2.
		switch hex[46] {
		case '1':
			return orderingOK
		case '2':
			if hexVal(hex[11]) > 7 || hexVal(hex[38]) > 7 || nib(29, 38) > now.Unix() {
				return orderingInvalid
			}
			return orderingOK
		case '3':
			return orderingInternal
		}
	}
	return orderingInvalid
}

func hexVal(c byte) int {
	if c >= 'a' {
		return int(c-'a') + 10
	}
	return int(c - '0')
}
