package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"
)

// Wire-level tests: CBOR, error shapes, body limits, h2c, health, metrics.

func mustCBOR(t *testing.T, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	require.NoError(t, err)
	return b
}

// cborTime is tag 1 around content (an integer of ms, or float seconds).
func cborTime(content any) cbor.Tag { return cbor.Tag{Number: 1, Content: content} }

func TestCBOR(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	code, h, body := env.post("CreateStream", contentTypeCBOR, mustCBOR(t, map[string]any{"StreamName": "c", "ShardCount": 1}))
	require.Equal(t, http.StatusOK, code, "%x", body)
	require.Empty(t, body)
	require.Equal(t, contentTypeCBOR, h.Get("Content-Type"))

	before := time.Now().Add(-2 * time.Second)
	code, _, body = env.post("PutRecord", contentTypeCBOR, mustCBOR(t, map[string]any{
		"StreamName": "c", "PartitionKey": "k", "Data": []byte{0, 1, 2, 0xff}}))
	require.Equal(t, http.StatusOK, code, "%x", body)
	var put struct{ ShardId, SequenceNumber, EncryptionType string }
	require.NoError(t, cbor.Unmarshal(body, &put))
	require.Equal(t, "shardId-000000000000", put.ShardId)
	require.Len(t, put.SequenceNumber, 56)

	// AT_TIMESTAMP with the Java SDK quirk (tag 1 + integer milliseconds)
	// and with RFC 8949 seconds (tag 1 + float).
	for name, tsv := range map[string]any{
		"millis quirk":    cborTime(before.UnixMilli()),
		"float seconds":   cborTime(float64(before.UnixMilli()) / 1000),
		"integer seconds": cborTime(before.Unix()),
		"untagged millis": before.UnixMilli(),
	} {
		t.Run(name, func(t *testing.T) {
			code, _, body := env.post("GetShardIterator", contentTypeCBOR, mustCBOR(t, map[string]any{
				"StreamName": "c", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": tsv}))
			require.Equal(t, http.StatusOK, code, "%x", body)
			var it struct{ ShardIterator string }
			require.NoError(t, cbor.Unmarshal(body, &it))

			code, _, body = env.post("GetRecords", contentTypeCBOR, mustCBOR(t, map[string]any{"ShardIterator": it.ShardIterator}))
			require.Equal(t, http.StatusOK, code, "%x", body)
			var raw map[string]cbor.RawMessage
			require.NoError(t, cbor.Unmarshal(body, &raw))
			var recs []map[string]cbor.RawMessage
			require.NoError(t, cbor.Unmarshal(raw["Records"], &recs))
			require.Len(t, recs, 1)
			var data []byte
			require.NoError(t, cbor.Unmarshal(recs[0]["Data"], &data))
			require.Equal(t, []byte{0, 1, 2, 0xff}, data)
			// The arrival time goes back as tag 1 + integer milliseconds.
			var tag cbor.RawTag
			require.NoError(t, cbor.Unmarshal(recs[0]["ApproximateArrivalTimestamp"], &tag))
			require.Equal(t, uint64(1), tag.Number)
			var ms int64
			require.NoError(t, cbor.Unmarshal(tag.Content, &ms))
			require.InDelta(t, time.Now().UnixMilli(), ms, 10_000)
		})
	}

	// A future timestamp in milliseconds is recognised as such.
	code, _, body = env.post("GetShardIterator", contentTypeCBOR, mustCBOR(t, map[string]any{
		"StreamName": "c", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_TIMESTAMP",
		"Timestamp": cborTime(time.Now().Add(time.Hour).UnixMilli())}))
	require.Equal(t, http.StatusBadRequest, code)
	var e errorBody
	require.NoError(t, cbor.Unmarshal(body, &e))
	require.Equal(t, errInvalidArgument, e.Type)

	// DescribeStream's creation timestamp is tag 1 + milliseconds too.
	code, _, body = env.post("DescribeStreamSummary", contentTypeCBOR, mustCBOR(t, map[string]any{"StreamName": "c"}))
	require.Equal(t, http.StatusOK, code)
	var sum struct {
		StreamDescriptionSummary map[string]cbor.RawMessage
	}
	require.NoError(t, cbor.Unmarshal(body, &sum))
	require.Equal(t, byte(0xc1), sum.StreamDescriptionSummary["StreamCreationTimestamp"][0])

	// CBOR errors are CBOR, with X-Amzn-ErrorType.
	code, h, body = env.post("DescribeStream", contentTypeCBOR, mustCBOR(t, map[string]any{"StreamName": "missing"}))
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, errResourceNotFound, h.Get("X-Amzn-ErrorType"))
	require.NoError(t, cbor.Unmarshal(body, &e))
	require.Equal(t, errResourceNotFound, e.Type)
	code, _, body = env.post("PutRecord", contentTypeCBOR, []byte{0xbf, 0x61})
	require.Equal(t, http.StatusBadRequest, code)
	require.NoError(t, cbor.Unmarshal(body, &e))
	require.Equal(t, errSerialization, e.Type)
	// Wrong type for a field: Data as a text string.
	code, _, _ = env.post("PutRecord", contentTypeCBOR, mustCBOR(t, map[string]any{"StreamName": "c", "PartitionKey": "k", "Data": 5}))
	require.Equal(t, http.StatusBadRequest, code)
}

func jsonErr(t *testing.T, body []byte) errorBody {
	t.Helper()
	var e errorBody
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	return e
}

func TestJSONErrors(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	code, _, _ := env.postJSON("CreateStream", `{"StreamName":"j","ShardCount":1}`)
	require.Equal(t, http.StatusOK, code)

	cases := []struct {
		name, op, body, typ, msg string
	}{
		{"malformed", "PutRecord", `{"StreamName":`, errSerialization, ""},
		{"wrong type", "CreateStream", `{"StreamName":"x","ShardCount":"two"}`, errSerialization, "class java.lang.String can not be converted to an Integer"},
		{"object for string", "DescribeStream", `{"StreamName":{}}`, errSerialization, "Start of structure or map found where not expected."},
		{"bad base64", "PutRecord", `{"StreamName":"j","PartitionKey":"k","Data":"!!!"}`, errSerialization, ""},
		{"unknown op", "Frobnicate", `{}`, errUnknownOperation, ""},
		{"no name", "DescribeStream", `{}`, errValidation,
			"1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"},
		{"bad name", "CreateStream", `{"StreamName":"a b","ShardCount":0}`, errValidation,
			"2 validation errors detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1; " +
				"Value 'a b' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"},
		{"enum", "GetShardIterator", `{"StreamName":"j","ShardId":"shardId-0","ShardIteratorType":"OLDEST"}`, errValidation,
			"1 validation error detected: Value 'OLDEST' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]"},
		{"missing data", "PutRecord", `{"StreamName":"j","PartitionKey":"k"}`, errValidation,
			"1 validation error detected: Value null at 'data' failed to satisfy constraint: Member must not be null"},
		{"bad arn", "DescribeStream", `{"StreamARN":"arn:nope"}`, errValidation, ""},
		{"other account", "DescribeStream", `{"StreamARN":"arn:aws:kinesis:us-east-1:111111111111:stream/j"}`, errResourceNotFound,
			"Stream j under account 111111111111 not found."},
		{"name and arn disagree", "DescribeStream", `{"StreamName":"k","StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/j"}`, errInvalidArgument, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, h, body := env.postJSON(c.op, c.body)
			require.Equal(t, http.StatusBadRequest, code, "%s", body)
			require.Equal(t, c.typ, h.Get("X-Amzn-ErrorType"))
			require.NotEmpty(t, h.Get("X-Amzn-RequestId"))
			e := jsonErr(t, body)
			require.Equal(t, c.typ, e.Type)
			if c.msg != "" {
				require.Equal(t, c.msg, e.Message)
			}
		})
	}

	// No X-Amz-Target at all.
	code, h, _ := env.post("", contentTypeJSON, []byte(`{}`))
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, errUnknownOperation, h.Get("X-Amzn-ErrorType"))

	// Bodies over 7 MiB get 413, whether Content-Length says so or not.
	big := bytes.Repeat([]byte("x"), DefaultMaxBodyBytes+1)
	code, _, _ = env.post("PutRecord", contentTypeJSON, big)
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
	req, err := http.NewRequest(http.MethodPost, env.url, io.MultiReader(bytes.NewReader(big)))
	require.NoError(t, err)
	req.ContentLength = -1 // chunked
	req.Header.Set("X-Amz-Target", targetPrefix+"PutRecord")
	resp, err := env.hs.Client().Do(req)
	require.NoError(t, err)
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(rb))
}

func TestH2C(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	req, err := http.NewRequest(http.MethodPost, env.url, strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("X-Amz-Target", targetPrefix+"ListStreams")
	req.Header.Set("Content-Type", contentTypeJSON)
	signTest(t, req, []byte(`{}`))
	resp, err := hc.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 2, resp.ProtoMajor, "h2c with prior knowledge")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.JSONEq(t, `{"StreamNames":[],"HasMoreStreams":false,"StreamSummaries":[]}`, string(body))

	// The SDK over h2c.
	kc := env.client(func(o *kinesis.Options) { o.HTTPClient = hc })
	ctx := context.Background()
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("h2"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("h2"), PartitionKey: aws.String("k"), Data: []byte("over h2c")})
	require.NoError(t, err)
}

func TestHealthAndMetrics(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("m"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("m"), PartitionKey: aws.String("k"), Data: []byte("12345")})
	require.NoError(t, err)
	_, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("missing")})
	require.Error(t, err)

	get := func(path string) (int, string) {
		resp, err := env.hs.Client().Get(env.url + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, body = get("/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`kvstream_server_requests_total{error="none",op="PutRecord"} 1`,
		`kvstream_server_requests_total{error="ResourceNotFoundException",op="DescribeStream"} 1`,
		`kvstream_server_records_in_total 1`,
		`kvstream_server_bytes_in_total 5`,
		`kvstream_server_request_duration_seconds_count{op="CreateStream"} 1`,
	} {
		require.Contains(t, body, want)
	}
	// A second server in the same process has its own registry.
	env2 := newEnv(t, Config{}, nil)
	resp, err := env2.hs.Client().Get(env2.url + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NotContains(t, string(b), `op="PutRecord"`)
}

func TestPanicRecovered(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	operations["TestPanic"] = func(*Server, *request) (any, *apiError) { panic("boom") }
	t.Cleanup(func() { delete(operations, "TestPanic") })
	code, h, body := env.postJSON("TestPanic", `{}`)
	require.Equal(t, http.StatusInternalServerError, code)
	require.Equal(t, errInternalFailure, h.Get("X-Amzn-ErrorType"))
	require.Equal(t, errInternalFailure, jsonErr(t, body).Type)
	// The server still answers.
	code, _, _ = env.postJSON("ListStreams", `{}`)
	require.Equal(t, http.StatusOK, code)
}

// TestPartitionKeyLength checks lengths are counted as Kinesis (Java)
// counts them, in UTF-16 code units: 128 emoji are 256 units (accepted),
// 129 are 258 (rejected), though both are under 256 code points.
func TestPartitionKeyLength(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	code, _, _ := env.postJSON("CreateStream", `{"StreamName":"p","ShardCount":1}`)
	require.Equal(t, http.StatusOK, code)
	for _, n := range []int{128, 129} {
		pk := strings.Repeat("😀", n)
		for _, op := range []string{"PutRecord", "PutRecords"} {
			body := `{"StreamName":"p","PartitionKey":"` + pk + `","Data":"eA=="}`
			if op == "PutRecords" {
				body = `{"StreamName":"p","Records":[{"PartitionKey":"` + pk + `","Data":"eA=="}]}`
			}
			code, _, resp := env.postJSON(op, body)
			if n == 128 {
				require.Equal(t, http.StatusOK, code, "%s %s", op, resp)
			} else {
				require.Equal(t, http.StatusBadRequest, code, op)
				require.Equal(t, errValidation, jsonErr(t, resp).Type)
				require.Contains(t, jsonErr(t, resp).Message, "Member must have length less than or equal to 256")
			}
		}
	}
}
