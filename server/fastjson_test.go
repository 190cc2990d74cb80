package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// The hand-written encoders must produce what encoding/json produces for
// the generic response structs (compared as parsed JSON).

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "tab\tnl\ncr\r", "\x00\x01\x1f\x7f", "ünïcødé ✓ 😀",
		"bad utf8 \xff\xfe end", "\u2028\u2029", "<html>&amp;"} {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		var a, b string
		require.NoError(t, json.Unmarshal(want, &a))
		got := appendJSONString(nil, s)
		require.NoError(t, json.Unmarshal(got, &b), "%q", got)
		require.Equal(t, a, b, "%q", s)
	}
}

func TestAppendShardID(t *testing.T) {
	for _, id := range []engine.ShardID{0, 7, 10, 99, 100, 999, 1000, 4321, 9999, 10000, 10001, 123456, 1<<31 - 1, 1<<32 - 1} {
		require.Equal(t, id.String(), string(appendShardID(nil, id)))
		require.Equal(t, "x"+id.String(), string(appendShardID([]byte("x"), id)))
	}
}

func TestAppendGetRecordsJSON(t *testing.T) {
	child := engine.ShardID(3)
	out := engine.GetRecordsOutput{
		Records: []engine.Record{
			{SequenceNumber: engine.SequenceNumber{ShardCreated: 1700000000, Shard: 2, Counter: 42, Written: 1700000001},
				PartitionKey: "k\"1", Data: []byte{0, 1, 2, 250}, Timestamp: time.UnixMilli(1700000001234)},
			{SequenceNumber: engine.SequenceNumber{ShardCreated: 1700000000, Shard: 2, Counter: 43, Written: 1700000002},
				PartitionKey: "ü", Data: nil, Timestamp: time.UnixMilli(1700000002005)},
		},
		MillisBehindLatest: 17,
		ChildShards: []engine.ChildShard{{ShardID: child, ParentShards: []engine.ShardID{1, 2},
			HashKeyRange: engine.HashRange{Start: engine.HashKey{Lo: 5}, End: engine.MaxHashKey}}},
	}
	generic := getRecordsOutput{Records: []recordOut{}, MillisBehindLatest: 17, ChildShards: childShards(out.ChildShards)}
	for _, r := range out.Records {
		d := r.Data
		if d == nil {
			d = []byte{}
		}
		generic.Records = append(generic.Records, recordOut{SequenceNumber: r.SequenceNumber.String(),
			ApproximateArrivalTimestamp: ts(r.Timestamp), Data: d, PartitionKey: r.PartitionKey})
	}
	want, err := json.Marshal(generic)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(appendGetRecordsJSON(nil, &out)))

	out.ChildShards, generic.ChildShards = nil, nil
	out.NextShardIterator, generic.NextShardIterator = "tok-en_", "tok-en_"
	want, err = json.Marshal(generic)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(appendGetRecordsJSON(nil, &out)))
	require.Contains(t, string(want), `"ApproximateArrivalTimestamp":1700000001.234`)
}

func TestAppendPutRecordsJSON(t *testing.T) {
	results := []engine.PutResult{
		{ShardID: 1, SequenceNumber: engine.SequenceNumber{ShardCreated: 1700000000, Shard: 1, Counter: 9, Written: 1700000003}},
		{ShardID: 0, Err: errors.New("throttled")},
	}
	failures := []putRecordsResultEntry{{ErrorCode: errThroughputExceeded, ErrorMessage: "Rate exceeded for shard shardId-000000000000 in stream s."}}
	generic := putRecordsOutput{FailedRecordCount: 1, EncryptionType: "NONE", Records: []putRecordsResultEntry{
		{SequenceNumber: results[0].SequenceNumber.String(), ShardId: "shardId-000000000001"}, failures[0]}}
	want, err := json.Marshal(generic)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(appendPutRecordsJSON(nil, 1, results, failures, "NONE")))
}

// appendPutRecordJSON writes what json.Marshal writes for putRecordOutput,
// byte for byte, whatever the encryption type holds.
func TestAppendPutRecordJSON(t *testing.T) {
	for _, id := range []engine.ShardID{0, 3, 12345} {
		res := engine.PutResult{ShardID: id, SequenceNumber: engine.SequenceNumber{ShardCreated: 1700000000, Shard: uint32(id), Counter: 9, Written: 1700000003}}
		for _, enc := range []string{"NONE", "KMS", "", "a<b>&c", `q"uo\te`, "tab\t", "ünï", "\u2028"} {
			want, err := json.Marshal(putRecordOutput{ShardId: id.String(), SequenceNumber: res.SequenceNumber.String(), EncryptionType: enc})
			require.NoError(t, err)
			require.Equal(t, string(want), string(appendPutRecordJSON(nil, &res, enc)))
		}
	}
}

// decodeBase64 agrees with strictBase64.Decode (count, bytes, and whether
// it fails), except that it fails on a raw '\r' or '\n', on valid base64 of every length up to 200 bytes and on the
// same text with one character replaced by padding, a newline, a
// character outside the alphabet or one that leaves unused bits set.
func TestDecodeBase64MatchesStrict(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	check := func(src []byte) {
		t.Helper()
		want := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
		got := make([]byte, len(want))
		wn, werr := strictBase64.Decode(want, src)
		if bytes.ContainsAny(src, "\r\n") {
			wn, werr = 0, errRawNewline // JSON forbids them raw
		}
		gn, gerr := decodeBase64(got, src)
		if (werr != nil) != (gerr != nil) || (werr == nil && (wn != gn || !bytes.Equal(want[:wn], got[:gn]))) {
			t.Fatalf("decodeBase64(%q) = %d, %v (%x); strict: %d, %v (%x)", src, gn, gerr, got[:max(gn, 0)], wn, werr, want[:max(wn, 0)])
		}
	}
	for n := range 200 {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		enc := base64.StdEncoding.AppendEncode(nil, data)
		check(enc)
		for _, c := range []byte("=\n\r -_.AQgw/+\x00\xff") {
			for range 4 {
				if len(enc) == 0 {
					break
				}
				bad := bytes.Clone(enc)
				bad[rng.IntN(len(bad))] = c
				check(bad)
			}
		}
		if len(enc) > 1 {
			check(enc[:len(enc)-1])
			check(append(bytes.Clone(enc), "===="...))
		}
	}
}

// decodePutRecordJSON takes the SDKs' PutRecord bodies (every member
// once, no escapes) and gives up on the rest, which codecJSON decodes
// and words; what it takes it decodes as codecJSON does.
func TestDecodePutRecordJSON(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"Data":"aGVsbG8=","PartitionKey":"k","StreamName":"s"}`, true},
		{` { "StreamARN" : "arn:aws:kinesis:us-east-1:000000000000:stream/s" , "Data":"","PartitionKey":"ü",` +
			`"ExplicitHashKey":"7","SequenceNumberForOrdering":"1"} `, true},
		{`{}`, true},
		{`{"Data":"aGVsbG8=","Data":"aGVsbG8="}`, false}, // duplicate: encoding/json keeps the last
		{`{"PartitionKey":"a","PartitionKey":"b"}`, false},
		{`{"PartitionKey":"a\u0062"}`, false}, // escape
		{`{"PartitionKey":null}`, false},
		{`{"Data":"aGVsbG9=","PartitionKey":"k"}`, false}, // unused bits set: the slow path words it
		{`{"Data":"aGVs\nbG8=","PartitionKey":"k"}`, false},
		{`{"Other":"x"}`, false},
		{`{"PartitionKey":1}`, false},
		{`{"PartitionKey":"k"} x`, false},
		{``, false},
	} {
		var fast putRecordInput
		if got := decodePutRecordJSON([]byte(tc.body), &fast); got != tc.ok {
			t.Fatalf("decodePutRecordJSON(%q) = %v, want %v", tc.body, got, tc.ok)
		}
		if !tc.ok {
			continue
		}
		var slow putRecordInput
		require.Nil(t, codecJSON.decode([]byte(tc.body), &slow), tc.body)
		require.Equal(t, slow, fast, tc.body)
		require.Equal(t, slow.Data == nil, fast.Data == nil, tc.body)
	}
}

// plainASCII8 classifies 8 bytes as a byte-by-byte check does: every
// byte value at every position among printable ASCII, and random words.
func TestPlainASCII8(t *testing.T) {
	want := func(w []byte) int {
		k := wordPlain
		for _, c := range w {
			if c < 0x20 || c == '\\' {
				return wordEscaped
			}
			if c >= 0x80 {
				k = wordNonASCII
			}
		}
		return k
	}
	check := func(w []byte) {
		t.Helper()
		if got := plainASCII8(binary.LittleEndian.Uint64(w)); got != want(w) {
			t.Fatalf("plainASCII8(%q) = %d, want %d", w, got, want(w))
		}
	}
	for pos := range 8 {
		for c := range 256 {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			check(w)
			w[(pos+3)%8] = 0xc3 // with a non-ASCII byte elsewhere
			check(w)
		}
	}
	rng := rand.New(rand.NewPCG(9, 10))
	w := make([]byte, 8)
	for range 200_000 {
		binary.LittleEndian.PutUint64(w, rng.Uint64())
		check(w)
		for i := range w { // mostly printable, sometimes not
			if rng.IntN(4) != 0 {
				w[i] = byte(0x20 + rng.IntN(0x60))
			}
		}
		check(w)
	}
}

// jsonScanner.str takes exactly the strings without escapes, control
// characters or invalid UTF-8, of every length around its 8-byte steps,
// with the odd character at every position.
func TestScannerStr(t *testing.T) {
	for n := range 26 {
		for pos := range n {
			for _, odd := range []string{"\\", "\\\"", "\x00", "\x1f", "\t", "\x7f", "é", "\xff", "\xc3", "😀", "<"} {
				raw := []byte(strings.Repeat("k", pos) + odd + strings.Repeat("k", n-pos))
				body := append(append([]byte(`"`), raw...), `" tail`...)
				sc := jsonScanner{b: body}
				v, ok := sc.str()
				want := utf8.Valid(raw) && !bytes.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == '\\' })
				if bytes.Contains(raw, []byte(`"`)) { // the string ends at the quote
					raw, _, _ = bytes.Cut(raw, []byte(`"`))
					want = false // "\" before it
				}
				if ok != want || ok && (string(v) != string(raw) || string(body[sc.i:]) != " tail") {
					t.Fatalf("str(%q) = %q, %v (rest %q); want ok %v", body, v, ok, body[sc.i:], want)
				}
			}
		}
	}
}

// sdkEntry takes the entries aws-sdk-go-v2 writes, and PutRecords bodies
// whose entries it takes, refuses or leaves to the member-by-member path
// decode as encoding/json decodes them.
func TestDecodePutRecordsSDKEntry(t *testing.T) {
	sdk := `{"Data":"aGVsbG8=","PartitionKey":"k1"}`
	sc := jsonScanner{b: []byte(sdk + `,`)}
	b := putBatch{arena: make([]byte, 0, 64)}
	var e engine.Entry
	var pk keySpan
	require.True(t, sc.sdkEntry(&b, &e, &pk))
	require.Equal(t, "hello", string(e.Data))
	require.Equal(t, "k1", string(b.keys[pk.off:pk.off+pk.n]))
	require.Equal(t, len(sdk), sc.i)

	for _, entry := range []string{
		sdk,
		`{"Data":"aGVsbG8=","PartitionKey":"k1","ExplicitHashKey":"7"}`,
		`{"PartitionKey":"k1","Data":"aGVsbG8="}`,
		`{ "Data":"aGVsbG8=","PartitionKey":"k1"}`,
		`{"Data":"aGVsbG8=", "PartitionKey":"k1"}`,
		`{"Data":"aGVsbG8=","PartitionKey":"k1" }`,
		`{"Data":"","PartitionKey":""}`,
		`{"Data":"aGVsbG8=","PartitionKey":"ké"}`,
		`{"Data":"aGVsbG8=","PartitionKey":"k\xff"}`,
		`{"Data":"aGVsbG8=","PartitionKey":"k\"1"}`,
		`{"Data":"aGVsbG8=","PartitionKey":"k\u0031"}`,
		`{"Data":"aGVsbG8=","PartitionKey":"k` + "\x01" + `"}`,
		`{"Data":"aGVsbG8","PartitionKey":"k1"}`,
		`{"Data":"aGVsbG9=","PartitionKey":"k1"}`,
		`{"Data":"aGVs` + "\n" + `bG8=","PartitionKey":"k1"}`,
		`{"Data":"aGVs\/bG8=","PartitionKey":"k1"}`,
		`{"Data":"aGVsbG8=","PartitionKey":"k1","Data":"aGVsbG8="}`,
		`{"Data":"aGVsbG8=","PartitionKey":"k1"`,
		`{"Data":"aGVsbG8=","PartitionKey":null}`,
		`{"Data":"aGVsbG8=","PartitionKey":1}`,
	} {
		for _, body := range []string{
			`{"Records":[` + entry + `],"StreamName":"s"}`,
			`{"Records":[` + sdk + `,` + entry + `,` + sdk + `],"StreamName":"s"}`,
		} {
			var fast putBatch
			var in putRecordsInput
			aerr := codecJSON.decode([]byte(body), &in)
			if !decodePutRecordsJSON([]byte(body), &fast) {
				continue // the handler decodes it with codecJSON
			}
			require.Nil(t, aerr, "fast decoder accepted %q", body)
			var slow putBatch
			slow.fromInput(&in)
			require.True(t, sameBatch(&fast, &slow), "%q:\nfast %+v\nslow %+v", body, fast, slow)
		}
	}
}

// appendJSONString's eight-byte fast path writes what the byte-by-byte
// escaping writes: strings of every length up to 40 with one character
// that needs more than a copy at every position.
func TestAppendJSONStringFastPath(t *testing.T) {
	// slow is appendJSONString's escaping, one rune at a time.
	slow := func(s string) string {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				b.WriteString(`\ufffd`)
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\r':
				b.WriteString(`\r`)
			case r == '\t':
				b.WriteString(`\t`)
			case r < 0x20:
				fmt.Fprintf(&b, `\u%04x`, r)
			case r == '\u2028' || r == '\u2029':
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteString(s[i : i+size])
			}
			i += size
		}
		b.WriteByte('"')
		return b.String()
	}
	for n := range 41 {
		for pos := range n + 1 {
			for _, odd := range []string{"", `"`, `\`, "\x00", "\x1f", "\n", "\x7f", "é", "\xff", "\u2028", "😀", "<>&"} {
				s := strings.Repeat("k", pos) + odd + strings.Repeat("k", n-pos)
				if got, want := string(appendJSONString([]byte("x"), s)), "x"+slow(s); got != want {
					t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
				}
			}
		}
	}
}

// appendBase64 writes what base64.StdEncoding.AppendEncode writes, for
// every length up to 300.
func TestAppendBase64(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for n := range 301 {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		want := base64.StdEncoding.AppendEncode([]byte("x"), src)
		if got := appendBase64([]byte("x"), src); string(got) != string(want) {
			t.Fatalf("%d bytes: got %s, want %s", n, got, want)
		}
	}
}

// request.built keeps a response built in the scratch buffer's spare room
// where it is, and copies one that outgrew it into the buffer.
func TestRequestBuilt(t *testing.T) {
	rq := &request{scratch: new(bytes.Buffer)}
	rq.scratch.Grow(64)
	in := append(rq.scratch.AvailableBuffer(), "fits"...)
	got := rq.built(in)
	require.Equal(t, "fits", string(got))
	require.Same(t, &in[0], &got[0])
	require.Zero(t, rq.scratch.Len())

	big := append(rq.scratch.AvailableBuffer(), strings.Repeat("x", 100)...)
	got = rq.built(big)
	require.Equal(t, strings.Repeat("x", 100), string(got))
	require.Equal(t, 100, rq.scratch.Len())
	require.NotSame(t, &big[0], &got[0])

	rq.scratch.Reset()
	require.Empty(t, rq.built(rq.scratch.AvailableBuffer()))
}

// The response size estimates cover the responses (no buffer growth while
// encoding) for plain partition keys.
func TestResponseJSONSizes(t *testing.T) {
	results := make([]engine.PutResult, 500)
	for i := range results {
		results[i] = engine.PutResult{ShardID: engine.ShardID(999_999_999_999 - i),
			SequenceNumber: engine.SequenceNumber{ShardCreated: 1<<36 - 1, Shard: ^uint32(0), Counter: maxCounter - uint64(i), Written: 1<<36 - 1}}
	}
	require.LessOrEqual(t, len(appendPutRecordsJSON(nil, 0, results, nil, "NONE")), putRecordsJSONSize(results, nil))
	var out engine.GetRecordsOutput
	for i := range 1000 {
		out.Records = append(out.Records, engine.Record{
			SequenceNumber: engine.SequenceNumber{ShardCreated: 1<<36 - 1, Shard: ^uint32(0), Counter: maxCounter - uint64(i), Written: 1<<36 - 1},
			Timestamp:      time.UnixMilli(1<<53 - 1), Data: make([]byte, i%300), PartitionKey: strings.Repeat("k", i%257)})
	}
	out.NextShardIterator = strings.Repeat("A", 400)
	out.MillisBehindLatest = 1<<63 - 1
	require.LessOrEqual(t, len(appendGetRecordsJSON(nil, &out)), getRecordsJSONSize(&out))
}
