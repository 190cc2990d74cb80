package server

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// TestSDKDistributionResetOnProvisioned: a change to PROVISIONED resets
// AUTO to USER_PARTITION_KEY (leavingOnDemand), and a change back to
// ON_DEMAND does not bring AUTO back.
func TestSDKDistributionResetOnProvisioned(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	arn := onDemandStream(t, kc, "od")
	setMode := func(m types.StreamMode) {
		t.Helper()
		_, err := kc.UpdateStreamMode(ctx, &kinesis.UpdateStreamModeInput{StreamARN: aws.String(arn),
			StreamModeDetails: &types.StreamModeDetails{StreamMode: m}})
		require.NoError(t, err)
	}
	_, err := kc.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
		StreamARN: aws.String(arn), RecordDistributionStrategy: types.RecordDistributionStrategyAuto})
	require.NoError(t, err)
	require.True(t, env.srv.autoDistributed("od"))

	setMode(types.StreamModeProvisioned)
	require.False(t, env.srv.autoDistributed("od"))
	// USER_PARTITION_KEY again: one key, one shard; ordering accepted.
	shards := map[string]bool{}
	for range 32 {
		out, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamARN: aws.String(arn), PartitionKey: aws.String("same"), Data: []byte("x")})
		require.NoError(t, err)
		shards[*out.ShardId] = true
	}
	require.Len(t, shards, 1)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamARN: aws.String(arn), PartitionKey: aws.String("k"), Data: []byte("x"),
		SequenceNumberForOrdering: aws.String("1")})
	require.NoError(t, err)

	setMode(types.StreamModeOnDemand)
	require.False(t, env.srv.autoDistributed("od"))

	// A change to ON_DEMAND on an ON_DEMAND stream keeps AUTO.
	_, err = kc.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
		StreamARN: aws.String(arn), RecordDistributionStrategy: types.RecordDistributionStrategyAuto})
	require.NoError(t, err)
	setMode(types.StreamModeOnDemand)
	require.True(t, env.srv.autoDistributed("od"))
}

// TestDistributionModeRace runs UpdateStreamRecordDistributionStrategy
// AUTO against mode changes: no snapshot of the stream's attributes ever
// shows a PROVISIONED stream with AUTO, and a refusal of AUTO always
// names the capacity mode.
func TestDistributionModeRace(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	arn := onDemandStream(t, kc, "od")
	const rounds = 40

	bad := func() bool {
		a, err := env.db.Attrs("od", "kinesis/")
		require.NoError(t, err)
		_, onDemand := a[modeAttr]
		return !onDemand && string(a[distributionAttr]) == "AUTO"
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(2)
	go func() { // mode flips
		defer wg.Done()
		defer close(done)
		for i := range rounds {
			m := types.StreamModeProvisioned
			if i%2 == 1 {
				m = types.StreamModeOnDemand
			}
			_, err := kc.UpdateStreamMode(ctx, &kinesis.UpdateStreamModeInput{StreamARN: aws.String(arn),
				StreamModeDetails: &types.StreamModeDetails{StreamMode: m}})
			if err != nil {
				t.Errorf("UpdateStreamMode %s: %v", m, err)
				return
			}
		}
	}()
	go func() { // AUTO, as often as it goes
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			_, err := kc.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
				StreamARN: aws.String(arn), RecordDistributionStrategy: types.RecordDistributionStrategyAuto})
			if err != nil {
				code, msg := apiErr(t, err)
				if code != "InvalidArgumentException" || !strings.Contains(msg, "ON_DEMAND capacity mode") {
					t.Errorf("unexpected refusal %s: %s", code, msg)
					return
				}
			}
		}
	}()
	for {
		select {
		case <-done:
			wg.Wait()
			require.False(t, bad(), "a PROVISIONED stream with AUTO")
			return
		default:
			if bad() {
				wg.Wait()
				t.Fatal("a PROVISIONED stream with AUTO")
			}
			runtime.Gosched()
		}
	}
}
