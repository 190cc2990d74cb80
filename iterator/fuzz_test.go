package iterator_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
)

var fuzzSecret = []byte("0123456789abcdef0123456789abcdef")

const fuzzTTL = 5 * time.Minute

// FuzzTokenDecode feeds arbitrary strings to Codec.Decode: it must never
// panic, must reject everything it did not mint with ErrInvalidArgument
// (or ErrExpiredIterator), and a token it accepts must be exactly the
// encoding of what it decoded. It also checks that Encode/Decode
// round-trip any token within its lifetime, that expiry follows the TTL,
// and that any single-character change is rejected.
func FuzzTokenDecode(f *testing.F) {
	c := iterator.NewCodec(fuzzSecret, fuzzTTL)
	valid := c.Encode(iterator.Token{Stream: 1, Shard: 2, Next: 3, IssuedMs: 1764000000000})
	f.Add(valid, uint32(1), uint32(2), uint64(3), int64(1764000000000), int64(1000), uint8(7))
	f.Add("", uint32(0), uint32(0), uint64(0), int64(0), int64(0), uint8(0))
	f.Add(valid[:len(valid)-1]+"A", uint32(1<<32-1), uint32(1<<31-1), uint64(1<<64-1), int64(-1), int64(300001), uint8(43))
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uint32(9), uint32(9), uint64(9), int64(9), int64(1<<40), uint8(255))
	f.Fuzz(func(t *testing.T, s string, stream, sh uint32, next uint64, issued, age int64, flip uint8) {
		now := int64(1764000000000)
		if tok, err := c.Decode(s, now); err == nil {
			if got := c.Encode(tok); got != s && c.EncodeV1(tok) != s {
				t.Fatalf("Decode accepted %q, which is not the encoding %q of %+v", s, got, tok)
			}
		} else if !errors.Is(err, shard.ErrInvalidArgument) && !errors.Is(err, shard.ErrExpiredIterator) {
			t.Fatalf("Decode(%q) = %v; want ErrInvalidArgument or ErrExpiredIterator", s, err)
		}
		// Round trip of a token within its lifetime. Issue times are real
		// clock readings; keep them within ±100 years of the epoch.
		const century = int64(100 * 365 * 24 * time.Hour / time.Millisecond)
		issued %= century
		age %= 2 * fuzzTTL.Milliseconds()
		if age < 0 {
			age = -age
		}
		name := strings.Repeat("s", int(flip)%(iterator.MaxTokenName+1))
		tok := iterator.Token{Stream: stream, Shard: shard.ShardID(sh), Next: next, IssuedMs: issued, Name: name}
		enc := c.Encode(tok)
		if want := base64.StdEncoding.EncodedLen(iterator.TokenLen(len(name))); len(enc) != want || len(enc) > 512 {
			t.Fatalf("encoded token has length %d, want %d (≤ 512)", len(enc), want)
		}
		got, err := c.Decode(enc, issued+age)
		switch {
		case age > fuzzTTL.Milliseconds():
			if !errors.Is(err, shard.ErrExpiredIterator) {
				t.Fatalf("token aged %d ms: Decode = %+v, %v; want ErrExpiredIterator", age, got, err)
			}
		case err != nil || got != tok:
			t.Fatalf("Decode(Encode(%+v)) = %+v, %v", tok, got, err)
		}
		// Any one-character change is rejected.
		b := []byte(enc)
		i := int(flip) % len(b)
		orig := b[i]
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
		b[i] = alphabet[(int(flip)/len(b)+1+indexByte(alphabet, orig))%len(alphabet)]
		if b[i] != orig {
			if _, err := c.Decode(string(b), issued); !errors.Is(err, shard.ErrInvalidArgument) {
				t.Fatalf("Decode of %q with character %d changed = %v; want ErrInvalidArgument", enc, i, err)
			}
		}
	})
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return 0
}
