package server

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
)

// Model constraints as AWS reports them: every violation listed, in AWS's
// member order, at most 10 (texts recorded from AWS).

const (
	nullAt   = "Value null at '%s' failed to satisfy constraint: Member must not be null"
	namePat  = "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
	lenGE1   = "Member must have length greater than or equal to 1"
	lenLE128 = "Member must have length less than or equal to 128"
	hashPat  = "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})"
	seqPat   = "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})"
)

func null(path string) string { return strings.Replace(nullAt, "%s", path, 1) }

// v renders one violation; value is printed quoted.
func v(value, path, constraint string) string {
	return "Value '" + value + "' at '" + path + "' failed to satisfy constraint: " + constraint
}

// validationMessage is AWS's message for violations in order.
func validationMessage(violations ...string) string {
	noun := " validation errors detected: "
	if len(violations) == 1 {
		noun = " validation error detected: "
	}
	return strconv.Itoa(len(violations)) + noun + strings.Join(violations, "; ")
}

func requireValidation(t *testing.T, env *testEnv, op, body string, violations ...string) {
	t.Helper()
	code, _, resp := env.postJSON(op, body)
	require.Equal(t, http.StatusBadRequest, code, "%s", resp)
	e := jsonErr(t, resp)
	require.Equal(t, errValidation, e.Type, "%s", resp)
	require.Equal(t, validationMessage(violations...), e.Message)
}

func TestValidationOrderAndTexts(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	name129 := strings.Repeat("a", 129)
	pk257 := strings.Repeat("a", 257)
	data1M := base64.StdEncoding.EncodeToString(make([]byte, 1048577))

	// PutRecord: all null members together, streamName included.
	requireValidation(t, env, "PutRecord", `{}`, null("partitionKey"), null("data"), null("streamName"))
	requireValidation(t, env, "PutRecord", `{"StreamName":"","PartitionKey":"","Data":"","ExplicitHashKey":"","SequenceNumberForOrdering":""}`,
		v("", "sequenceNumberForOrdering", seqPat), v("", "partitionKey", lenGE1), v("", "explicitHashKey", hashPat),
		v("", "streamName", namePat), v("", "streamName", lenGE1))
	requireValidation(t, env, "PutRecord", `{"StreamName":"`+name129+`","PartitionKey":"`+pk257+`","Data":"`+data1M+`","ExplicitHashKey":""}`,
		v(pk257, "partitionKey", "Member must have length less than or equal to 256"), v("", "explicitHashKey", hashPat),
		v("java.nio.HeapByteBuffer[pos=0 lim=1048577 cap=1048577]", "data", "Member must have length less than or equal to 1048576"),
		v(name129, "streamName", lenLE128))

	// PutRecords: empty and overlong lists; at most 10 violations, counted
	// as AWS counts them.
	requireValidation(t, env, "PutRecords", `{}`, null("records"), null("streamName"))
	requireValidation(t, env, "PutRecords", `{"StreamName":"","Records":[]}`,
		v("[]", "records", lenGE1), v("", "streamName", namePat), v("", "streamName", lenGE1))
	requireValidation(t, env, "PutRecords", `{"StreamName":"","Records":[{"PartitionKey":"","Data":"","ExplicitHashKey":""}]}`,
		v("", "records.1.member.partitionKey", lenGE1), v("", "records.1.member.explicitHashKey", hashPat),
		v("", "streamName", namePat), v("", "streamName", lenGE1))
	entries := make([]string, 501)
	printed := make([]string, 501)
	for i := range entries {
		entries[i] = `{"PartitionKey":"","Data":""}`
		printed[i] = "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310"
	}
	want := []string{v("["+strings.Join(printed, ", ")+"]", "records", "Member must have length less than or equal to 500")}
	for i := 1; i <= 9; i++ {
		want = append(want, v("", "records."+strconv.Itoa(i)+".member.partitionKey", lenGE1))
	}
	requireValidation(t, env, "PutRecords", `{"StreamName":"","Records":[`+strings.Join(entries, ",")+`]}`, want...)

	// CreateStream: shardCount first, range checked at validation (a huge
	// count is read as 2^31−1).
	requireValidation(t, env, "CreateStream", `{}`, null("shardCount"), null("streamName"))
	requireValidation(t, env, "CreateStream", `{"StreamName":"","ShardCount":0}`,
		v("0", "shardCount", "Member must have value greater than or equal to 1"), v("", "streamName", namePat), v("", "streamName", lenGE1))
	requireValidation(t, env, "CreateStream", `{"StreamName":"`+name129+`","ShardCount":100000000000}`,
		v("2147483647", "shardCount", "Member must have value less than or equal to 100000"), v(name129, "streamName", lenLE128))

	// GetShardIterator: AWS's enum order.
	requireValidation(t, env, "GetShardIterator", `{}`, null("shardId"), null("shardIteratorType"), null("streamName"))
	requireValidation(t, env, "GetShardIterator", `{"StreamName":"","ShardIteratorType":"","ShardId":"","StartingSequenceNumber":""}`,
		v("", "shardId", namePat), v("", "shardId", lenGE1),
		v("", "shardIteratorType", "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]"),
		v("", "startingSequenceNumber", seqPat), v("", "streamName", namePat), v("", "streamName", lenGE1))

	// GetRecords.
	requireValidation(t, env, "GetRecords", `{}`, null("shardIterator"))
	requireValidation(t, env, "GetRecords", `{"ShardIterator":"","Limit":0}`,
		v("0", "limit", "Member must have value greater than or equal to 1"), v("", "shardIterator", lenGE1))
	it513 := strings.Repeat("a", 513)
	requireValidation(t, env, "GetRecords", `{"ShardIterator":"`+it513+`","Limit":100000}`,
		v("100000", "limit", "Member must have value less than or equal to 10000"), v(it513, "shardIterator", "Member must have length less than or equal to 512"))

	// Retention: the range's lower bound is a validation.
	for _, op := range []string{"IncreaseStreamRetentionPeriod", "DecreaseStreamRetentionPeriod"} {
		requireValidation(t, env, op, `{}`, null("retentionPeriodHours"), null("streamName"))
		requireValidation(t, env, op, `{"StreamName":"","RetentionPeriodHours":-1}`,
			v("-1", "retentionPeriodHours", "Member must have value greater than or equal to 1"), v("", "streamName", namePat), v("", "streamName", lenGE1))
	}

	// Tags: map and list constraints as AWS renders them.
	requireValidation(t, env, "AddTagsToStream", `{}`, null("tags"), null("streamName"))
	requireValidation(t, env, "AddTagsToStream", `{"StreamName":"","Tags":{}}`,
		v("{}", "tags", lenGE1), v("", "streamName", namePat), v("", "streamName", lenGE1))
	requireValidation(t, env, "AddTagsToStream", `{"StreamName":"s","Tags":{"`+name129+`":"3"}}`,
		v("{"+name129+"=3}", "tags", "Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"))
	val257 := strings.Repeat("v", 257)
	requireValidation(t, env, "AddTagsToStream", `{"StreamName":"s","Tags":{"c":"`+val257+`"}}`,
		v("{c="+val257+"}", "tags", "Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must have length greater than or equal to 0]"))
	requireValidation(t, env, "RemoveTagsFromStream", `{}`, null("tagKeys"), null("streamName"))
	requireValidation(t, env, "RemoveTagsFromStream", `{"StreamName":"","TagKeys":[]}`,
		v("[]", "tagKeys", lenGE1), v("", "streamName", namePat), v("", "streamName", lenGE1))
	requireValidation(t, env, "RemoveTagsFromStream", `{"StreamName":"s","TagKeys":["a","`+name129+`","b"]}`,
		v("[a, "+name129+", b]", "tagKeys", "Member must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"))
	keys := make([]string, 51)
	for i := range keys {
		keys[i] = strconv.Itoa(i + 1)
	}
	requireValidation(t, env, "RemoveTagsFromStream", `{"StreamName":"s","TagKeys":["`+strings.Join(keys, `","`)+`"]}`,
		v("["+strings.Join(keys, ", ")+"]", "tagKeys", "Member must have length less than or equal to 50"))

	// Resharding.
	requireValidation(t, env, "SplitShard", `{}`, null("newStartingHashKey"), null("streamName"), null("shardToSplit"))
	requireValidation(t, env, "MergeShards", `{}`, null("shardToMerge"), null("adjacentShardToMerge"), null("streamName"))
	requireValidation(t, env, "UpdateShardCount", `{}`, null("scalingType"), null("streamName"), null("targetShardCount"))
	requireValidation(t, env, "UpdateShardCount", `{"StreamName":"s","ScalingType":"UNIFORM_SCALING","TargetShardCount":100001}`,
		v("100001", "targetShardCount", "Member must have value less than or equal to 100000"))

	// Listing.
	requireValidation(t, env, "ListShards", `{"StreamName":"","NextToken":"","MaxResults":0,"ExclusiveStartShardId":""}`,
		v("", "exclusiveStartShardId", namePat), v("", "exclusiveStartShardId", lenGE1),
		v("0", "maxResults", "Member must have value greater than or equal to 1"), v("", "nextToken", lenGE1),
		v("", "streamName", namePat), v("", "streamName", lenGE1))
	requireValidation(t, env, "DescribeStream", `{"StreamName":"","Limit":0,"ExclusiveStartShardId":""}`,
		v("0", "limit", "Member must have value greater than or equal to 1"),
		v("", "exclusiveStartShardId", namePat), v("", "exclusiveStartShardId", lenGE1),
		v("", "streamName", namePat), v("", "streamName", lenGE1))
}

// TestValidationSDK checks what an aws-sdk-go-v2 user sees.
func TestValidationSDK(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	_, err := env.client().PutRecord(context.Background(), &kinesis.PutRecordInput{
		StreamName: aws.String(""), PartitionKey: aws.String(""), Data: []byte{}})
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, errValidation, ae.ErrorCode())
	require.Equal(t, validationMessage(v("", "partitionKey", lenGE1), v("", "streamName", namePat), v("", "streamName", lenGE1)), ae.ErrorMessage())
	var re *awshttp.ResponseError
	require.True(t, errors.As(err, &re))
	require.Equal(t, http.StatusBadRequest, re.HTTPStatusCode())
}
