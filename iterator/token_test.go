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
		{Stream: 1, Shard: 0, Next: 1, IssuedMs: 1_750_000_000_000, Name: "s"},
		{Stream: ^uint32(0), Shard: 1<<31 - 1, Next: ^uint64(0), IssuedMs: 1_750_000_000_000, Name: strings.Repeat("n", iterator.MaxTokenName)},
	} {
		s := c.Encode(tok)
		require.LessOrEqual(t, len(s), 512, "Kinesis' ShardIterator limit")
		require.LessOrEqual(t, len(s), iterator.MaxTokenEncodedLen)
		got, err := c.Decode(s, tok.IssuedMs)
		require.NoError(t, err)
		require.Equal(t, tok, got)
		require.Equal(t, tok.Name, c.StreamName(s))
	}
	// A name too long to keep is dropped, not the token.
	tok := iterator.Token{Stream: 1, Name: strings.Repeat("n", iterator.MaxTokenName+1)}
	got, err := c.Decode(c.Encode(tok), 0)
	require.NoError(t, err)
	tok.Name = ""
	require.Equal(t, tok, got)
}

// TestTokenShape checks tokens look like Kinesis' iterators: standard
// padded base64 of 8 bytes 00…01 and a body whose length depends on the
// stream name's as Kinesis' does (152 + 16·⌊(n+2)/16⌋ bytes).
func TestTokenShape(t *testing.T) {
	c := iterator.NewCodec(secret(0), 5*time.Minute)
	for n := 0; n <= iterator.MaxTokenName; n++ {
		s := c.Encode(iterator.Token{Stream: 3, Shard: 2, Next: 1, IssuedMs: 1_750_000_000_000, Name: strings.Repeat("x", n)})
		raw, err := base64.StdEncoding.DecodeString(s)
		require.NoError(t, err)
		require.Equal(t, s, base64.StdEncoding.EncodeToString(raw), "canonical standard base64")
		require.Len(t, raw, 152+16*((n+2)/16), "name of %d bytes", n)
		require.Equal(t, iterator.TokenLen(n), len(raw))
		require.Equal(t, []byte{0, 0, 0, 0, 0, 0, 0, 1}, raw[:8])
	}
}

func TestTokenV1StillDecodes(t *testing.T) {
	c := iterator.NewCodec(secret(0), 5*time.Minute)
	tok := iterator.Token{Stream: 7, Shard: 3, Next: 12345, IssuedMs: 1_750_000_000_000}
	old := c.EncodeV1(tok)
	require.Len(t, old, 55)
	got, err := c.Decode(old, tok.IssuedMs)
	require.NoError(t, err)
	require.Equal(t, tok, got)
	_, err = iterator.NewCodec(secret(1), 5*time.Minute).Decode(old, tok.IssuedMs)
	require.ErrorIs(t, err, shard.ErrInvalidArgument)
	_, err = c.Decode(old, tok.IssuedMs+6*time.Minute.Milliseconds())
	require.ErrorIs(t, err, shard.ErrExpiredIterator)
}

const stdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func TestTokenTamperedEveryPosition(t *testing.T) {
	c := iterator.NewCodec(secret(0), 5*time.Minute)
	for _, name := range []string{"", "stream-name"} {
		tok := iterator.Token{Stream: 7, Shard: 3, Next: 12345, IssuedMs: 1_750_000_000_000, Name: name}
		s := c.Encode(tok)
		for i := range len(s) {
			for _, d := range []int{1, 32} { // a low bit and a high bit of the 6-bit character
				b := []byte(s)
				if b[i] == '=' {
					b[i] = 'A'
				} else {
					b[i] = stdAlphabet[(strings.IndexByte(stdAlphabet, s[i])^d)&63]
				}
				_, err := c.Decode(string(b), tok.IssuedMs)
				require.ErrorIs(t, err, shard.ErrInvalidArgument, "flip at %d", i)
				var e *shard.Error
				require.ErrorAs(t, err, &e)
				require.Equal(t, shard.ReasonInvalidToken, e.Reason)
				require.Empty(t, c.StreamName(string(b)))
			}
		}
	}
}

func TestTokenGarbageTruncatedForeign(t *testing.T) {
	c := iterator.NewCodec(secret(0), 5*time.Minute)
	tok := iterator.Token{Stream: 7, Shard: 3, Next: 12345, IssuedMs: 1_750_000_000_000, Name: "s"}
	s := c.Encode(tok)
	raw, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	enc := base64.StdEncoding.EncodeToString
	wrongVersion := append([]byte(nil), raw...)
	wrongVersion[8] = 3
	wrongPrefix := append([]byte(nil), raw...)
	wrongPrefix[7] = 2
	longName := append([]byte(nil), raw...)
	longName[33] = 200
	bad := []string{
		"", "x", s[:len(s)-1], s[:len(s)/2], s + "A", s + s, s + "====",
		strings.Repeat("A", len(s)), strings.Repeat("=", len(s)), strings.Repeat("\x00", len(s)),
		strings.Repeat("é", len(s)/2), strings.Repeat("A", 55), strings.Repeat("-", 55),
		base64.RawStdEncoding.EncodeToString(raw), // unpadded
		enc(wrongVersion), enc(wrongPrefix), enc(longName), enc(raw[:len(raw)-1]), enc(append(raw, 0)),
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
	require.Empty(t, other.StreamName(s))
}

func TestTokenExpiry(t *testing.T) {
	ttl := 5 * time.Minute
	c := iterator.NewCodec(secret(0), ttl)
	issued := time.Date(2026, 12, 1, 6, 56, 19, 0, time.UTC).UnixMilli()
	s := c.Encode(iterator.Token{Stream: 1, Next: 1, IssuedMs: issued, Name: "s"})
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
	require.Equal(t, "s", e.Stream)
	// An expired token still names its stream.
	require.Equal(t, "s", c.StreamName(s))
	// A clock that went backwards does not expire a token.
	_, err = c.Decode(s, issued-time.Hour.Milliseconds())
	require.NoError(t, err)
}

// encoding/base64 skips CR and LF even in Strict mode, so a valid token
// with one inserted anywhere would decode as the token itself; Decode
// must reject it (a token has exactly one encoding).
func TestTokenWithLineBreaks(t *testing.T) {
	c := iterator.NewCodec(secret(0), 5*time.Minute)
	tok := iterator.Token{Stream: 7, Shard: 3, Next: 12345, IssuedMs: 1_750_000_000_000, Name: "s"}
	s := c.Encode(tok)
	for _, br := range []string{"\r", "\n", "\r\n"} {
		for _, i := range []int{0, 1, len(s) / 2, len(s) - 1, len(s)} {
			b := s[:i] + br + s[i:]
			_, err := c.Decode(b, tok.IssuedMs)
			require.ErrorIs(t, err, shard.ErrInvalidArgument, "%q at %d", br, i)
			require.Empty(t, c.StreamName(b), "%q at %d", br, i)
		}
	}
}
