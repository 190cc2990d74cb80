package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"
)

// serveDirect runs one request through srv.ServeHTTP (no network) and
// returns the recorder and the bytes the process allocated meanwhile.
func serveDirect(srv *Server, op string, c codec, body []byte) (*httptest.ResponseRecorder, uint64) {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	req.Header.Set("Content-Type", c.contentType())
	fakeSign(req)
	rec := httptest.NewRecorder()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	srv.ServeHTTP(rec, req)
	runtime.ReadMemStats(&after)
	return rec, after.TotalAlloc - before.TotalAlloc
}

// errOf decodes an error response of either codec.
func errOf(t *testing.T, c codec, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	var e errorBody
	if c == codecCBOR {
		require.NoError(t, cbor.Unmarshal(rec.Body.Bytes(), &e), "%x", rec.Body.Bytes())
		return e
	}
	return jsonErr(t, rec.Body.Bytes())
}

// TestPutRecordsLimitsWhileDecoding checks PutRecords stops decoding at
// the 501st entry or the entry past 5 MiB, on every decoder path, so a
// body declaring millions of entries costs about what 500 do.
func TestPutRecordsLimitsWhileDecoding(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	const tooMany = "Member must have length less than or equal to 500"
	entry := `{"Data":"aGVsbG8=","PartitionKey":"k"}`
	cborHead := func(major byte, n uint64) []byte { return appendCBORHead(nil, major, n) }
	cborMap := func(n uint64, items []byte) []byte {
		b := append(appendCBORHead(nil, 5, 2), appendCBORText(nil, "StreamName")...)
		b = append(b, appendCBORText(nil, "s")...)
		b = append(b, appendCBORText(nil, "Records")...)
		return append(append(b, cborHead(4, n)...), items...)
	}
	for _, tc := range []struct {
		name string
		c    codec
		body []byte
		typ  string
		msg  string
	}{
		// The fast JSON decoder.
		{"json fast 501", codecJSON, []byte(`{"StreamName":"s","Records":[` + strings.Repeat(entry+",", 500) + entry + `]}`), errValidation, tooMany},
		// encoding/json (entries of another shape): 2.3 million {}.
		{"json generic 2.3M", codecJSON, []byte(`{"StreamName":"s","Records":[` + strings.Repeat("{},", 2_300_000) + `{}]}`), errValidation, tooMany},
		{"json over 10 MiB", codecJSON, []byte(`{"StreamName":"s","Records":[` + strings.Repeat(`{"Data":"`+strings.Repeat("A", 1165088)+`","PartitionKey":"k"},`, 12) + `{}]}`),
			errInvalidArgument, "Records size exceeds 5 MB limit"},
		// CBOR declaring 1,048,576 empty maps in 1 MiB.
		{"cbor 1M maps", codecCBOR, cborMap(1<<20, bytes.Repeat([]byte{0xa0}, 1<<20)), errValidation, tooMany},
		{"cbor 501", codecCBOR, cborMap(501, bytes.Repeat([]byte{0xa0}, 501)), errValidation, tooMany},
		{"cbor indefinite 501", codecCBOR, append(cborMap(0, nil)[:len(cborMap(0, nil))-1], append(append([]byte{0x9f}, bytes.Repeat([]byte{0xa0}, 501)...), 0xff)...), errValidation, tooMany},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, alloc := serveDirect(env.srv, "PutRecords", tc.c, tc.body)
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			e := errOf(t, tc.c, rec)
			require.Equal(t, tc.typ, e.Type)
			require.Contains(t, e.Message, tc.msg)
			// AWS prints the whole Records list (cut at entriesValueText).
			require.Less(t, rec.Body.Len(), entriesValueText+4096)
			// The old decoders allocated 1.4 GB for the 2.3M {} body, 418 MB
			// for the CBOR one. Reading and scanning the body costs 3–5×
			// (more with the race detector).
			require.Less(t, alloc, uint64(8*len(tc.body)+(16<<20)), "allocated %d bytes for a %d-byte body", alloc, len(tc.body))
		})
	}
}

// TestValidationMessagesCapped checks that validation is linear and its
// message short: thousands of bad tags are reported as AWS does, and
// long values are cut.
func TestValidationMessagesCapped(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	code, _, _ := env.postJSON("CreateStream", `{"StreamName":"t","ShardCount":1}`)
	require.Equal(t, http.StatusOK, code)
	// 8,000 tags with 300-character values (2.4 MB): the map is cut at 201
	// tags while decoding; AWS reports its length and its values' lengths
	// once each.
	var b strings.Builder
	b.WriteString(`{"StreamName":"t","Tags":{`)
	for i := range 8000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"%s"`, i, strings.Repeat("v", 300))
	}
	b.WriteString(`}}`)
	rec, alloc := serveDirect(env.srv, "AddTagsToStream", codecJSON, []byte(b.String()))
	require.Equal(t, http.StatusBadRequest, rec.Code)
	e := errOf(t, codecJSON, rec)
	require.Equal(t, errValidation, e.Type)
	require.True(t, strings.HasPrefix(e.Message, "2 validation errors detected: "), e.Message[:80])
	require.Equal(t, 2, strings.Count(e.Message, "failed to satisfy constraint"), "the map's length and its values, once each")
	require.Less(t, len(e.Message), maxListedViolations*(maxValueText+200))
	require.Less(t, alloc, uint64(64<<20))

	// A partition key of 1 MiB is cut in the message.
	rec, _ = serveDirect(env.srv, "PutRecord", codecJSON, []byte(`{"StreamName":"t","Data":"AA==","PartitionKey":"`+strings.Repeat("p", 1<<20)+`"}`))
	e = errOf(t, codecJSON, rec)
	require.Equal(t, errValidation, e.Type)
	require.Contains(t, e.Message, "…' at 'partitionKey'")
	require.Less(t, len(e.Message), maxValueText+300)
}

// TestSameUTF8RuleForJSONAndCBOR checks invalid UTF-8 in a partition key
// is refused in both codecs (encoding/json would turn it into U+FFFD).
func TestSameUTF8RuleForJSONAndCBOR(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	code, _, _ := env.postJSON("CreateStream", `{"StreamName":"u","ShardCount":1}`)
	require.Equal(t, http.StatusOK, code)
	bad := "k\xff\xfe"
	rec, _ := serveDirect(env.srv, "PutRecord", codecJSON, []byte(`{"StreamName":"u","Data":"AA==","PartitionKey":"`+bad+`"}`))
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Equal(t, errSerialization, errOf(t, codecJSON, rec).Type)
	require.Contains(t, errOf(t, codecJSON, rec).Message, "Invalid UTF-8 in the request body at offset 49")
	rec, _ = serveDirect(env.srv, "PutRecords", codecJSON, []byte(`{"StreamName":"u","Records":[{"Data":"AA==","PartitionKey":"`+bad+`"}]}`))
	require.Equal(t, errSerialization, errOf(t, codecJSON, rec).Type)

	cb := append(appendCBORHead(nil, 5, 3), appendCBORText(nil, "StreamName")...)
	cb = append(cb, appendCBORText(nil, "u")...)
	cb = append(cb, appendCBORText(nil, "Data")...)
	cb = append(cb, 0x41, 0)
	cb = append(cb, appendCBORText(nil, "PartitionKey")...)
	cb = append(cb, appendCBORText(nil, bad)...)
	rec, _ = serveDirect(env.srv, "PutRecord", codecCBOR, cb)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	e := errOf(t, codecCBOR, rec)
	require.Equal(t, errSerialization, e.Type)
	require.Contains(t, e.Message, "invalid UTF-8")
}

// TestErrorTextsHideInternals checks decoding errors name neither Go
// types nor struct fields, in either codec.
func TestErrorTextsHideInternals(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	for _, tc := range []struct {
		c    codec
		body []byte
	}{
		{codecJSON, []byte(`{"Limit":"x"}`)},
		{codecCBOR, mustCBOR(t, map[string]any{"Limit": "x"})},
		{codecCBOR, mustCBOR(t, map[string]any{"Limit": map[string]any{}})},
		{codecCBOR, []byte{0xa1, 0x65, 'L', 'i', 'm', 'i', 't'}},
		{codecCBOR, append([]byte{0x99, 0x20, 0x00}, bytes.Repeat([]byte{0}, 0x2000)...)},
	} {
		rec, _ := serveDirect(env.srv, "ListStreams", tc.c, tc.body)
		require.Equal(t, http.StatusBadRequest, rec.Code)
		e := errOf(t, tc.c, rec)
		require.Equal(t, errSerialization, e.Type)
		for _, leak := range []string{"Go ", "server.", "Go struct", "int64", "cbor:"} {
			require.NotContains(t, e.Message, leak)
		}
	}
	rec, _ := serveDirect(env.srv, "ListStreams", codecCBOR, mustCBOR(t, map[string]any{"Limit": "x"}))
	require.Equal(t, "class java.lang.String can not be converted to an Integer", errOf(t, codecCBOR, rec).Message)
}

// TestGetRecordsChecksStreamARN checks GetRecords refuses a StreamARN
// naming another stream than its iterator's.
func TestGetRecordsChecksStreamARN(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(n), ShardCount: aws.Int32(1)})
		require.NoError(t, err)
	}
	it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("a"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(t, err)
	_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, StreamARN: aws.String(env.srv.streamARN("b"))})
	require.Equal(t, errInvalidArgument, apiCode(t, err))
	require.ErrorContains(t, err, "does not name the stream of the shard iterator")
	_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, StreamARN: aws.String(strings.Replace(env.srv.streamARN("a"), "us-east-1", "eu-west-1", 1))})
	require.Equal(t, errInvalidArgument, apiCode(t, err))
	_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, StreamARN: aws.String(env.srv.streamARN("a"))})
	require.NoError(t, err)
}

// BenchmarkPutRecordsHugeBodies measures the answer to issue 13's attack 2
// bodies: 2.3 M JSON `{}` entries (6.9 MB) and 1,048,576 CBOR maps (1 MiB).
func BenchmarkPutRecordsHugeBodies(b *testing.B) {
	env := newEnv(b, Config{}, nil)
	cb := append(appendCBORHead(nil, 5, 2), appendCBORText(nil, "StreamName")...)
	cb = append(cb, appendCBORText(nil, "s")...)
	cb = append(cb, appendCBORText(nil, "Records")...)
	cb = append(append(cb, appendCBORHead(nil, 4, 1<<20)...), bytes.Repeat([]byte{0xa0}, 1<<20)...)
	for _, bc := range []struct {
		name string
		c    codec
		body []byte
	}{
		{"json 2.3M {}", codecJSON, []byte(`{"StreamName":"s","Records":[` + strings.Repeat("{},", 2_300_000) + `{}]}`)},
		{"cbor 1M maps", codecCBOR, cb},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				rec, _ := serveDirect(env.srv, "PutRecords", bc.c, bc.body)
				if rec.Code != http.StatusBadRequest {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}

// TestCountRecordsBounded: a too-long Records list is counted only as far
// as its printed form can tell (entriesCounted), so a list of millions of
// entries is answered as fast as one of a thousand, with the same text.
func TestCountRecordsBounded(t *testing.T) {
	require.Equal(t, printEntries(2_300_000), printEntries(entriesCounted), "longer lists print the same")
	require.NotEqual(t, printEntries(entriesCounted), printEntries(entriesCounted/2))
	body := []byte(`{"StreamName":"s","Records":[` + strings.Repeat("{},", 5000) + `{}]}`)
	n, ok := countRecords(body, entriesCounted)
	require.True(t, ok)
	require.Equal(t, entriesCounted, n)
	n, ok = countRecords(body, 10_000)
	require.True(t, ok)
	require.Equal(t, 5001, n)

	env := newEnv(t, Config{}, nil)
	msg := func(entries int) string {
		body := []byte(`{"StreamName":"s","Records":[` + strings.Repeat("{},", entries-1) + `{}]}`)
		rec, _ := serveDirect(env.srv, "PutRecords", codecJSON, body)
		return errOf(t, codecJSON, rec).Message
	}
	require.Equal(t, msg(entriesCounted+1), msg(2_300_000))
}
