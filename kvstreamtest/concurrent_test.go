package kvstreamtest_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
	"github.com/kvstream/kvstream/kvstreamtest"
	"github.com/stretchr/testify/require"
)

// ownCodec gives one SubscribeToShard an event-stream decoder of its own
// (see NewClient).
func ownCodec(o *kinesis.Options) { o.Protocol = awsjson.New11(schemas.Kinesis_20131202) }

// Concurrent subscriptions on one in-process client, each with its own
// codec, each get their shard's records; calls run concurrently with
// them.
func TestConcurrentSubscriptions(t *testing.T) {
	noLeaks(t)
	kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory())
	arn := createStream(t, kc, "s", 4)
	reg, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(arn), ConsumerName: aws.String("app")})
	require.NoError(t, err)
	const perShard = 20
	var wg sync.WaitGroup
	got := make([][]string, 4)
	for i := range 4 {
		shard := fmt.Sprintf("shardId-%012d", i)
		sub, err := kc.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{
			ConsumerARN: reg.Consumer.ConsumerARN, ShardId: aws.String(shard),
			StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon},
		}, ownCodec)
		require.NoError(t, err)
		es := sub.GetStream()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer es.Close()
			for ev := range es.Events() {
				for _, r := range ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent).Value.Records {
					got[i] = append(got[i], string(r.Data))
				}
				if len(got[i]) == perShard {
					return
				}
			}
		}()
	}
	want := make([][]string, 4)
	var pw sync.WaitGroup
	for p := range 4 {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for i := range perShard {
				// An explicit hash key puts the record on shard p.
				d := fmt.Sprintf("p%d-%02d", p, i)
				out, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: []byte(d), ExplicitHashKey: aws.String(hashKeyOfShard(p))})
				if err != nil || *out.ShardId != fmt.Sprintf("shardId-%012d", p) {
					t.Errorf("put %s: %v", d, err)
					return
				}
				want[p] = append(want[p], d)
			}
		}()
	}
	pw.Wait()
	wg.Wait()
	require.Equal(t, want, got)
}

// hashKeyOfShard is a hash key in shard i of 4 even shards.
func hashKeyOfShard(i int) string {
	// 2^128 / 4 * i + 1, in decimal.
	return []string{"1", "85070591730234615865843651857942052865", "170141183460469231731687303715884105729", "255211775190703847597530955573826158593"}[i]
}
