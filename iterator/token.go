package iterator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/kvstream/kvstream/shard"
)

// Token is the content of a shard iterator: where to read next and when
// the iterator was issued. Tokens are self-contained: the server keeps no
// per-iterator state, so they survive restarts and can be shared.
type Token struct {
	Stream   uint32
	Shard    shard.ShardID
	Next     uint64 // first counter to read
	IssuedMs int64
	// Name is the stream's name, so an iterator of a deleted stream can
	// still say which stream it was for. Names longer than MaxTokenName
	// bytes are not kept (Name decodes as "").
	Name string
}

// The token format, shaped like Kinesis' iterators: standard padded
// base64 of 8 bytes 00…01, then the body, zero padding and a MAC, for a
// total of 152 + 16·⌊(len(name)+2)/16⌋ bytes, the length of Kinesis'
// iterators for a stream name of that length (at most 280 bytes, 376
// characters: under Kinesis' 512-character limit).
//
//	[0:8]   00 00 00 00 00 00 00 01
//	[8]     version (2)
//	[9:13]  stream id        [13:17] shard     [17:25] next counter
//	[25:33] issued ms        [33]    name length n
//	[34:34+n] name, then zeros up to the MAC
//	[len-16:] HMAC-SHA256 (truncated) of everything before it
//
// Version 1 tokens (41 bytes, unpadded URL-safe base64, no name) from
// earlier releases still decode.
const (
	tokenVersion = 2
	tokenHead    = 8
	tokenBodyEnd = tokenHead + 1 + 4 + 4 + 8 + 8 + 1
	tokenMACLen  = 16
	// MaxTokenName is the longest stream name a token keeps.
	MaxTokenName = 128

	v1Version = 1
	v1BodyLen = 1 + 4 + 4 + 8 + 8
	v1Len     = v1BodyLen + tokenMACLen
)

// tokenPrefix starts every token, as it starts Kinesis' iterators.
var tokenPrefix = [tokenHead]byte{0, 0, 0, 0, 0, 0, 0, 1}

// v1EncodedLen is the length of a version 1 token.
var v1EncodedLen = base64.RawURLEncoding.EncodedLen(v1Len)

// TokenLen returns the decoded length of the token of a stream whose name
// has n bytes (Kinesis' iterator length for that name).
func TokenLen(n int) int {
	if n > MaxTokenName {
		n = 0
	}
	return 152 + 16*((n+2)/16)
}

// MaxTokenEncodedLen is the longest encoded token.
var MaxTokenEncodedLen = base64.StdEncoding.EncodedLen(TokenLen(MaxTokenName))

// Codec encodes and authenticates tokens with an HMAC-SHA256 key (the
// DB's secret). It is safe for concurrent use.
type Codec struct {
	key  []byte
	ttl  time.Duration
	macs sync.Pool // of hash.Hash (HMAC-SHA256 keyed by key)
}

// NewCodec returns a codec keyed by secret whose tokens live for ttl.
func NewCodec(secret []byte, ttl time.Duration) *Codec {
	return &Codec{key: append([]byte(nil), secret...), ttl: ttl}
}

// mac returns the token MAC of body in dst[:tokenMACLen]. HMAC states are
// pooled: building one costs two SHA-256 setups per call.
func (c *Codec) mac(dst, body []byte) []byte {
	m, _ := c.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, c.key)
	}
	m.Reset()
	m.Write(body)
	var sum [sha256.Size]byte
	copy(dst, m.Sum(sum[:0])[:tokenMACLen])
	c.macs.Put(m)
	return dst[:tokenMACLen]
}

// Encode returns the opaque string form of t.
func (c *Codec) Encode(t Token) string {
	name := t.Name
	if len(name) > MaxTokenName {
		name = ""
	}
	var buf [280]byte
	b := buf[:TokenLen(len(name))]
	copy(b, tokenPrefix[:])
	b[tokenHead] = tokenVersion
	binary.BigEndian.PutUint32(b[tokenHead+1:], t.Stream)
	binary.BigEndian.PutUint32(b[tokenHead+5:], uint32(t.Shard))
	binary.BigEndian.PutUint64(b[tokenHead+9:], t.Next)
	binary.BigEndian.PutUint64(b[tokenHead+17:], uint64(t.IssuedMs))
	b[tokenBodyEnd-1] = byte(len(name))
	copy(b[tokenBodyEnd:], name)
	c.mac(b[len(b)-tokenMACLen:], b[:len(b)-tokenMACLen])
	return base64.StdEncoding.EncodeToString(b)
}

// Decode authenticates and decodes s. A forged, truncated or garbage token
// is shard.ErrInvalidArgument (shard.ReasonInvalidToken); a token older
// than the TTL at nowMs is shard.ErrExpiredIterator
// (shard.ReasonIteratorExpired).
func (c *Codec) Decode(s string, nowMs int64) (Token, error) {
	t, ok := c.decode(s)
	if !ok {
		return Token{}, &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonInvalidToken, Field: "ShardIterator",
			Msg: "the shard iterator token is not valid"}
	}
	if nowMs-t.IssuedMs > c.ttl.Milliseconds() {
		issued, now := time.UnixMilli(t.IssuedMs), time.UnixMilli(nowMs)
		return Token{}, &shard.Error{Kind: shard.ErrExpiredIterator, Reason: shard.ReasonIteratorExpired,
			Stream: t.Name, Shard: t.Shard, Time: issued, Now: now, Limit: c.ttl.Milliseconds(),
			Msg: fmt.Sprintf("the shard iterator issued at %s is older than its lifetime of %v at %s",
				issued.UTC().Format(time.RFC3339Nano), c.ttl, now.UTC().Format(time.RFC3339Nano))}
	}
	return t, nil
}

// StreamName returns the stream name an authentic token s carries, expired
// or not; "" if s is not one of this codec's tokens or has no name.
func (c *Codec) StreamName(s string) string {
	t, _ := c.decode(s)
	return t.Name
}

// decode authenticates s and returns its content, ignoring its age.
func (c *Codec) decode(s string) (Token, bool) {
	// encoding/base64 skips '\r' and '\n' even in Strict mode: a token
	// has one encoding, so they make it invalid.
	if strings.ContainsAny(s, "\r\n") {
		return Token{}, false
	}
	if len(s) == v1EncodedLen {
		return c.decodeV1(s)
	}
	if len(s) > MaxTokenEncodedLen || len(s) < base64.StdEncoding.EncodedLen(TokenLen(0)) {
		return Token{}, false
	}
	var buf [280]byte
	// Strict: a token has one encoding, so a changed character (even in
	// the unused low bits of the last one) is always rejected.
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	b := buf[:n]
	if err != nil || n < tokenBodyEnd+tokenMACLen || [tokenHead]byte(b[:tokenHead]) != tokenPrefix || b[tokenHead] != tokenVersion {
		return Token{}, false
	}
	nameLen := int(b[tokenBodyEnd-1])
	if nameLen > MaxTokenName || n != TokenLen(nameLen) {
		return Token{}, false
	}
	var want [tokenMACLen]byte
	if !hmac.Equal(b[n-tokenMACLen:], c.mac(want[:], b[:n-tokenMACLen])) {
		return Token{}, false
	}
	return Token{
		Stream:   binary.BigEndian.Uint32(b[tokenHead+1:]),
		Shard:    shard.ShardID(binary.BigEndian.Uint32(b[tokenHead+5:])),
		Next:     binary.BigEndian.Uint64(b[tokenHead+9:]),
		IssuedMs: int64(binary.BigEndian.Uint64(b[tokenHead+17:])),
		Name:     string(b[tokenBodyEnd : tokenBodyEnd+nameLen]),
	}, true
}

// encodeV1 returns the version 1 form of t (tests of old tokens).
func (c *Codec) encodeV1(t Token) string {
	var buf [v1Len]byte
	buf[0] = v1Version
	binary.BigEndian.PutUint32(buf[1:], t.Stream)
	binary.BigEndian.PutUint32(buf[5:], uint32(t.Shard))
	binary.BigEndian.PutUint64(buf[9:], t.Next)
	binary.BigEndian.PutUint64(buf[17:], uint64(t.IssuedMs))
	c.mac(buf[v1BodyLen:], buf[:v1BodyLen])
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

// decodeV1 decodes a version 1 token.
func (c *Codec) decodeV1(s string) (Token, bool) {
	var buf [v1Len]byte
	n, err := base64.RawURLEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != v1Len || buf[0] != v1Version {
		return Token{}, false
	}
	var want [tokenMACLen]byte
	if !hmac.Equal(buf[v1BodyLen:], c.mac(want[:], buf[:v1BodyLen])) {
		return Token{}, false
	}
	return Token{
		Stream:   binary.BigEndian.Uint32(buf[1:]),
		Shard:    shard.ShardID(binary.BigEndian.Uint32(buf[5:])),
		Next:     binary.BigEndian.Uint64(buf[9:]),
		IssuedMs: int64(binary.BigEndian.Uint64(buf[17:])),
	}, true
}
