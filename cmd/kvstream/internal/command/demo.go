package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type demoOptions struct {
	root    *rootOptions
	stream  string
	records int
	rate    float64
}

func (o *demoOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.stream, "stream", "myStream", "stream to use (created with 1 shard if absent)")
	fs.IntVarP(&o.records, "records", "n", 0, "stop after this many records (0: run until Ctrl-C)")
	fs.Float64Var(&o.rate, "rate", 10, "records put per second (0: as fast as possible)")
}

func newDemoCommand(root *rootOptions) *cobra.Command {
	o := &demoOptions{root: root}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the classic Kinesis walkthrough: a producer and a consumer, side by side",
		Long: `Demo runs the classic Kinesis walkthrough in one process on the data directory:
it creates the stream myStream (1 shard) if absent, then a producer puts
consecutive integers as JSON with the partition key "partitionkey" while a
consumer reads the stream's open shards from LATEST and prints each record as it
arrives. Stop it with Ctrl-C or --records N. Run it again: the records are still
there and the sequence numbers carry on.`,
		Example: "  kvstream demo --records 5",
		Args:    exactArgs(),
		RunE:    o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// demoColumn is the width of the producer column.
const demoColumn = 18

func (o *demoOptions) run(cmd *cobra.Command, _ []string) (err error) {
	if o.records < 0 || o.rate < 0 {
		return usagef("--records and --rate must not be negative")
	}
	parent := cmd.Context()
	w := &syncWriter{w: cmd.OutOrStdout()}
	db, err := openDB(o.root.dataDir, mayCreate, nil)
	if err != nil {
		return err
	}
	defer func() { err = cmpErr(err, db.Close()) }()

	// The stream: create it, or show what earlier runs left.
	created := false
	if err := db.CreateStream(o.stream, engine.StreamConfig{ShardCount: 1}); err == nil {
		created = true
	} else if !errors.Is(err, engine.ErrStreamExists) {
		return err
	}
	desc, err := db.DescribeStream(o.stream)
	if err != nil {
		return err
	}
	var open []engine.ShardID
	for _, s := range desc.Shards {
		if s.Open() {
			open = append(open, s.ShardID)
		}
	}
	if created {
		w.printf("Created stream %s with 1 shard in %s.\n", o.stream, o.root.dataDir)
	} else {
		w.printf("Stream %s in %s already holds %d record%s from earlier runs; counting on from %d.\n",
			o.stream, o.root.dataDir, desc.Records, plural(int(desc.Records)), desc.Records+1)
	}

	// The consumer starts at LATEST before the producer puts anything, so
	// it sees exactly the records of this run.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var its []*engine.Iterator
	defer func() {
		for _, it := range its {
			_ = it.Close()
		}
	}()
	names := make([]string, len(open))
	for i, id := range open {
		it, err := db.Iterate(o.stream, id, engine.Latest())
		if err != nil {
			return err
		}
		its = append(its, it)
		names[i] = id.String()
	}
	pace := "as fast as it can"
	if o.rate > 0 {
		pace = fmt.Sprintf("%g records/s", o.rate)
	}
	stop := "Press Ctrl-C to stop"
	if o.records > 0 {
		stop = fmt.Sprintf("Stopping after %d record%s", o.records, plural(o.records))
	}
	w.printf("Producer: PutRecord with partition key \"partitionkey\", %s. Consumer: %s from LATEST. %s.\n\n", pace, strings.Join(names, ", "), stop)
	w.printf("%-*s%s\n", demoColumn, "PRODUCER", "CONSUMER")

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		got       int
		firstSeq  string
		lastSeq   string
		consumeEr error
	)
	for _, it := range its {
		wg.Go(func() {
			for {
				for it.Next() {
					r := it.Record()
					seq := r.SequenceNumber.String()
					mu.Lock()
					got++
					if firstSeq == "" {
						firstSeq = seq
					}
					lastSeq = seq
					n := got
					mu.Unlock()
					if len(its) > 1 {
						w.printf("%-*sgot %s  %s  seq %s\n", demoColumn, "", r.Data, r.ShardID, seq)
					} else {
						w.printf("%-*sgot %s  seq %s\n", demoColumn, "", r.Data, seq)
					}
					if o.records > 0 && n >= o.records {
						cancel()
						return
					}
				}
				if err := it.Err(); err != nil {
					mu.Lock()
					consumeEr = err
					mu.Unlock()
					cancel()
					return
				}
				if it.ShardEnded() || it.Wait(ctx) != nil {
					return
				}
			}
		})
	}

	// The producer: consecutive integers as JSON, continuing the count of
	// earlier runs.
	put, putErr := 0, error(nil)
	next := desc.Records + 1
	var tick <-chan time.Time
	if o.rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
		defer t.Stop()
		tick = t.C
	}
	for o.records == 0 || put < o.records {
		data := fmt.Sprintf(`{"n":%d}`, next)
		// Print first, so the consumer's line (woken by the commit) comes after.
		w.printf("put %s\n", data)
		if _, err := db.PutRecord(ctx, o.stream, engine.Entry{PartitionKey: "partitionkey", Data: []byte(data)}); err != nil {
			if ctx.Err() == nil {
				putErr = err
				cancel()
			}
			break
		}
		put++
		next++
		if tick != nil && (o.records == 0 || put < o.records) {
			select {
			case <-tick:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	// With --records, let the consumer catch up; give up after a while
	// rather than hang if something is wrong.
	if o.records > 0 && putErr == nil {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			cancel()
		}
	}
	cancel()
	wg.Wait()

	if err := cmpErr(putErr, consumeEr); err != nil {
		return err
	}
	w.printf("\nPut %d record%s, got %d.", put, plural(put), got)
	if lastSeq != "" {
		w.printf(" Sequence numbers ran from\n  %s to\n  %s;\nrun 'kvstream demo' again and they carry on from there: the records are in %s.\n", firstSeq, lastSeq, o.root.dataDir)
	} else {
		w.printf("\n")
	}
	return nil
}

// syncWriter serializes writes from the producer and consumer goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	printf(s.w, format, args...)
}
