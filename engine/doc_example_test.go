package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
)

// A durable consumer resumes after its checkpoints when the program runs
// again: here the DB is closed and reopened on the same (in-memory)
// filesystem, as a restarted process would reopen its data directory.
func ExampleConsumer() {
	fs := vfs.NewMem()
	ctx := context.Background()

	// First run: three records are put, two are processed.
	db, err := engine.Open("data", &engine.Options{FS: fs})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.CreateStream("orders", engine.StreamConfig{ShardCount: 2}); err != nil {
		log.Fatal(err)
	}
	for _, key := range []string{"NY", "LA", "NY"} {
		if _, err := db.PutRecord(ctx, "orders", engine.Entry{PartitionKey: key, Data: []byte("order from " + key)}); err != nil {
			log.Fatal(err)
		}
	}
	process := func(db *engine.DB, n int) {
		c, err := db.Consumer("orders", "billing", nil) // created at the trim horizon the first time
		if err != nil {
			log.Fatal(err)
		}
		// Records blocks for new records once caught up; this example
		// stops after n.
		for r, err := range c.Records(ctx) {
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println("billing", string(r.Data))
			if err := c.Checkpoint(r); err != nil { // after processing: at least once
				log.Fatal(err)
			}
			if n--; n == 0 {
				break
			}
		}
	}
	process(db, 2)
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}

	// Second run: the consumer carries on after its checkpoints.
	db, err = engine.Open("data", &engine.Options{FS: fs})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	fmt.Println("-- restarted")
	process(db, 1)
	// Output:
	// billing order from NY
	// billing order from NY
	// -- restarted
	// billing order from LA
}

// A size bound with DiscardNew refuses puts once the stream is full (with
// DiscardOld, the default, the oldest records are dropped instead);
// SetMaxBytes changes the bound of an existing stream.
func ExampleDB_SetMaxBytes() {
	db, err := engine.Open("data", &engine.Options{FS: vfs.NewMem()})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	// Stored bytes count the data, the key and about 10 bytes per record.
	cfg := engine.StreamConfig{ShardCount: 1, MaxBytes: 100, Discard: engine.DiscardNew}
	if err := db.CreateStream("events", cfg); err != nil {
		log.Fatal(err)
	}
	put := func() {
		_, err := db.PutRecord(ctx, "events", engine.Entry{PartitionKey: "k", Data: make([]byte, 30)})
		switch {
		case errors.Is(err, engine.ErrStreamFull):
			fmt.Println("full")
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Println("stored")
		}
	}
	put()
	put()
	put()
	if err := db.SetMaxBytes("events", 1<<20, engine.DiscardNew); err != nil {
		log.Fatal(err)
	}
	put()
	d, err := db.DescribeStream("events")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Records, "records,", d.Bytes, "bytes of", d.MaxBytes)
	// Output:
	// stored
	// stored
	// full
	// stored
	// 3 records, 123 bytes of 1048576
}
