package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// TestSDKChannelTags tags a channel through TagResource, UntagResource
// and ListTagsForResource with its ARN: the stream's limits and texts
// apply, the tags are the channel's (not its stream's), and they persist.
func TestSDKChannelTags(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	arn := onDemandStream(t, kc, "src")
	out, err := kc.CreateChannel(ctx, s3ChannelInput("ch", arn)) // tagged team=data
	require.NoError(t, err)
	chARN := out.ChannelDescription.ChannelARN

	list := func(resource *string) map[string]string {
		t.Helper()
		lt, err := kc.ListTagsForResource(ctx, &kinesis.ListTagsForResourceInput{ResourceARN: resource})
		require.NoError(t, err)
		got := map[string]string{}
		var keys []string
		for _, tg := range lt.Tags {
			got[*tg.Key] = *tg.Value
			keys = append(keys, *tg.Key)
		}
		require.IsIncreasing(t, keys)
		return got
	}
	require.Equal(t, map[string]string{"team": "data"}, list(chARN))

	_, err = kc.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: chARN, Tags: map[string]string{"env": "dev", "team": "ops", "x%": "a b@c"}})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"env": "dev", "team": "ops", "x%": "a b@c"}, list(chARN))
	require.Empty(t, list(aws.String(arn)), "the stream's tags are its own")

	_, err = kc.UntagResource(ctx, &kinesis.UntagResourceInput{ResourceARN: chARN, TagKeys: []string{"team", "absent"}})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"env": "dev", "x%": "a b@c"}, list(chARN))

	// Illegal characters, when adding and when removing.
	_, err = kc.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: chARN, Tags: map[string]string{"k": "a\tb"}})
	code, msg := apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)
	require.Equal(t, "Failed to add tags to channel ch under account 000000000000 because some tags contained illegal characters. "+tagAllowedText, msg)
	_, err = kc.UntagResource(ctx, &kinesis.UntagResourceInput{ResourceARN: chARN, TagKeys: []string{"a\nb"}})
	code, msg = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)
	require.Equal(t, "Failed to remove tags from channel ch under account 000000000000 because some tags contained illegal characters. "+tagAllowedText, msg)

	// At most 50: 48 more fit, one more does not; replacing a value does.
	more := map[string]string{}
	for i := range 48 {
		more[fmt.Sprintf("k%02d", i)] = "v"
	}
	_, err = kc.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: chARN, Tags: more})
	require.NoError(t, err)
	require.Len(t, list(chARN), 50)
	_, err = kc.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: chARN, Tags: map[string]string{"one-more": "v"}})
	code, msg = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)
	require.Equal(t, "Failed to add tags to channel ch under account 000000000000 because a given channel cannot have more than 50 tags associated with it.", msg)
	_, err = kc.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: chARN, Tags: map[string]string{"env": "prod"}})
	require.NoError(t, err)
	require.Len(t, list(chARN), 50)

	// An unknown channel, and one of another account.
	for _, other := range []string{
		"arn:aws:kinesis:us-east-1:000000000000:channel/0f0f0f0f-0000-4000-8000-000000000000",
		"arn:aws:kinesis:us-east-1:111111111111:channel/" + *out.ChannelDescription.ChannelId,
	} {
		_, err = kc.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: aws.String(other), Tags: map[string]string{"a": "b"}})
		code, _ = apiErr(t, err)
		require.Equal(t, "ResourceNotFoundException", code, other)
		_, err = kc.UntagResource(ctx, &kinesis.UntagResourceInput{ResourceARN: aws.String(other), TagKeys: []string{"a"}})
		code, _ = apiErr(t, err)
		require.Equal(t, "ResourceNotFoundException", code, other)
		_, err = kc.ListTagsForResource(ctx, &kinesis.ListTagsForResourceInput{ResourceARN: aws.String(other)})
		code, _ = apiErr(t, err)
		require.Equal(t, "ResourceNotFoundException", code, other)
	}

	// The tags persist with the channel (a new server on the same DB), and
	// an UpdateChannel keeps them.
	srv2, err := New(env.db, Config{})
	require.NoError(t, err)
	hs2 := httptest.NewServer(srv2)
	defer hs2.Close()
	kc = env.client(func(o *kinesis.Options) { o.BaseEndpoint = aws.String(hs2.URL) })
	_, err = kc.UpdateChannel(ctx, &kinesis.UpdateChannelInput{ChannelARN: chARN,
		S3DestinationConfiguration: &types.S3DestinationUpdateInput{DataFreshnessInSeconds: aws.Int32(60)}})
	require.NoError(t, err)
	got := list(chARN)
	require.Len(t, got, 50)
	require.Equal(t, "prod", got["env"])

	// A deleted channel has no tags to list.
	_, err = kc.DeleteChannel(ctx, &kinesis.DeleteChannelInput{ChannelARN: chARN})
	require.NoError(t, err)
	_, err = kc.ListTagsForResource(ctx, &kinesis.ListTagsForResourceInput{ResourceARN: chARN})
	code, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", code)
}
