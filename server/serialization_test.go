package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
)

// typeCases are the values AWS's deserializer rejects for a member of each
// type, with its messages (recorded from AWS).
var typeCases = map[string][]struct {
	value any
	msg   string
}{
	"Boolean": {
		{"23", "'23' can not be converted to an Boolean"},
		{23, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an Boolean"},
		{-2147483648, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an Boolean"},
		{[]any{}, "Start of list found where not expected"},
		{map[string]any{}, "Start of structure or map found where not expected."},
	},
	"String": {
		{true, "class java.lang.Boolean can not be converted to an String"},
		{23, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"},
		{-2147483648, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"},
		{2147483648, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"},
		{34.56, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"},
		{[]any{}, "Start of list found where not expected"},
		{map[string]any{}, "Start of structure or map found where not expected."},
	},
	"Integer": {
		{"23", "class java.lang.String can not be converted to an Integer"},
		{true, "class java.lang.Boolean can not be converted to an Integer"},
		{[]any{}, "Start of list found where not expected"},
		{map[string]any{}, "Start of structure or map found where not expected."},
	},
	"Timestamp": {
		{"23", "class java.lang.String can not be converted to milliseconds since epoch"},
		{"2015-01-01T00:00:00Z", "class java.lang.String can not be converted to milliseconds since epoch"},
		{true, "class java.lang.Boolean can not be converted to milliseconds since epoch"},
		{[]any{}, "Start of list found where not expected"},
		{map[string]any{}, "Start of structure or map found where not expected."},
	},
	"Blob": {
		{true, "class java.lang.Boolean can not be converted to a Blob"},
		{23, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob"},
		{-2147483648, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob"},
		{34.56, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob"},
		{[]any{}, "Start of list found where not expected"},
		{map[string]any{}, "Start of structure or map found where not expected."},
		{"23456", "'23456' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 5"},
		{"=+/=", "'=+/=' can not be converted to a Blob: Invalid Base64 character: '='"},
		{"+/+=", "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"},
		{"ab\ncd==", "'ab\ncd==' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 7"},
		{"ab cd===", "'ab cd===' can not be converted to a Blob: Invalid Base64 character: ' '"},
		{"éé==", "'éé==' can not be converted to a Blob: Invalid Base64 character: 'é'"},
	},
	"List": {
		{"23", "Expected list or null"},
		{true, "Expected list or null"},
		{23, "Expected list or null"},
		{34.56, "Expected list or null"},
		{map[string]any{}, "Start of structure or map found where not expected."},
	},
	"Map": {
		{"23", "Expected map or null"},
		{true, "Expected map or null"},
		{23, "Expected map or null"},
		{34.56, "Expected map or null"},
		{[]any{}, "Start of list found where not expected"},
	},
	"Structure": {
		{"23", "Expected null"},
		{true, "Expected null"},
		{23, "Expected null"},
		{34.56, "Expected null"},
		{[]any{}, "Start of list found where not expected"},
	},
}

// typedMembers are members of every operation and their types. A path's
// ".0" is a list's first element.
var typedMembers = []struct{ op, path, typ string }{
	{"AddTagsToStream", "Tags", "Map"}, {"AddTagsToStream", "Tags.a", "String"}, {"AddTagsToStream", "StreamName", "String"},
	{"CreateStream", "StreamName", "String"}, {"CreateStream", "ShardCount", "Integer"},
	{"CreateStream", "StreamModeDetails", "Structure"}, {"CreateStream", "StreamModeDetails.StreamMode", "String"}, {"CreateStream", "Tags", "Map"},
	{"DecreaseStreamRetentionPeriod", "StreamName", "String"}, {"DecreaseStreamRetentionPeriod", "RetentionPeriodHours", "Integer"},
	{"IncreaseStreamRetentionPeriod", "StreamName", "String"}, {"IncreaseStreamRetentionPeriod", "RetentionPeriodHours", "Integer"},
	{"DeleteStream", "StreamName", "String"}, {"DeleteStream", "EnforceConsumerDeletion", "Boolean"},
	{"DescribeStream", "StreamName", "String"}, {"DescribeStream", "Limit", "Integer"}, {"DescribeStream", "ExclusiveStartShardId", "String"},
	{"DescribeStreamSummary", "StreamName", "String"},
	{"GetRecords", "Limit", "Integer"}, {"GetRecords", "ShardIterator", "String"},
	{"GetShardIterator", "ShardId", "String"}, {"GetShardIterator", "ShardIteratorType", "String"},
	{"GetShardIterator", "StartingSequenceNumber", "String"}, {"GetShardIterator", "StreamName", "String"}, {"GetShardIterator", "Timestamp", "Timestamp"},
	{"ListShards", "ExclusiveStartShardId", "String"}, {"ListShards", "MaxResults", "Integer"}, {"ListShards", "NextToken", "String"},
	{"ListShards", "StreamCreationTimestamp", "Timestamp"}, {"ListShards", "StreamName", "String"}, {"ListShards", "ShardFilter", "Structure"},
	{"ListShards", "ShardFilter.Timestamp", "Timestamp"},
	{"ListStreams", "Limit", "Integer"}, {"ListStreams", "ExclusiveStartStreamName", "String"},
	{"ListTagsForStream", "StreamName", "String"}, {"ListTagsForStream", "ExclusiveStartTagKey", "String"}, {"ListTagsForStream", "Limit", "Integer"},
	{"MergeShards", "AdjacentShardToMerge", "String"}, {"MergeShards", "ShardToMerge", "String"}, {"MergeShards", "StreamName", "String"},
	{"PutRecord", "Data", "Blob"}, {"PutRecord", "ExplicitHashKey", "String"}, {"PutRecord", "PartitionKey", "String"},
	{"PutRecord", "SequenceNumberForOrdering", "String"}, {"PutRecord", "StreamName", "String"},
	{"PutRecords", "Records", "List"}, {"PutRecords", "Records.0", "Structure"}, {"PutRecords", "Records.0.Data", "Blob"},
	{"PutRecords", "Records.0.ExplicitHashKey", "String"}, {"PutRecords", "Records.0.PartitionKey", "String"}, {"PutRecords", "StreamName", "String"},
	{"RemoveTagsFromStream", "TagKeys", "List"}, {"RemoveTagsFromStream", "TagKeys.0", "String"}, {"RemoveTagsFromStream", "StreamName", "String"},
	{"SplitShard", "NewStartingHashKey", "String"}, {"SplitShard", "ShardToSplit", "String"}, {"SplitShard", "StreamName", "String"},
	{"UpdateShardCount", "ScalingType", "String"}, {"UpdateShardCount", "StreamName", "String"}, {"UpdateShardCount", "TargetShardCount", "Integer"},
	{"EnableEnhancedMonitoring", "ShardLevelMetrics", "List"}, {"EnableEnhancedMonitoring", "ShardLevelMetrics.0", "String"},
	{"RegisterStreamConsumer", "StreamARN", "String"}, {"RegisterStreamConsumer", "ConsumerName", "String"},
	{"SubscribeToShard", "StartingPosition", "Structure"}, {"SubscribeToShard", "StartingPosition.Timestamp", "Timestamp"},
	{"UpdateAccountSettings", "MinimumThroughputBillingCommitment", "Structure"},
	{"UpdateMaxRecordSize", "MaxRecordSizeInKiB", "Integer"},
}

func TestSerializationExceptions(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	for _, m := range typedMembers {
		for _, c := range typeCases[m.typ] {
			body := bodyAt(m.path, c.value)
			t.Run(m.op+"/"+m.path+"/"+string(body), func(t *testing.T) {
				code, h, resp := env.postJSON(m.op, string(body))
				require.Equal(t, http.StatusBadRequest, code, "%s", resp)
				require.Equal(t, errSerialization, h.Get("X-Amzn-ErrorType"))
				var got map[string]any
				require.NoError(t, json.Unmarshal(resp, &got))
				require.Equal(t, map[string]any{"__type": errSerialization, "Message": c.msg}, got)
			})
		}
	}
}

// bodyAt returns the JSON body with value at path; a ".0" step is the
// first element of a list.
func bodyAt(path string, value any) []byte {
	b, err := json.Marshal(treeAt(path, value))
	if err != nil {
		panic(err)
	}
	return b
}

// treeAt returns the nested maps and lists that hold value at path (see
// bodyAt).
func treeAt(path string, value any) any {
	parts := strings.Split(path, ".")
	var build func(i int) any
	build = func(i int) any {
		if i == len(parts) {
			return value
		}
		if parts[i] == "0" {
			return []any{build(i + 1)}
		}
		return map[string]any{parts[i]: build(i + 1)}
	}
	return build(0)
}

// TestSerializationBeforeValidation: type errors win over missing members
// and constraints, and numbers in Integer members are read as AWS reads
// them (floored, capped at 2^31−1) before validation.
func TestSerializationBeforeValidation(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	code, _, resp := env.postJSON("GetShardIterator", `{"Timestamp":"2015-01-01T00:00:00Z","ShardIteratorType":"nope"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, errSerialization, jsonErr(t, resp).Type)
	require.JSONEq(t, `{"__type":"SerializationException","Message":"class java.lang.String can not be converted to milliseconds since epoch"}`, string(resp))

	for body, want := range map[string]string{
		`{"Limit":10000.99,"ShardIterator":""}`:   "", // read as 10000: valid
		`{"Limit":0.5,"ShardIterator":""}`:        "Value '0' at 'limit'",
		`{"Limit":-0.5,"ShardIterator":""}`:       "Value '-1' at 'limit'",
		`{"Limit":1e11,"ShardIterator":""}`:       "Value '2147483647' at 'limit'",
		`{"Limit":2147483648,"ShardIterator":""}`: "Value '2147483647' at 'limit'",
		`{"Limit":-1e30,"ShardIterator":""}`:      "Value '-9223372036854775808' at 'limit'",
	} {
		code, _, resp := env.postJSON("GetRecords", body)
		require.Equal(t, http.StatusBadRequest, code, body)
		e := jsonErr(t, resp)
		require.Equal(t, errValidation, e.Type, "%s: %s", body, resp)
		if want == "" {
			require.NotContains(t, e.Message, "'limit'", body)
			continue
		}
		require.Contains(t, e.Message, want, body)
	}
	// Bodies that are not JSON get a SerializationException without a
	// message; unknown members are ignored.
	code, _, resp = env.postJSON("ListStreams", `{"Limit":1,`)
	require.Equal(t, http.StatusBadRequest, code)
	require.JSONEq(t, jsonSerialization, string(resp))
	code, _, resp = env.postJSON("ListStreams", `{"Whatever":[1,{"a":true}],"Limit":1}`)
	require.Equal(t, http.StatusOK, code, "%s", resp)
}

// corruptBody is a transport that replaces a JSON member of each request
// body before it is sent (the SDK never sends a value of the wrong type).
type corruptBody struct {
	c       *http.Client
	member  string
	replace any
}

func (c corruptBody) Do(r *http.Request) (*http.Response, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m[c.member] = c.replace
	nb, _ := json.Marshal(m)
	r.Body = io.NopCloser(strings.NewReader(string(nb)))
	r.ContentLength = int64(len(nb))
	r.Header.Set("Content-Length", strconv.Itoa(len(nb)))
	return c.c.Do(r)
}

// TestSerializationSDK checks what an aws-sdk-go-v2 user sees for a body
// AWS cannot deserialize: the error code, message and HTTP status.
func TestSerializationSDK(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	ctx := context.Background()
	_, err := env.client().CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	for _, tc := range []struct {
		replace any
		msg     string
	}{
		{[]any{}, "Start of list found where not expected"},
		{"+/+=", "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"},
		{12, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob"},
	} {
		kc := env.client(func(o *kinesis.Options) {
			o.HTTPClient = corruptBody{c: env.hs.Client(), member: "Data", replace: tc.replace}
		})
		_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: []byte("x")})
		var ae smithy.APIError
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, errSerialization, ae.ErrorCode())
		require.Equal(t, tc.msg, ae.ErrorMessage())
		var re *awshttp.ResponseError
		require.True(t, errors.As(err, &re))
		require.Equal(t, http.StatusBadRequest, re.HTTPStatusCode())
	}
	// The same bodies through PutRecords, whose fast decoder hands
	// anything unusual to the checked path.
	for _, data := range []string{`[]`, `"+/+="`, `"ab=c"`} {
		code, _, resp := env.postJSON("PutRecords", `{"StreamName":"s","Records":[{"PartitionKey":"k","Data":`+data+`}]}`)
		require.Equal(t, http.StatusBadRequest, code, data)
		require.Equal(t, errSerialization, jsonErr(t, resp).Type, "%s: %s", data, resp)
	}
}

// BenchmarkCheckJSONTypes measures AWS's type checks on a GetShardIterator
// body, the cost every JSON request decoded by encoding/json pays.
func BenchmarkCheckJSONTypes(b *testing.B) {
	body := []byte(`{"StreamName":"stream-1","ShardId":"shardId-000000000001","ShardIteratorType":"AT_TIMESTAMP","Timestamp":1764000000.123}`)
	typ := reflect.TypeFor[*getShardIteratorInput]()
	b.ReportAllocs()
	for b.Loop() {
		if _, aerr := checkJSONTypes(body, typ); aerr != nil {
			b.Fatal(aerr)
		}
	}
}
