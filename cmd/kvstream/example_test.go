package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/kvstream/kvstream/engine"
)

// Example_quickstart is the README's quick start, word for word but for
// the temporary directory.
func Example_quickstart() {
	dir, err := os.MkdirTemp("", "kvstream-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// --- README quick start from here (with dir for "./kvstream-data") ---
	db, err := engine.Open(dir, nil) // nil: default options
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	err = db.CreateStream("orders", engine.StreamConfig{ShardCount: 2})
	if err != nil && !errors.Is(err, engine.ErrStreamExists) {
		log.Fatal(err)
	}

	ctx := context.Background()
	for _, city := range []string{"NY", "LA", "NY"} {
		res, err := db.PutRecord(ctx, "orders", engine.Entry{
			PartitionKey: city, // same key, same shard, in order
			Data:         []byte(`{"city":"` + city + `"}`),
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("put", city, "to", res.ShardID) // and res.SequenceNumber
	}

	shards, err := db.ListShards("orders")
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range shards {
		it, err := db.Iterate("orders", s.ShardID, engine.TrimHorizon())
		if err != nil {
			log.Fatal(err)
		}
		for it.Next() {
			r := it.Record()
			fmt.Printf("%s %s %s\n", r.ShardID, r.PartitionKey, r.Data)
		}
		if err := it.Err(); err != nil {
			log.Fatal(err)
		}
		it.Close()
	}
	// Output:
	// put NY to shardId-000000000000
	// put LA to shardId-000000000001
	// put NY to shardId-000000000000
	// shardId-000000000000 NY {"city":"NY"}
	// shardId-000000000000 NY {"city":"NY"}
	// shardId-000000000001 LA {"city":"LA"}
}
