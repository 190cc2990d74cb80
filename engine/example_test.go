package engine_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
)

// The README flow: open a data directory, create a stream, put records,
// get a shard iterator, read a page of records, and iterate Go-style.
// (vfs.NewMem keeps the example off the disk; pass nil options to use the
// OS filesystem with all defaults.)
func Example() {
	db, err := engine.Open("data", &engine.Options{FS: vfs.NewMem()})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	if err := db.CreateStream("orders", engine.StreamConfig{ShardCount: 4}); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	res, err := db.PutRecord(ctx, "orders", engine.Entry{PartitionKey: "NY", Data: []byte("order-1")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("shard:", res.ShardID)
	fmt.Println("sequence number digits:", len(res.SequenceNumber.String()))

	// A batch: results come back in input order; same key, same shard.
	results, err := db.PutRecords(ctx, "orders", []engine.Entry{
		{PartitionKey: "NY", Data: []byte("order-2")},
		{PartitionKey: "NY", Data: []byte("order-3")},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		fmt.Println("batch entry in", r.ShardID, "err:", r.Err)
	}

	// Kinesis-style reading: a shard iterator token, then GetRecords.
	tok, err := db.GetShardIterator("orders", res.ShardID, engine.TrimHorizon())
	if err != nil {
		log.Fatal(err)
	}
	out, err := db.GetRecords(ctx, tok, 100)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range out.Records {
		fmt.Println(r.PartitionKey, string(r.Data))
	}
	fmt.Println("caught up:", out.MillisBehindLatest == 0, "next iterator:", out.NextShardIterator != "")

	// Go-native reading from a position.
	it, err := db.Iterate("orders", res.ShardID, engine.AfterSequenceNumber(res.SequenceNumber))
	if err != nil {
		log.Fatal(err)
	}
	defer it.Close()
	for r := range it.All() {
		fmt.Println("after order-1:", string(r.Data))
	}
	if err := it.Err(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// shard: shardId-000000000000
	// sequence number digits: 56
	// batch entry in shardId-000000000000 err: <nil>
	// batch entry in shardId-000000000000 err: <nil>
	// NY order-1
	// NY order-2
	// NY order-3
	// caught up: true next iterator: true
	// after order-1: order-2
	// after order-1: order-3
}

// Page through a shard by chaining NextShardIterator. An open shard always
// returns a next iterator, so a reader stops on an empty page (or keeps
// polling to tail the shard).
func ExampleDB_GetRecords() {
	db, err := engine.Open("data", &engine.Options{FS: vfs.NewMem()})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.CreateStream("events", engine.StreamConfig{ShardCount: 1}); err != nil {
		log.Fatal(err)
	}
	for i := range 5 {
		if _, err := db.PutRecord(ctx, "events", engine.Entry{PartitionKey: "k", Data: fmt.Appendf(nil, "e%d", i)}); err != nil {
			log.Fatal(err)
		}
	}
	tok, err := db.GetShardIterator("events", 0, engine.TrimHorizon())
	if err != nil {
		log.Fatal(err)
	}
	for page := 1; ; page++ {
		out, err := db.GetRecords(ctx, tok, 2)
		if err != nil {
			log.Fatal(err)
		}
		if len(out.Records) == 0 {
			break
		}
		fmt.Print("page ", page, ":")
		for _, r := range out.Records {
			fmt.Print(" ", string(r.Data))
		}
		fmt.Println()
		tok = out.NextShardIterator
	}
	// Output:
	// page 1: e0 e1
	// page 2: e2 e3
	// page 3: e4
}

// Tail a shard: Next returns false at the end of the visible records and
// Wait blocks, without polling, until more arrive.
func ExampleDB_Iterate() {
	db, err := engine.Open("data", &engine.Options{FS: vfs.NewMem()})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateStream("events", engine.StreamConfig{ShardCount: 1}); err != nil {
		log.Fatal(err)
	}
	id, _ := engine.ParseShardID("shardId-000000000000")
	it, err := db.Iterate("events", id, engine.Latest())
	if err != nil {
		log.Fatal(err)
	}
	defer it.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		for i := range 3 {
			if _, err := db.PutRecord(ctx, "events", engine.Entry{PartitionKey: "k", Data: fmt.Appendf(nil, "tick %d", i)}); err != nil {
				log.Print(err)
			}
		}
	}()
	for n := 0; n < 3; {
		for it.Next() {
			fmt.Println(string(it.Record().Data))
			n++
		}
		if err := it.Err(); err != nil {
			log.Fatal(err)
		}
		if n < 3 {
			if err := it.Wait(ctx); err != nil {
				log.Fatal(err)
			}
		}
	}
	// Output:
	// tick 0
	// tick 1
	// tick 2
}

// Sequence numbers have AWS's 56-digit layout; this one is a real Kinesis
// number.
func ExampleParseSequenceNumber() {
	n, ok := engine.ParseSequenceNumber("49647060812288014558888668248263847763900017820167045122")
	fmt.Println(ok, engine.ShardID(n.Shard), n.Counter)
	fmt.Println(time.Unix(int64(n.ShardCreated), 0).UTC().Format(time.RFC3339))
	// Output:
	// true shardId-000000000000 26054
	// 2023-12-05T03:24:37Z
}

// After a split, the parent shard keeps its records; reading it to the
// end returns no next iterator and the child shards to continue with.
func ExampleDB_SplitShard() {
	db, err := engine.Open("data", &engine.Options{FS: vfs.NewMem()})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.CreateStream("s", engine.StreamConfig{ShardCount: 1}); err != nil {
		log.Fatal(err)
	}
	if _, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("before")}); err != nil {
		log.Fatal(err)
	}
	if err := db.SplitShard("s", 0, "170141183460469231731687303715884105728"); err != nil { // 2^127
		log.Fatal(err)
	}
	tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	if err != nil {
		log.Fatal(err)
	}
	out, err := db.GetRecords(ctx, tok, 100)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(out.Records), string(out.Records[0].Data), out.NextShardIterator == "")
	for _, c := range out.ChildShards {
		fmt.Println(c.ShardID, c.ParentShards, c.HashKeyRange.Start)
	}
	// Output:
	// 1 before true
	// shardId-000000000001 [shardId-000000000000] 0
	// shardId-000000000002 [shardId-000000000000] 170141183460469231731687303715884105728
}
