package iterator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
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
}

const (
	tokenVersion = 1
	tokenBodyLen = 1 + 4 + 4 + 8 + 8
	tokenMACLen  = 16
	tokenLen     = tokenBodyLen + tokenMACLen
)

// TokenEncodedLen is the length of every encoded token (well under
// Kinesis' 512-character limit).
var TokenEncodedLen = base64.RawURLEncoding.EncodedLen(tokenLen)

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
	var buf [tokenLen]byte
	buf[0] = tokenVersion
	binary.BigEndian.PutUint32(buf[1:], t.Stream)
	binary.BigEndian.PutUint32(buf[5:], uint32(t.Shard))
	binary.BigEndian.PutUint64(buf[9:], t.Next)
	binary.BigEndian.PutUint64(buf[17:], uint64(t.IssuedMs))
	c.mac(buf[tokenBodyLen:], buf[:tokenBodyLen])
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

// Decode authenticates and decodes s. A forged, truncated or garbage token
// is shard.ErrInvalidArgument (shard.ReasonInvalidToken); a token older
// than the TTL at nowMs is shard.ErrExpiredIterator
// (shard.ReasonIteratorExpired).
func (c *Codec) Decode(s string, nowMs int64) (Token, error) {
	invalid := &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonInvalidToken, Field: "ShardIterator",
		Msg: "the shard iterator token is not valid"}
	if len(s) != TokenEncodedLen {
		return Token{}, invalid
	}
	var buf [tokenLen]byte
	// Strict: a token has one encoding, so a changed character (even in
	// the unused low bits of the last one) is always rejected.
	n, err := base64.RawURLEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != tokenLen || buf[0] != tokenVersion {
		return Token{}, invalid
	}
	var want [tokenMACLen]byte
	if !hmac.Equal(buf[tokenBodyLen:], c.mac(want[:], buf[:tokenBodyLen])) {
		return Token{}, invalid
	}
	t := Token{
		Stream:   binary.BigEndian.Uint32(buf[1:]),
		Shard:    shard.ShardID(binary.BigEndian.Uint32(buf[5:])),
		Next:     binary.BigEndian.Uint64(buf[9:]),
		IssuedMs: int64(binary.BigEndian.Uint64(buf[17:])),
	}
	if nowMs-t.IssuedMs > c.ttl.Milliseconds() {
		issued, now := time.UnixMilli(t.IssuedMs), time.UnixMilli(nowMs)
		return Token{}, &shard.Error{Kind: shard.ErrExpiredIterator, Reason: shard.ReasonIteratorExpired,
			Time: issued, Now: now, Limit: c.ttl.Milliseconds(),
			Msg: fmt.Sprintf("the shard iterator issued at %s is older than its lifetime of %v at %s",
				issued.UTC().Format(time.RFC3339Nano), c.ttl, now.UTC().Format(time.RFC3339Nano))}
	}
	return t, nil
}
