package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
)

// sdkErr returns the error code, message and HTTP status an aws-sdk-go-v2
// user sees for err.
func sdkErr(t *testing.T, err error) (code, msg string, status int) {
	t.Helper()
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "not an API error: %v", err)
	var re *awshttp.ResponseError
	require.True(t, errors.As(err, &re))
	return ae.ErrorCode(), ae.ErrorMessage(), re.HTTPStatusCode()
}

func TestTagCharacters(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("t"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	const addText = "Failed to add tags to stream t under account 000000000000 because some tags contained illegal characters. " +
		"The allowed characters are Unicode letters, white space, numbers and _ . / = + - % @."
	const removeText = "Failed to remove tags from stream t under account 000000000000 because some tags contained illegal characters. " +
		"The allowed characters are Unicode letters, white space, numbers and _ . / = + - % @."

	// Allowed: letters of any script, numbers, spaces and _ . / = + - % @.
	good := map[string]string{"a": "a", "ü0 _.": "a", "/=+-@%": "a", "b": "ü0 _./=+-@%", "c": "", "٣ 五": "x\u00a0y"}
	_, err = kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("t"), Tags: good})
	require.NoError(t, err)
	out, err := kc.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: aws.String("t")})
	require.NoError(t, err)
	require.Len(t, out.Tags, len(good))

	for _, bad := range []string{"abc;def", "abc\tdef", "abc\ndef", "abc,def", "abc:def", "a<b"} {
		for _, tags := range []map[string]string{{bad: "1"}, {"a": bad}} {
			_, err := kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("t"), Tags: tags})
			code, msg, status := sdkErr(t, err)
			require.Equal(t, errInvalidArgument, code, "%q", tags)
			require.Equal(t, addText, msg)
			require.Equal(t, http.StatusBadRequest, status)
		}
		_, err := kc.RemoveTagsFromStream(ctx, &kinesis.RemoveTagsFromStreamInput{StreamName: aws.String("t"), TagKeys: []string{"a", bad}})
		code, msg, _ := sdkErr(t, err)
		require.Equal(t, errInvalidArgument, code, "%q", bad)
		require.Equal(t, removeText, msg)
		// Through the resource-ARN operations too.
		_, err = kc.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: aws.String(env.srv.streamARN("t")), Tags: map[string]string{bad: "1"}})
		_, msg, _ = sdkErr(t, err)
		require.Equal(t, addText, msg)
		_, err = kc.UntagResource(ctx, &kinesis.UntagResourceInput{ResourceARN: aws.String(env.srv.streamARN("t")), TagKeys: []string{bad}})
		_, msg, _ = sdkErr(t, err)
		require.Equal(t, removeText, msg)
	}
	// The tags are unchanged by the rejected calls.
	out, err = kc.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: aws.String("t")})
	require.NoError(t, err)
	require.Len(t, out.Tags, len(good))

	// A missing stream wins over bad characters.
	_, err = kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("nope"), Tags: map[string]string{"a;b": "1"}})
	code, msg, _ := sdkErr(t, err)
	require.Equal(t, errResourceNotFound, code)
	require.Equal(t, "Stream nope under account 000000000000 not found.", msg)
	_, err = kc.RemoveTagsFromStream(ctx, &kinesis.RemoveTagsFromStreamInput{StreamName: aws.String("nope"), TagKeys: []string{";"}})
	code, _, _ = sdkErr(t, err)
	require.Equal(t, errResourceNotFound, code)

	// CreateStream with bad tags.
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("t2"), ShardCount: aws.Int32(1), Tags: map[string]string{"a\tb": "1"}})
	code, msg, _ = sdkErr(t, err)
	require.Equal(t, errInvalidArgument, code)
	require.Contains(t, msg, "Failed to add tags to stream t2 under account 000000000000 because some tags contained illegal characters.")
}

func TestTagLimit(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("t"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	tags := map[string]string{}
	for i := range 50 {
		tags["k"+strconv.Itoa(i)] = "v"
	}
	_, err = kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("t"), Tags: tags})
	require.NoError(t, err)
	// Overwriting is fine; a 51st key is not.
	_, err = kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("t"), Tags: map[string]string{"k0": "w"}})
	require.NoError(t, err)
	_, err = kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("t"), Tags: map[string]string{"k50": "w"}})
	code, msg, status := sdkErr(t, err)
	require.Equal(t, errInvalidArgument, code)
	require.Equal(t, "Failed to add tags to stream t under account 000000000000 because a given stream cannot have more than 50 tags associated with it.", msg)
	require.Equal(t, http.StatusBadRequest, status)
}
