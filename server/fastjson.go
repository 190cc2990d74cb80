package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/kvstream/kvstream/engine"
)

// Reflection-free JSON for the hot paths: decoding PutRecords and
// PutRecord requests and encoding PutRecords and GetRecords responses. The decoder handles the
// shape every SDK sends; anything else (escapes, unknown or duplicate
// members, nulls, bad base64, …) makes it give up, and the caller falls
// back to encoding/json, which also words the errors. FuzzDecodeRequest
// checks that both decoders agree whenever the fast one succeeds.

// putBatch is a decoded PutRecords request, in the form the engine takes.
// Data slices point into arena and partition keys into one string, so a
// 500-entry request costs a handful of allocations.
type putBatch struct {
	streamName, streamARN       string
	hasStreamName, hasStreamARN bool
	hasRecords                  bool
	entries                     []engine.Entry
	flags                       []entryFlags
	arena                       []byte    // decoded Data bytes
	keys                        []byte    // partition keys and hash keys, back to back
	spans                       []keySpan // partition key, explicit hash key per entry, in keys
	// size is the data and partition-key bytes decoded so far, and
	// limitErr, when set, the PutRecords limit (500 entries, 5 MiB) that
	// stopped the decoding: the request is answered with it.
	size     int
	limitErr *apiError
}

// entryFlags says which members one PutRecords entry had.
type entryFlags uint8

const (
	hasData entryFlags = 1 << iota
	hasPartitionKey
	hasExplicitHashKey
)

// strictBase64 rejects base64 whose last character carries unused bits.
var strictBase64 = base64.StdEncoding.Strict()

// keySpan locates a string in putBatch.keys until the keys are frozen.
type keySpan struct{ off, n int32 }

// reset empties b, keeping its memory.
func (b *putBatch) reset() {
	*b = putBatch{entries: b.entries[:0], flags: b.flags[:0], arena: b.arena[:0], keys: b.keys[:0], spans: b.spans[:0]}
}

// PutRecords' request limits, enforced while decoding.
const (
	maxPutRecordsEntries = 500
	maxPutRecordsBytes   = 5 << 20 // data plus partition keys
)

// tooManyRecords is the error for a PutRecords with more than 500 entries,
// raised at the 501st.
func tooManyRecords() *apiError {
	return newAPIError(errValidation, "1 validation error detected: Value '[…]' at 'records' failed to satisfy constraint: "+
		"Member must have length less than or equal to "+strconv.Itoa(maxPutRecordsEntries))
}

// recordsTooLarge stops decoding a PutRecords at the entry that goes over
// maxPutRecordsDecoded; putRecords answers it with the text of the
// request's stream (recordsTooLargeFor).
func recordsTooLarge() *apiError {
	return newAPIError(errInvalidArgument, "Records size exceeds 5 MB limit")
}

// admit checks the limits before an entry is added and after its size
// (data and partition key) is counted, reporting false (with limitErr
// set) when one stops the decoding.
func (b *putBatch) admit(size int) bool {
	if len(b.entries) >= maxPutRecordsEntries {
		b.limitErr = tooManyRecords()
		return false
	}
	b.size += size
	if b.size > maxPutRecordsDecoded {
		b.limitErr = recordsTooLarge()
		return false
	}
	return true
}

// jsonScanner walks a JSON body.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then c, reporting whether c was there.
func (s *jsonScanner) consume(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes and returns its raw bytes. ok is
// false for anything else (escapes, control characters, invalid UTF-8).
// It finds the closing quote with a fast byte search and then checks
// the bytes before it 8 at a time (plainASCII8).
func (s *jsonScanner) str() (v []byte, ok bool) {
	if !s.consume('"') {
		return nil, false
	}
	n := bytes.IndexByte(s.b[s.i:], '"')
	if n < 0 {
		return nil, false
	}
	v = s.b[s.i : s.i+n]
	if !plainString(v) {
		return nil, false
	}
	s.i += n + 1
	return v, true
}

// plainString reports whether v, the raw bytes between a JSON string's
// quotes, needs no unescaping: no escapes, no control characters, valid
// UTF-8. It checks 8 bytes at a time (plainASCII8).
func plainString(v []byte) bool {
	ascii := true
	i := 0
	for ; i+8 <= len(v); i += 8 {
		switch plainASCII8(binary.LittleEndian.Uint64(v[i:])) {
		case wordPlain:
		case wordNonASCII:
			ascii = false
		default:
			return false
		}
	}
	for _, c := range v[i:] {
		switch {
		case c == '\\' || c < 0x20:
			return false
		case c >= 0x80:
			ascii = false
		}
	}
	return ascii || utf8.Valid(v)
}

// plainJSON8 reports whether the 8 bytes of x are all printable ASCII
// other than '"' and '\\' (SWAR, as plainASCII8).
func plainJSON8(x uint64) bool {
	return escaped8(x)|byteIs8(x, '"')|x&swarHighs == 0
}

// SWAR tests on the 8 bytes of a word: each result has a byte's high bit
// set for the bytes that match, and is exact about whether any byte does
// (a borrow may mark a byte above one that matches, never one alone).
const swarOnes, swarHighs = 0x0101010101010101, 0x8080808080808080

// escaped8 finds the bytes a JSON string cannot hold as they are: a
// control character (< 0x20) or '\\'. ('"' ends the string.)
func escaped8(x uint64) uint64 {
	return (x-0x20*swarOnes)&^x&swarHighs | byteIs8(x, '\\')
}

// byteIs8 finds the bytes equal to c.
func byteIs8(x uint64, c byte) uint64 {
	y := x ^ uint64(c)*swarOnes
	return (y - swarOnes) &^ y & swarHighs
}

// load64 returns s[i:i+8] as a little-endian word (one load).
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// What plainASCII8 finds in 8 bytes of a JSON string.
const (
	wordPlain    = iota // printable ASCII other than '\'
	wordNonASCII        // bytes ≥ 0x80 too, but no control character or '\'
	wordEscaped         // a control character (< 0x20) or '\'
)

// plainASCII8 classifies the 8 bytes of x (SWAR, escaped8).
func plainASCII8(x uint64) int {
	switch {
	case escaped8(x) != 0:
		return wordEscaped
	case x&swarHighs != 0:
		return wordNonASCII
	}
	return wordPlain
}

// base64Str reads a string that must hold base64 text, finding its end
// with a fast byte search. Characters outside the base64 alphabet make
// the decodeBase64 that follows fail (raw '\r' and '\n' too, which
// base64 would skip but JSON forbids).
func (s *jsonScanner) base64Str() (v []byte, ok bool) {
	if !s.consume('"') {
		return nil, false
	}
	n := bytes.IndexByte(s.b[s.i:], '"')
	if n < 0 {
		return nil, false
	}
	v = s.b[s.i : s.i+n]
	s.i += n + 1
	return v, true
}

// decodePutRecordsJSON decodes body into b. It returns false when the
// body is outside the fast path's shape; b is then garbage. It returns
// true with b.limitErr set when the body goes over PutRecords' limits:
// decoding stops at the 501st entry or the entry past 5 MiB.
func decodePutRecordsJSON(body []byte, b *putBatch) bool {
	b.reset()
	s := jsonScanner{b: body}
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return s.end()
	}
	spans := b.spans
	for {
		key, ok := s.str()
		if !ok || !s.consume(':') {
			return false
		}
		switch string(key) {
		case "StreamName", "StreamARN":
			v, ok := s.str()
			if !ok {
				return false
			}
			if key[6] == 'N' {
				if b.hasStreamName {
					return false
				}
				b.streamName, b.hasStreamName = string(v), true
			} else {
				if b.hasStreamARN {
					return false
				}
				b.streamARN, b.hasStreamARN = string(v), true
			}
		case "Records":
			if b.hasRecords {
				return false
			}
			b.hasRecords = true
			var ok bool
			if spans, ok = s.records(b, spans); !ok {
				return false
			}
			if b.limitErr != nil {
				return true
			}
		default:
			return false
		}
		if s.consume(',') {
			continue
		}
		if !s.consume('}') || !s.end() {
			return false
		}
		break
	}
	b.spans = spans
	// Freeze the keys into one string and point the entries at it.
	all := string(b.keys)
	for i := range b.entries {
		pk, ehk := spans[2*i], spans[2*i+1]
		b.entries[i].PartitionKey = all[pk.off : pk.off+pk.n]
		b.entries[i].ExplicitHashKey = all[ehk.off : ehk.off+ehk.n]
	}
	return true
}

// decodePutRecordJSON decodes a PutRecord body into in exactly as
// codecJSON.decode would, for the shape every SDK sends: one object of
// PutRecord's members, each at most once, each a string without escapes,
// Data strict base64. It returns false for anything else (in is then
// garbage), and the caller decodes with codecJSON, which also words the
// errors. FuzzDecodeRequest checks that both agree whenever this one
// succeeds.
func decodePutRecordJSON(body []byte, in *putRecordInput) bool {
	*in = putRecordInput{}
	s := jsonScanner{b: body}
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return s.end()
	}
	for {
		key, ok := s.str()
		if !ok || !s.consume(':') {
			return false
		}
		if string(key) == "Data" {
			v, ok := s.base64Str()
			if !ok || in.Data != nil {
				return false
			}
			d := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
			n, err := decodeBase64(d, v)
			if err != nil {
				return false
			}
			in.Data = d[:n:n]
		} else {
			var dst **string
			switch string(key) {
			case "StreamName":
				dst = &in.StreamName
			case "PartitionKey":
				dst = &in.PartitionKey
			case "ExplicitHashKey":
				dst = &in.ExplicitHashKey
			case "SequenceNumberForOrdering":
				dst = &in.SequenceNumberForOrdering
			case "StreamARN":
				dst = &in.StreamARN
			default:
				return false
			}
			v, ok := s.str()
			if !ok || *dst != nil {
				return false
			}
			str := string(v)
			*dst = &str
		}
		if s.consume(',') {
			continue
		}
		return s.consume('}') && s.end()
	}
}

// end reports whether only whitespace is left.
func (s *jsonScanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// records decodes the Records array, appending to b.entries, b.flags and
// two key spans per entry.
func (s *jsonScanner) records(b *putBatch, spans []keySpan) ([]keySpan, bool) {
	if !s.consume('[') {
		return nil, false
	}
	if s.consume(']') {
		return spans, true
	}
	if b.arena == nil {
		b.arena = make([]byte, 0, len(s.b)*3/4)
	} else if cap(b.arena) < len(s.b)*3/4 {
		b.arena = make([]byte, 0, len(s.b)*3/4)
	}
	for {
		var e engine.Entry
		var f entryFlags
		var pk, ehk keySpan
		if s.sdkEntry(b, &e, &pk) {
			f = hasData | hasPartitionKey
		} else if !s.consume('{') {
			return nil, false
		} else if !s.consume('}') {
			for {
				key, ok := s.entryMember()
				if !ok {
					return nil, false
				}
				var v []byte
				if key == memberData {
					v, ok = s.base64Str()
				} else {
					v, ok = s.str()
				}
				if !ok {
					return nil, false
				}
				switch key {
				case memberData:
					if f&hasData != 0 {
						return nil, false
					}
					f |= hasData
					if e.Data, ok = b.addData(v); !ok {
						return nil, false
					}
				case memberPartitionKey:
					if f&hasPartitionKey != 0 {
						return nil, false
					}
					f |= hasPartitionKey
					pk = b.addKey(v)
				case memberExplicitHashKey:
					if f&hasExplicitHashKey != 0 {
						return nil, false
					}
					f |= hasExplicitHashKey
					ehk = b.addKey(v)
				default:
					return nil, false
				}
				if s.consume(',') {
					continue
				}
				if !s.consume('}') {
					return nil, false
				}
				break
			}
		}
		if !b.admit(len(e.Data) + int(pk.n)) {
			return spans, true
		}
		b.entries = append(b.entries, e)
		b.flags = append(b.flags, f)
		spans = append(spans, pk, ehk)
		if s.consume(',') {
			continue
		}
		if !s.consume(']') {
			return nil, false
		}
		return spans, true
	}
}

// sdkEntry decodes one entry written exactly as aws-sdk-go-v2 writes it,
// {"Data":"…","PartitionKey":"…"} with no whitespace, into e and pk (its
// data into b.arena, its key into b.keys), reporting whether it did. On
// false, nothing was consumed or kept, and the general path reads the
// entry; both decode an entry they both accept the same way.
func (s *jsonScanner) sdkEntry(b *putBatch, e *engine.Entry, pk *keySpan) bool {
	const open, mid, end = `{"Data":"`, `","PartitionKey":"`, `"}`
	rest := s.b[s.i:]
	if !bytes.HasPrefix(rest, []byte(open)) {
		return false
	}
	rest = rest[len(open):]
	n := bytes.IndexByte(rest, '"')
	if n < 0 {
		return false
	}
	data := rest[:n]
	rest = rest[n:]
	if !bytes.HasPrefix(rest, []byte(mid)) {
		return false
	}
	rest = rest[len(mid):]
	m := bytes.IndexByte(rest, '"')
	if m < 0 || !bytes.HasPrefix(rest[m:], []byte(end)) {
		return false
	}
	key := rest[:m]
	if !plainString(key) {
		return false
	}
	v, ok := b.addData(data)
	if !ok {
		return false
	}
	e.Data = v
	*pk = b.addKey(key)
	s.i += len(open) + n + len(mid) + m + len(end)
	return true
}

// addData decodes the base64 text v into b.arena and returns the bytes
// (their capacity clipped), or false when v is not strict base64 or does
// not fit the arena's spare room (which cannot happen: the arena covers
// the body). Strict, as AWS: non-canonical base64 ("+/+=") is left to the
// slow path, which words the error.
func (b *putBatch) addData(v []byte) ([]byte, bool) {
	off := len(b.arena)
	need := base64.StdEncoding.DecodedLen(len(v))
	if cap(b.arena)-off < need {
		return nil, false
	}
	n, err := decodeBase64(b.arena[off:off+need], v)
	if err != nil {
		return nil, false
	}
	b.arena = b.arena[:off+n]
	return b.arena[off : off+n : off+n], true
}

// addKey appends a partition or hash key to b.keys and returns its span.
func (b *putBatch) addKey(v []byte) keySpan {
	sp := keySpan{int32(len(b.keys)), int32(len(v))}
	b.keys = append(b.keys, v...)
	return sp
}

// The members of a PutRecords entry, as entryMember reports them.
const (
	memberOther = iota
	memberData
	memberPartitionKey
	memberExplicitHashKey
)

// entryMember reads a member name and its colon, reporting which entry
// member it names (memberOther for any other name). The names as every
// SDK writes them ("Data": and so on, no whitespace before the colon)
// are matched as literals; anything else goes through str.
func (s *jsonScanner) entryMember() (int, bool) {
	s.ws()
	rest := s.b[s.i:]
	switch {
	case bytes.HasPrefix(rest, []byte(`"Data":`)):
		s.i += len(`"Data":`)
		return memberData, true
	case bytes.HasPrefix(rest, []byte(`"PartitionKey":`)):
		s.i += len(`"PartitionKey":`)
		return memberPartitionKey, true
	case bytes.HasPrefix(rest, []byte(`"ExplicitHashKey":`)):
		s.i += len(`"ExplicitHashKey":`)
		return memberExplicitHashKey, true
	}
	key, ok := s.str()
	if !ok || !s.consume(':') {
		return memberOther, false
	}
	switch string(key) {
	case "Data":
		return memberData, true
	case "PartitionKey":
		return memberPartitionKey, true
	case "ExplicitHashKey":
		return memberExplicitHashKey, true
	}
	return memberOther, true
}

// base64Quad[j][c] is the base64 alphabet's value of character c at
// position j of a 4-character group, already shifted into place in the
// group's 24 bits, or invalidQuad for a character outside the alphabet
// (padding included).
var base64Quad = func() (t [4][256]uint32) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for j := range t {
		for c := range t[j] {
			t[j][c] = invalidQuad
		}
		for v, c := range []byte(alphabet) {
			t[j][c] = uint32(v) << (18 - 6*j)
		}
	}
	return t
}()

const invalidQuad = 1 << 24

// decodeBase64 decodes the raw text of a JSON string, src, into dst (at
// least DecodedLen(len(src)) bytes) as strictBase64.Decode does, returning
// the same byte count and failing on the same input, and also on a raw
// '\r' or '\n', which base64 skips but JSON forbids in a string. All but
// the last 4-character group are decoded 8 characters at a time through
// base64Quad; the last group, which may hold padding, and any input with
// a character outside the alphabet go to strictBase64.Decode.
func decodeBase64(dst, src []byte) (int, error) {
	if len(src)%4 != 0 || len(src) <= 4 {
		return slowBase64(dst, src)
	}
	t0, t1, t2, t3 := &base64Quad[0], &base64Quad[1], &base64Quad[2], &base64Quad[3]
	bulk := len(src) - 4
	i, o := 0, 0
	// Each step stores 8 bytes of which 6 are decoded: at least 3 bytes
	// of dst (the last group's) follow, so the extra 2 stay inside dst
	// and are overwritten later.
	for ; i+8 <= bulk; i, o = i+8, o+6 {
		s := src[i : i+8 : i+8]
		x := t0[s[0]] | t1[s[1]] | t2[s[2]] | t3[s[3]]
		y := t0[s[4]] | t1[s[5]] | t2[s[6]] | t3[s[7]]
		if (x|y)&invalidQuad != 0 {
			return slowBase64(dst, src)
		}
		binary.BigEndian.PutUint64(dst[o:o+8], uint64(x)<<40|uint64(y)<<16)
	}
	if i < bulk { // one group of 4 left before the last
		s := src[i : i+4 : i+4]
		x := t0[s[0]] | t1[s[1]] | t2[s[2]] | t3[s[3]]
		if x&invalidQuad != 0 {
			return slowBase64(dst, src)
		}
		d := dst[o : o+3 : o+3]
		d[0], d[1], d[2] = byte(x>>16), byte(x>>8), byte(x)
		i, o = i+4, o+3
	}
	if n, ok := lastQuad(dst[o:], src[i:i+4:i+4]); ok {
		return o + n, nil
	}
	return slowBase64(dst, src) // the whole input's error
}

// lastQuad decodes the last 4-character group of strict base64 into dst,
// with or without padding, returning the byte count. ok is false for
// anything strictBase64 would refuse (and for a raw '\r' or '\n').
func lastQuad(dst, s []byte) (int, bool) {
	t0, t1, t2, t3 := &base64Quad[0], &base64Quad[1], &base64Quad[2], &base64Quad[3]
	switch {
	case s[3] != '=':
		x := t0[s[0]] | t1[s[1]] | t2[s[2]] | t3[s[3]]
		if x&invalidQuad != 0 {
			return 0, false
		}
		d := dst[:3:3]
		d[0], d[1], d[2] = byte(x>>16), byte(x>>8), byte(x)
		return 3, true
	case s[2] != '=': // "xxx=": the third character's low 2 bits unused
		x := t0[s[0]] | t1[s[1]] | t2[s[2]]
		if x&invalidQuad != 0 || x&0xff != 0 {
			return 0, false
		}
		d := dst[:2:2]
		d[0], d[1] = byte(x>>16), byte(x>>8)
		return 2, true
	default: // "xx==": the second character's low 4 bits unused
		x := t0[s[0]] | t1[s[1]]
		if x&invalidQuad != 0 || x&0xffff != 0 {
			return 0, false
		}
		dst[0] = byte(x >> 16)
		return 1, true
	}
}

// errRawNewline is decodeBase64's error for a raw '\r' or '\n'.
var errRawNewline = errors.New("raw newline in a JSON string")

// slowBase64 is strictBase64.Decode, failing on a raw '\r' or '\n'.
func slowBase64(dst, src []byte) (int, error) {
	if bytes.IndexByte(src, '\n') >= 0 || bytes.IndexByte(src, '\r') >= 0 {
		return 0, errRawNewline
	}
	return strictBase64.Decode(dst, src)
}

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does for the characters that must be escaped.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	// Printable ASCII other than '"' and '\\' is copied as it is, eight
	// bytes at a time up to the first byte that is not.
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if !plainJSON8(load64(s, i)) {
			break
		}
	}
	start := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x80 {
			continue
		}
		if c >= 0x80 {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i += size - 1
				start = i + 1
				continue
			}
			if r == '\u2028' || r == '\u2029' {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\u202`...)
				dst = append(dst, hex[r&0xf])
				i += size - 1
				start = i + 1
				continue
			}
			i += size - 1
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendShardID appends the Kinesis form of id.
func appendShardID(dst []byte, id engine.ShardID) []byte {
	if id < 10000 { // the common case: four digits by constant divisions
		v := uint32(id)
		return append(dst, 's', 'h', 'a', 'r', 'd', 'I', 'd', '-', '0', '0', '0', '0', '0', '0', '0', '0',
			byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
	}
	dst = append(dst, "shardId-"...)
	var buf [12]byte
	v := uint64(id)
	for i := len(buf) - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	if v != 0 { // more than 12 digits
		return strconv.AppendUint(dst, uint64(id), 10)
	}
	return append(dst, buf[:]...)
}

// appendPutRecordJSON encodes a PutRecord response as json.Marshal
// encodes putRecordOutput (the members in its order, encType escaped as
// json.Marshal escapes it).
func appendPutRecordJSON(dst []byte, res *engine.PutResult, encType string) []byte {
	dst = append(dst, `{"ShardId":"`...)
	dst = appendShardID(dst, res.ShardID)
	dst = append(dst, `","SequenceNumber":"`...)
	dst = res.SequenceNumber.AppendTo(dst)
	dst = append(dst, `","EncryptionType":`...)
	if plainJSONString(encType) {
		dst = append(dst, '"')
		dst = append(dst, encType...)
		dst = append(dst, '"')
	} else {
		b, _ := json.Marshal(encType) // a string always encodes
		dst = append(dst, b...)
	}
	return append(dst, '}')
}

// plainJSONString reports whether json.Marshal writes s as itself in
// quotes: printable ASCII without '"', '\' or the HTML characters it
// escapes ('<', '>', '&').
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// putRecordsJSONSize is about the length of appendPutRecordsJSON's
// output, at least it for entries that did not fail (111 bytes each with a
// shard id of up to 12 digits), so the response is built in one buffer
// rather than grown into it.
func putRecordsJSONSize(results []engine.PutResult, failures []putRecordsResultEntry) int {
	n := 64 + 111*len(results)
	for _, f := range failures {
		n += len(f.ErrorCode) + len(f.ErrorMessage)
	}
	return n
}

// getRecordsJSONSize is about the length of appendGetRecordsJSON's output,
// at least it for records whose partition keys need no escaping.
func getRecordsJSONSize(out *engine.GetRecordsOutput) int {
	n := 64 + len(out.NextShardIterator) + 256*len(out.ChildShards)
	for i := range out.Records {
		r := &out.Records[i]
		n += 160 + base64.StdEncoding.EncodedLen(len(r.Data)) + len(r.PartitionKey)
	}
	return n
}

// appendPutRecordsJSON encodes a PutRecords response.
func appendPutRecordsJSON(dst []byte, failed int, results []engine.PutResult, failures []putRecordsResultEntry, encType string) []byte {
	dst = append(dst, `{"FailedRecordCount":`...)
	dst = strconv.AppendInt(dst, int64(failed), 10)
	dst = append(dst, `,"Records":[`...)
	var seqs seqDigits
	fi := 0
	for i, r := range results {
		if i > 0 {
			dst = append(dst, ',')
		}
		if r.Err != nil {
			f := failures[fi]
			fi++
			dst = append(dst, `{"ErrorCode":`...)
			dst = appendJSONString(dst, f.ErrorCode)
			dst = append(dst, `,"ErrorMessage":`...)
			dst = appendJSONString(dst, f.ErrorMessage)
			dst = append(dst, '}')
			continue
		}
		dst = append(dst, `{"SequenceNumber":"`...)
		dst = seqs.appendSeq(dst, r.SequenceNumber)
		dst = append(dst, `","ShardId":"`...)
		dst = appendShardID(dst, r.ShardID)
		dst = append(dst, `"}`...)
	}
	dst = append(dst, `],"EncryptionType":`...)
	dst = appendJSONString(dst, encType)
	return append(dst, '}')
}

// appendGetRecordsJSON appends GetRecords' JSON response body.
func appendGetRecordsJSON(dst []byte, out *engine.GetRecordsOutput) []byte {
	dst = append(dst, `{"Records":[`...)
	var rc recordCache
	for i := range out.Records {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendRecordJSON(dst, &out.Records[i], &rc)
	}
	dst = append(dst, ']')
	if out.NextShardIterator != "" {
		dst = append(dst, `,"NextShardIterator":`...)
		dst = appendJSONString(dst, out.NextShardIterator)
	}
	dst = append(dst, `,"MillisBehindLatest":`...)
	dst = strconv.AppendInt(dst, out.MillisBehindLatest, 10)
	dst = appendChildShardsJSON(dst, out.ChildShards)
	return append(dst, '}')
}

// recordCache is what consecutive records of a response share: their
// sequence numbers' runs and often their arrival second. The zero value is
// ready to use.
type recordCache struct {
	seqs    seqDigits
	sec     int64 // the second secText holds, if secLen > 0
	secText [20]byte
	secLen  int
}

// appendRecordJSON appends one record as the Record shape, printing its
// sequence number and arrival time through rc.
func appendRecordJSON(dst []byte, r *engine.Record, rc *recordCache) []byte {
	dst = append(dst, `{"SequenceNumber":"`...)
	dst = rc.seqs.appendSeq(dst, r.SequenceNumber)
	dst = append(dst, `","ApproximateArrivalTimestamp":`...)
	if ms := r.Timestamp.UnixMilli(); ms >= 0 { // as appendEpochSeconds
		if sec := ms / 1000; rc.secLen == 0 || sec != rc.sec {
			rc.sec, rc.secLen = sec, len(strconv.AppendInt(rc.secText[:0], sec, 10))
		}
		frac := ms % 1000
		dst = append(dst, rc.secText[:rc.secLen]...)
		dst = append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	} else {
		dst = appendEpochSeconds(dst, r.Timestamp)
	}
	dst = append(dst, `,"Data":"`...)
	dst = appendBase64(dst, r.Data)
	dst = append(dst, `","PartitionKey":`...)
	dst = appendJSONString(dst, r.PartitionKey)
	return append(dst, '}')
}

// base64Pairs[v] is the two standard base64 characters of the 12-bit
// value v, the first in the low byte.
var base64Pairs = func() (t [1 << 12]uint16) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for v := range t {
		t[v] = uint16(alphabet[v>>6]) | uint16(alphabet[v&63])<<8
	}
	return t
}()

// appendBase64 appends the standard base64 encoding of src, as
// base64.StdEncoding.AppendEncode does: six bytes at a time into eight
// characters through base64Pairs, the last few bytes (and their padding)
// by the standard encoder.
func appendBase64(dst, src []byte) []byte {
	off, n := len(dst), base64.StdEncoding.EncodedLen(len(src))
	dst = slices.Grow(dst, n)[:off+n]
	out := dst[off:]
	i, o := 0, 0
	// Each step reads 8 bytes and encodes the first 6.
	for ; i+8 <= len(src); i, o = i+6, o+8 {
		u := binary.BigEndian.Uint64(src[i:])
		c := uint64(base64Pairs[u>>52]) | uint64(base64Pairs[u>>40&0xfff])<<16 |
			uint64(base64Pairs[u>>28&0xfff])<<32 | uint64(base64Pairs[u>>16&0xfff])<<48
		binary.LittleEndian.PutUint64(out[o:], c)
	}
	base64.StdEncoding.Encode(out[o:], src[i:]) // i is a multiple of 3
	return dst
}

// appendChildShardsJSON appends `,"ChildShards":[…]`, or nothing when cs
// is empty.
func appendChildShardsJSON(dst []byte, cs []engine.ChildShard) []byte {
	if len(cs) == 0 {
		return dst
	}
	dst = append(dst, `,"ChildShards":[`...)
	for i, c := range cs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"ShardId":"`...)
		dst = appendShardID(dst, c.ShardID)
		dst = append(dst, `","ParentShards":[`...)
		for j, p := range c.ParentShards {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = appendShardID(dst, p)
			dst = append(dst, '"')
		}
		dst = append(dst, `],"HashKeyRange":{"StartingHashKey":"`...)
		dst = append(dst, c.HashKeyRange.Start.String()...)
		dst = append(dst, `","EndingHashKey":"`...)
		dst = append(dst, c.HashKeyRange.End.String()...)
		dst = append(dst, `"}}`...)
	}
	return append(dst, ']')
}
