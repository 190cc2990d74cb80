package forward_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/forward"
	"github.com/kvstream/kvstream/server"
)

// Forward a local stream to a central kvstream server (here in-process;
// in production it is another machine, or AWS with Endpoint left empty).
func Example() {
	// The central server, with its stream.
	central, _ := engine.Open("central", &engine.Options{FS: vfs.NewMem()})
	defer central.Close()
	_ = central.CreateStream("all-events", engine.StreamConfig{ShardCount: 1})
	srv, _ := server.New(central, server.Config{})
	hs := httptest.NewServer(srv)
	defer hs.Close()

	// The edge device: a size-bounded local stream, written to at once
	// whether or not the network is up.
	db, _ := engine.Open("edge", &engine.Options{FS: vfs.NewMem()})
	defer db.Close()
	_ = db.CreateStream("events", engine.StreamConfig{ShardCount: 2, MaxBytes: 64 << 20, Discard: engine.DiscardOld})
	for i := range 3 {
		_, _ = db.PutRecord(context.Background(), "events", engine.Entry{PartitionKey: "sensor-1", Data: fmt.Appendf(nil, "reading %d", i)})
	}

	// forward.New(db, nil, cfg) builds the client from cfg.Endpoint and the
	// AWS configuration chain; here it is built by hand.
	client := kinesis.New(kinesis.Options{
		BaseEndpoint: aws.String(hs.URL),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("id", "secret", ""),
		Retryer:      aws.NopRetryer{},
	})
	f, err := forward.New(db, client, forward.Config{Stream: "events", TargetStream: "all-events", Linger: -1})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	for {
		st, _ := f.Stats()
		if st.LagRecords == 0 {
			fmt.Printf("forwarded %d records\n", st.ForwardedRecords)
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done

	it, _ := central.Iterate("all-events", 0, engine.TrimHorizon())
	defer it.Close()
	for r := range it.All() {
		fmt.Printf("%s: %s\n", r.PartitionKey, r.Data)
	}
	// Output:
	// forwarded 3 records
	// sensor-1: reading 0
	// sensor-1: reading 1
	// sensor-1: reading 2
}
