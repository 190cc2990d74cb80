package server

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/require"
)

// TestSubscriptionsDoNotHoldReaders: a running SubscribeToShard gives its
// place at the reader gate back once its (small) body is read, so more
// subscriptions than the gate has places all start, and other calls are
// still served while they run. (A subscription holding its reader place
// for its whole five minutes left a KCL application with more shards than
// places unable to subscribe or checkpoint.)
func TestSubscriptionsDoNotHoldReaders(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // the reader gate has readersPerProc places
	n := readersPerProc + 2
	e := newEFOEnv(t, Config{}, n)
	var subs []*subReader
	for i := range n {
		r := subscribe(t, e.kc, e.consumerARN, fmt.Sprintf("shardId-%012d", i), latest())
		r.next(time.Minute) // the first event: it runs
		subs = append(subs, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := e.kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(e.stream)})
	require.NoError(t, err)
	e.put("k", "v")
	for _, r := range subs {
		r.close()
	}
}
