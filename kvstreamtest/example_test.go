package kvstreamtest_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/kvstream/kvstream/kvstreamtest"
)

// A test gets a real Kinesis client in one line; this example puts two
// records and reads them back.
func ExampleNewClient() {
	t := newExampleT() // in a test: the test's *testing.T
	defer t.end()

	kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory())
	ctx := context.Background()

	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("orders"), ShardCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	for _, city := range []string{"NY", "LA"} {
		_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{
			StreamName: aws.String("orders"), PartitionKey: aws.String(city), Data: []byte("order from " + city),
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
		StreamName: aws.String("orders"), ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Records {
		fmt.Printf("%s: %s\n", *r.PartitionKey, r.Data)
	}
	// Output:
	// NY: order from NY
	// LA: order from LA
}

// SubscribeToShard's event stream works in-process too: records are
// pushed to the subscriber as they are put.
func ExampleNewClient_subscribeToShard() {
	t := newExampleT() // in a test: the test's *testing.T
	defer t.end()

	kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory())
	ctx := context.Background()

	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("orders"), ShardCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("orders")})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{
		StreamARN: sum.StreamDescriptionSummary.StreamARN, ConsumerName: aws.String("billing"),
	})
	if err != nil {
		t.Fatal(err)
	}

	sub, err := kc.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{
		ConsumerARN:      reg.Consumer.ConsumerARN,
		ShardId:          aws.String("shardId-000000000000"),
		StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest},
	})
	if err != nil {
		t.Fatal(err)
	}
	events := sub.GetStream()
	defer events.Close()

	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{
		StreamName: aws.String("orders"), PartitionKey: aws.String("NY"), Data: []byte("order from NY"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for ev := range events.Events() {
		e, ok := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
		if !ok || len(e.Value.Records) == 0 {
			continue // the first event may come before the put, with no records
		}
		for _, r := range e.Value.Records {
			fmt.Printf("pushed %s: %s\n", *r.PartitionKey, r.Data)
		}
		break
	}
	// Output:
	// pushed NY: order from NY
}

// exampleT stands in for a test's *testing.T, which examples do not get:
// it runs the cleanups when the example ends (end) and panics on a
// failure. Only the methods this package calls are implemented.
type exampleT struct {
	testing.TB // nil: other methods panic
	cleanups   []func()
}

func newExampleT() *exampleT { return &exampleT{} }

func (t *exampleT) Helper()          {}
func (t *exampleT) Name() string     { return "Example" }
func (t *exampleT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Log(args ...any)  { fmt.Fprintln(os.Stderr, args...) }
func (t *exampleT) Logf(f string, args ...any) {
	fmt.Fprintf(os.Stderr, f+"\n", args...)
}
func (t *exampleT) Fatal(args ...any)            { panic(fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (t *exampleT) Errorf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "kvstreamtest-example")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (t *exampleT) end() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
