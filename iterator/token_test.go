package iterator_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

func secret(b byte) []byte { return []byte(strings.Repeat(string(rune('a'+b)), 32)) }

func TestTokenRoundTrip(t *testing.T) {
	c := iterator.NewCodec(secret(0), 5*time.Minute)
	for _, tok := range []iterator.Token{
		{},
		{Stream: 1, Shard: 0, Next: 1, IssuedMs: 1_750_000_000_000},
		{Stream: ^uint32(0), Shard: 1<<31 - 1, Next: ^uint64(0), IssuedMs: 1_750_000_000_000},
	} {
		s := c.Encode(tok)
		require.LessOrEqual(t, len(s), 512, "Kinesis' ShardIterator limit")
		require.Len(t, s, iterator.TokenEncodedLen)
		got, err := c.Decode(s, tok.IssuedMs)
		require.NoError(t, err)
		require.Equal(t, tok, got)
	}
}

func TestTokenTamperedEveryPosition(t *testing.T) {
	c := iterator.NewCodec(secret(0), 5*time.Minute)
	tok := iterator.Token{Stream: 7, Shard: 3, Next: 12345, IssuedMs: 1_750_000_000_000}
	s := c.Encode(tok)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(s) {
		for _, d := range []int{1, 32} { // a low bit and a high bit of the 6-bit character
			j := (strings.IndexByte(alphabet, s[i]) ^ d) & 63
			b := []byte(s)
			b[i] = alphabet[j]
			_, err := c.Decode(string(b), tok.IssuedMs)
			require.ErrorIs(t, err, shard.ErrInvalidArgument, "flip at %d", i)
			var e *shard.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, shard.ReasonInvalidToken, e.Reason)
		}
	}
}

func TestTokenGarbageTruncatedForeign(t *testing.T) {
	c := iterator.NewCodec(secret(0), 5*time.Minute)
	tok := iterator.Token{Stream: 7, Shard: 3, Next: 12345, IssuedMs: 1_750_000_000_000}
	s := c.Encode(tok)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	reMAC := func(body []byte) string { return base64.RawURLEncoding.EncodeToString(body) }
	wrongVersion := append([]byte(nil), raw...)
	wrongVersion[0] = 2
	bad := []string{
		"", "x", s[:len(s)-1], s[:len(s)/2], s + "A", s + s,
		strings.Repeat("A", len(s)), strings.Repeat("=", len(s)), strings.Repeat("\x00", len(s)),
		strings.Repeat("é", len(s)/2), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", // std-alphabet char
		base64.StdEncoding.EncodeToString(raw), // padded, other alphabet
		reMAC(wrongVersion),
		strings.Repeat("Z", 1<<20),
	}
	for _, b := range bad {
		_, err := c.Decode(b, tok.IssuedMs)
		require.ErrorIs(t, err, shard.ErrInvalidArgument, "%.40q", b)
	}
	// A token made with another DB's secret.
	other := iterator.NewCodec(secret(1), 5*time.Minute)
	_, err = other.Decode(s, tok.IssuedMs)
	require.ErrorIs(t, err, shard.ErrInvalidArgument)
}

func TestTokenExpiry(t *testing.T) {
	ttl := 5 * time.Minute
	c := iterator.NewCodec(secret(0), ttl)
	issued := int64(1_750_000_000_000)
	s := c.Encode(iterator.Token{Stream: 1, Next: 1, IssuedMs: issued})
	_, err := c.Decode(s, issued+ttl.Milliseconds())
	require.NoError(t, err, "valid up to and including the TTL")
	_, err = c.Decode(s, issued+ttl.Milliseconds()+1)
	require.ErrorIs(t, err, shard.ErrExpiredIterator)
	require.NotErrorIs(t, err, shard.ErrInvalidArgument)
	var e *shard.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, shard.ReasonIteratorExpired, e.Reason)
	require.Equal(t, ttl.Milliseconds(), e.Limit)
	require.Equal(t, issued, e.Time.UnixMilli())
	require.Equal(t, issued+ttl.Milliseconds()+1, e.Now.UnixMilli())
	// A clock that went backwards does not expire a token.
	_, err = c.Decode(s, issued-time.Hour.Milliseconds())
	require.NoError(t, err)
}
