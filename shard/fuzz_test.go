package shard_test

import (
	"bytes"
	"encoding/binary"
	"math/big"
	"strconv"
	"testing"

	"github.com/kvstream/kvstream/shard"
	"go.uber.org/goleak"
)

// TestMain checks that the package's tests leave no goroutine behind (the
// Writer owns one).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Fuzz targets for every decoder in this package. Seed corpora live in
// testdata/fuzz/<FuzzName>/ and run as ordinary tests; .ci/fuzz.sh runs
// each target with -fuzz for a few seconds.

// seqDigits is the length of every valid sequence number: 47 nibbles with
// a leading '2' lie in [2·16^46, 3·16^46), which is always 56 digits.
const seqDigits = 56

// FuzzParseSequenceNumber checks that ParseSequenceNumber never panics,
// that whatever it accepts is a number in the documented layout that
// prints back to the same value, and that String/Parse round-trip and
// order by counter for arbitrary field values.
func FuzzParseSequenceNumber(f *testing.F) {
	n := shard.SequenceNumber{ShardCreated: 1764000000, Shard: 3, Counter: 42, Written: 1764000123}
	f.Add(n.String(), uint64(1764000000), uint32(3), uint64(42), uint64(1764000123))
	f.Add("0", uint64(0), uint32(0), uint64(0), uint64(0))
	f.Add("49590338271490256608559692538361571095921575989136588898", uint64(1<<36-1), uint32(1<<31-1), uint64(shard.MaxCounter), uint64(1<<36-1))
	f.Add("-1", uint64(1), uint32(1<<32-1), uint64(1), uint64(1))
	f.Fuzz(func(t *testing.T, s string, created uint64, sh uint32, counter uint64, written uint64) {
		if n, ok := shard.ParseSequenceNumber(s); ok {
			if n.Counter > shard.MaxCounter || n.ShardCreated >= 1<<36 || n.Written >= 1<<36 {
				t.Fatalf("ParseSequenceNumber(%q) = %+v: field out of range", s, n)
			}
			out := n.String()
			if len(out) != seqDigits {
				t.Fatalf("ParseSequenceNumber(%q).String() = %q has %d digits, want %d", s, out, len(out), seqDigits)
			}
			// The accepted input, as a number, equals the printed form
			// (leading zeros are the only textual difference allowed).
			a, _ := new(big.Int).SetString(s, 10)
			b, _ := new(big.Int).SetString(out, 10)
			if a == nil || b == nil || a.Cmp(b) != 0 {
				t.Fatalf("ParseSequenceNumber(%q) accepted a number that prints as %q", s, out)
			}
			if m, ok := shard.ParseSequenceNumber(out); !ok || m != n {
				t.Fatalf("re-parse of %q = %+v, %v; want %+v", out, m, ok, n)
			}
			var u shard.SequenceNumber
			if err := u.UnmarshalText([]byte(s)); err != nil || u != n {
				t.Fatalf("UnmarshalText(%q) = %+v, %v; want %+v", s, u, err, n)
			}
		} else {
			var u shard.SequenceNumber
			if err := u.UnmarshalText([]byte(s)); err == nil {
				t.Fatalf("UnmarshalText(%q) accepted what ParseSequenceNumber rejects", s)
			}
		}

		// Round trip from fields.
		n := shard.SequenceNumber{ShardCreated: created & (1<<36 - 1), Shard: sh, Counter: counter & shard.MaxCounter, Written: written & (1<<36 - 1)}
		str := n.String()
		if len(str) != seqDigits {
			t.Fatalf("%+v.String() = %q has %d digits, want %d", n, str, len(str), seqDigits)
		}
		m, ok := shard.ParseSequenceNumber(str)
		if !ok || m != n {
			t.Fatalf("ParseSequenceNumber(%q) = %+v, %v; want %+v", str, m, ok, n)
		}
		txt, _ := n.MarshalText()
		if string(txt) != str || string(n.AppendTo([]byte("x"))) != "x"+str {
			t.Fatalf("MarshalText/AppendTo disagree with String for %+v", n)
		}
		// Within one shard, numbers order by counter as big integers
		// (Kinesis clients compare them that way), whatever the write time.
		if n.Counter < shard.MaxCounter {
			next := n
			next.Counter++
			next.Written = written >> 7 & (1<<36 - 1)
			a, _ := new(big.Int).SetString(str, 10)
			b, _ := new(big.Int).SetString(next.String(), 10)
			if a.Cmp(b) >= 0 {
				t.Fatalf("counter %d+1 does not sort after it: %s >= %s", n.Counter, str, next.String())
			}
		}
	})
}

var maxHashKeyBig = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))

// FuzzParseHashKey checks ParseHashKey against math/big: it accepts exactly
// the strings of 1 to 39 ASCII digits whose value is at most 2^128-1, and
// yields that value; String and Parse round-trip.
func FuzzParseHashKey(f *testing.F) {
	f.Add("0", uint64(0), uint64(0))
	f.Add("340282366920938463463374607431768211455", uint64(1<<64-1), uint64(1<<64-1))
	f.Add("340282366920938463463374607431768211456", uint64(1), uint64(0))
	f.Add("0000000000000000000000000000000000000001", uint64(0), uint64(1))
	f.Add("+1", uint64(1<<63), uint64(12345))
	f.Add("18446744073709551616", uint64(1), uint64(0))
	f.Fuzz(func(t *testing.T, s string, hi, lo uint64) {
		h, ok := shard.ParseHashKey(s)
		want := len(s) >= 1 && len(s) <= 39
		for i := 0; i < len(s) && want; i++ {
			want = s[i] >= '0' && s[i] <= '9'
		}
		var ref *big.Int
		if want {
			ref, _ = new(big.Int).SetString(s, 10)
			want = ref != nil && ref.Cmp(maxHashKeyBig) <= 0
		}
		if ok != want {
			t.Fatalf("ParseHashKey(%q) ok = %v, want %v", s, ok, want)
		}
		if ok {
			if got := hashKeyBig(h); got.Cmp(ref) != 0 {
				t.Fatalf("ParseHashKey(%q) = %s, want %s", s, got, ref)
			}
			if h.String() != ref.String() {
				t.Fatalf("ParseHashKey(%q).String() = %q, want %q", s, h.String(), ref.String())
			}
		}
		var u shard.HashKey
		if err := u.UnmarshalText([]byte(s)); (err == nil) != ok || (ok && u != h) {
			t.Fatalf("UnmarshalText(%q) = %v, %v; ParseHashKey gave %v, %v", s, u, err, h, ok)
		}

		k := shard.HashKey{Hi: hi, Lo: lo}
		kb := hashKeyBig(k)
		if k.String() != kb.String() {
			t.Fatalf("%#v.String() = %q, want %q", k, k.String(), kb.String())
		}
		if back, ok := shard.ParseHashKey(k.String()); !ok || back != k {
			t.Fatalf("ParseHashKey(%q) = %v, %v; want %v", k.String(), back, ok, k)
		}
		if c := k.Cmp(h); ok && c != kb.Cmp(ref) {
			t.Fatalf("Cmp(%s, %s) = %d, big says %d", kb, ref, c, kb.Cmp(ref))
		}
	})
}

func hashKeyBig(h shard.HashKey) *big.Int {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], h.Hi)
	binary.BigEndian.PutUint64(b[8:], h.Lo)
	return new(big.Int).SetBytes(b[:])
}

// FuzzParseShardID checks ParseShardID: no panic, accepted ids are below
// 2^31 and equal the decimal after the first '-', and ShardID.String
// round-trips.
func FuzzParseShardID(f *testing.F) {
	f.Add("shardId-000000000000", uint32(0))
	f.Add("shardId-5", uint32(5))
	f.Add("shardId-2147483647", uint32(1<<31-1))
	f.Add("shardId-2147483648", uint32(1<<31))
	f.Add("shardId--1", uint32(7))
	f.Add("-", uint32(12))
	f.Fuzz(func(t *testing.T, s string, n uint32) {
		id, ok := shard.ParseShardID(s)
		if ok {
			if uint64(id) >= 1<<31 {
				t.Fatalf("ParseShardID(%q) = %d, beyond 2^31-1", s, id)
			}
			i := bytes.IndexByte([]byte(s), '-')
			v, err := strconv.ParseUint(s[i+1:], 10, 64)
			if i < 0 || err != nil || v != uint64(id) {
				t.Fatalf("ParseShardID(%q) = %d, but the text after '-' is %q", s, id, s[i+1:])
			}
			if back, ok := shard.ParseShardID(id.String()); !ok || back != id {
				t.Fatalf("ParseShardID(%q) = %d, %v; want %d", id.String(), back, ok, id)
			}
		}
		id = shard.ShardID(n & (1<<31 - 1))
		str := id.String()
		if len(str) < len("shardId-000000000000") || str[:8] != "shardId-" {
			t.Fatalf("ShardID(%d).String() = %q", id, str)
		}
		if back, ok := shard.ParseShardID(str); !ok || back != id {
			t.Fatalf("ParseShardID(%q) = %d, %v; want %d", str, back, ok, id)
		}
	})
}

// checkSplitValue checks that SplitValue (the readers' decoder) accepts
// exactly what DecodeValue accepts and locates the same fields.
func checkSplitValue(t *testing.T, v []byte) {
	t.Helper()
	d, ok := shard.DecodeValue(v)
	ms, pk, pkEnd, data, sok := shard.SplitValue(v)
	if ok != sok {
		t.Fatalf("SplitValue(%x) ok = %v, DecodeValue ok = %v", v, sok, ok)
	}
	if !ok {
		return
	}
	var ehk *shard.HashKey
	if data > pkEnd {
		ehk = shard.ValueHashKey(v, pkEnd)
	}
	if ms != d.ArrivalMs || !bytes.Equal(v[pk:pkEnd], d.PartitionKey) || !bytes.Equal(v[data:], d.Data) ||
		(ehk == nil) != (d.ExplicitHashKey == nil) || (ehk != nil && *ehk != *d.ExplicitHashKey) {
		t.Fatalf("SplitValue(%x) = %d, %d:%d, %d, %v; DecodeValue gave %+v", v, ms, pk, pkEnd, data, ehk, d)
	}
}

// TestValueKeyLimit pins the partition key limit both decoders enforce:
// a key of 1<<16 bytes decodes, one byte more does not, though its bytes
// are all there (random inputs almost never reach these lengths).
func TestValueKeyLimit(t *testing.T) {
	for n, want := range map[int]bool{1 << 16: true, 1<<16 + 1: false} {
		pk := string(bytes.Repeat([]byte{'k'}, n))
		v := make([]byte, shard.ValueLen(pk, false, []byte("d")))
		shard.PutValue(v, 7, pk, nil, []byte("d"))
		if _, ok := shard.DecodeValue(v); ok != want {
			t.Fatalf("DecodeValue of a %d-byte key: ok = %v", n, ok)
		}
		if _, _, _, _, ok := shard.SplitValue(v); ok != want {
			t.Fatalf("SplitValue of a %d-byte key: ok = %v", n, ok)
		}
		checkSplitValue(t, v)
	}
}

// FuzzDecodeValue checks the record value codec: DecodeValue never panics
// on arbitrary bytes, what it accepts re-encodes to a value that decodes
// to the same fields, ValueArrival agrees with it, and PutValue/DecodeValue
// round-trip arbitrary fields.
func FuzzDecodeValue(f *testing.F) {
	enc := func(ms int64, pk string, ehk *shard.HashKey, data []byte) []byte {
		v := make([]byte, shard.ValueLen(pk, ehk != nil, data))
		shard.PutValue(v, ms, pk, ehk, data)
		return v
	}
	f.Add(enc(1764000000000, "pk", nil, []byte("hello")), int64(1764000000000), "pk", false, uint64(0), uint64(0), []byte("hello"))
	f.Add(enc(-1, "", &shard.HashKey{Hi: 1, Lo: 2}, nil), int64(-1), "", true, uint64(1), uint64(2), []byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 0}, int64(0), "k", true, uint64(1<<64-1), uint64(1<<64-1), []byte{0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, int64(5), "\xff", false, uint64(0), uint64(0), []byte(nil))
	f.Fuzz(func(t *testing.T, v []byte, ms int64, pk string, hasEHK bool, hi, lo uint64, data []byte) {
		checkSplitValue(t, v)
		if d, ok := shard.DecodeValue(v); ok {
			if a, aok := shard.ValueArrival(v); !aok || a != d.ArrivalMs {
				t.Fatalf("ValueArrival = %d, %v; DecodeValue says %d", a, aok, d.ArrivalMs)
			}
			if len(d.PartitionKey) > 1<<16 {
				t.Fatalf("DecodeValue accepted a %d-byte partition key", len(d.PartitionKey))
			}
			re := enc(d.ArrivalMs, string(d.PartitionKey), d.ExplicitHashKey, d.Data)
			d2, ok := shard.DecodeValue(re)
			if !ok || !sameValue(d, d2) {
				t.Fatalf("re-encoding of %x does not decode to the same fields: %+v vs %+v", v, d, d2)
			}
			if len(re) > len(v) {
				t.Fatalf("re-encoding of %x is longer (%d) than the input", v, len(re))
			}
		} else if len(v) >= 9 {
			if _, aok := shard.ValueArrival(v); !aok {
				t.Fatalf("ValueArrival rejects a %d-byte value", len(v))
			}
		}

		if len(pk) > 1<<16 {
			pk = pk[:1<<16]
		}
		var ehk *shard.HashKey
		if hasEHK {
			ehk = &shard.HashKey{Hi: hi, Lo: lo}
		}
		w := enc(ms, pk, ehk, data)
		if len(w) != shard.ValueLen(pk, hasEHK, data) {
			t.Fatalf("ValueLen = %d, encoded %d bytes", shard.ValueLen(pk, hasEHK, data), len(w))
		}
		d, ok := shard.DecodeValue(w)
		if !ok {
			t.Fatalf("DecodeValue rejects PutValue(%d, %q, %v, %x)", ms, pk, ehk, data)
		}
		if d.ArrivalMs != ms || string(d.PartitionKey) != pk || !bytes.Equal(d.Data, data) ||
			(d.ExplicitHashKey == nil) != (ehk == nil) || (ehk != nil && *d.ExplicitHashKey != *ehk) {
			t.Fatalf("round trip of (%d, %q, %v, %x) gave %+v", ms, pk, ehk, data, d)
		}
		if a, aok := shard.ValueArrival(w); !aok || a != ms {
			t.Fatalf("ValueArrival = %d, %v; want %d", a, aok, ms)
		}
	})
}

func sameValue(a, b shard.DecodedValue) bool {
	if a.ArrivalMs != b.ArrivalMs || !bytes.Equal(a.PartitionKey, b.PartitionKey) || !bytes.Equal(a.Data, b.Data) {
		return false
	}
	if (a.ExplicitHashKey == nil) != (b.ExplicitHashKey == nil) {
		return false
	}
	return a.ExplicitHashKey == nil || *a.ExplicitHashKey == *b.ExplicitHashKey
}

// FuzzDecodeRecordKey checks the record key codec round-trips and rejects
// anything that is not exactly one record key.
func FuzzDecodeRecordKey(f *testing.F) {
	f.Add(shard.AppendRecordKey(nil, 1, 2, 3), uint32(1), uint32(2), uint64(3))
	f.Add([]byte{shard.PrefixCatalog, 0, 0}, uint32(1<<32-1), uint32(0), uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, k []byte, stream, sh uint32, counter uint64) {
		if s, i, c, ok := shard.DecodeRecordKey(k); ok {
			if !bytes.Equal(shard.AppendRecordKey(nil, s, i, c), k) {
				t.Fatalf("DecodeRecordKey(%x) = %d/%d/%d does not re-encode to the input", k, s, i, c)
			}
		}
		k2 := shard.AppendRecordKey(nil, stream, sh, counter)
		if s, i, c, ok := shard.DecodeRecordKey(k2); !ok || s != stream || i != sh || c != counter {
			t.Fatalf("round trip of %d/%d/%d gave %d/%d/%d, %v", stream, sh, counter, s, i, c, ok)
		}
		start, end := shard.StreamRecordsSpan(stream)
		if bytes.Compare(start, k2) > 0 || bytes.Compare(k2, end) >= 0 {
			t.Fatalf("record key %x outside its stream span [%x, %x)", k2, start, end)
		}
	})
}
