package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/kvstream/kvstream/engine"
)

func main() {
	db, err := engine.Open("./kvstream-data", nil) // nil: default options
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
}
