package command

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kvstream/kvstream/engine"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// getBatch is how many records a reader returns per Next.
const getBatch = 1000

type getOptions struct {
	root     *rootOptions
	store    storeOptions
	shard    string
	from     string
	limit    int
	follow   bool
	format   string
	consumer string
}

func (o *getOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.shard, "shard", "", "read only this shard, e.g. shardId-000000000000 or 0 (default: every shard)")
	fs.StringVar(&o.from, "from", "trim-horizon", "where to start: trim-horizon, latest, at:SEQ, after:SEQ or time:RFC3339")
	fs.IntVar(&o.limit, "limit", 0, "stop after this many records (0: no limit)")
	fs.BoolVarP(&o.follow, "follow", "f", false, "keep reading new records as they arrive, until Ctrl-C")
	fs.StringVar(&o.format, "format", "raw", "output: raw (each record's data on a line) or json (one object per record)")
	fs.StringVar(&o.consumer, "consumer", "", "resume the named durable consumer and checkpoint as records are printed")
	o.store.AddFlags(fs)
}

func newGetCommand(root *rootOptions) *cobra.Command {
	o := &getOptions{root: root}
	cmd := &cobra.Command{
		Use:   "get STREAM",
		Short: "Read records from one shard or all of them, or tail them with --follow",
		Long: `Get prints the records of STREAM's shards, one shard after another, from --from
to the newest record. With --follow it reads every shard at once and keeps
printing records as they are put (woken by the engine, without polling; over
--endpoint it polls GetRecords), following shards created by resharding, until
Ctrl-C or --limit. While it follows, other kvstream commands (put in another
terminal) reach the data directory through its socket, and what they put is
printed.

--consumer NAME reads through a durable consumer of the data directory: it
starts where the previous run with that name stopped (a new one starts at
--from), prints every shard's records, parents before children, and
checkpoints what it printed.`,
		Example: `  kvstream get orders --from latest --follow
  kvstream get orders --shard 0 --from after:49671... --limit 10 --format json`,
		Args: exactArgs("STREAM"),
		RunE: o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *getOptions) run(cmd *cobra.Command, args []string) (err error) {
	stream := args[0]
	pos, seqShard, err := parseFrom(o.from)
	if err != nil {
		return err
	}
	if o.format != "raw" && o.format != "json" {
		return usagef("--format %q must be raw or json", o.format)
	}
	if o.limit < 0 {
		return usagef("--limit %d must not be negative", o.limit)
	}
	var shards []string
	switch {
	case o.shard != "":
		id, err := parseShardID(o.shard)
		if err != nil {
			return err
		}
		if seqShard != "" && seqShard != id {
			return usagef("--from %s names a record of %s, not of --shard %s", o.from, seqShard, id)
		}
		shards = []string{id}
	case seqShard != "":
		shards = []string{seqShard} // a sequence number belongs to one shard
	}
	if o.consumer != "" {
		switch {
		case o.store.endpoint != "":
			return usagef("--consumer works on a local data directory only (durable consumers are kvstream's, not Kinesis')")
		case o.shard != "":
			return usagef("--consumer reads every shard; it does not take --shard")
		case seqShard != "":
			return usagef("--consumer starts new consumers at trim-horizon, latest or time:, not %s", o.from)
		}
	}

	parent := cmd.Context()
	acc := readOnly
	if o.consumer != "" || o.follow {
		// Checkpoints; and a follower holds the directory for writing,
		// so that other commands' puts reach it through its socket and
		// it prints them (a read-only holder would lock writers out).
		acc = readWrite
	}
	st, err := o.store.open(parent, o.root, acc)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	all := shards == nil
	var infos []shardInfo
	if all && o.consumer == "" {
		info, err := st.DescribeStream(ctx, stream)
		if err != nil {
			return err
		}
		infos = info.Shards
		for _, s := range info.Shards {
			shards = append(shards, s.ID)
		}
	} else {
		for _, id := range shards {
			infos = append(infos, shardInfo{ID: id})
		}
	}
	out := &recordPrinter{w: cmd.OutOrStdout(), json: o.format == "json", limit: o.limit, done: cancel}
	if o.consumer != "" {
		ls, ok := st.(*localStore)
		if !ok { // another process holds the directory
			return &cliError{err: engine.ErrLocked, msg: inUseMessage(o.root.dataDir, nil)}
		}
		err = o.readConsumer(ctx, ls, stream, pos, out)
	} else if o.follow {
		err = o.followShards(ctx, st, stream, infos, all, pos, out)
	} else {
		err = o.readShards(ctx, st, stream, shards, pos, out)
	}
	// Ctrl-C and --limit end a read normally.
	if parent.Err() != nil || out.full() {
		return nil
	}
	return err
}

// readShards prints each shard from pos up to its newest record, one
// shard after the other.
func (o *getOptions) readShards(ctx context.Context, st store, stream string, shards []string, pos engine.StartPosition, out *recordPrinter) error {
	for _, id := range shards {
		r, err := st.OpenShard(ctx, stream, id, pos)
		if err != nil {
			return err
		}
		for {
			recs, state, err := r.Next(ctx, getBatch)
			if perr := out.print(recs); perr != nil {
				err = cmpErr(err, perr)
			}
			if err != nil || out.full() {
				_ = r.Close()
				return err
			}
			if state != stateMore {
				break
			}
		}
		if err := r.Close(); err != nil {
			return err
		}
	}
	return nil
}

// followShards reads shards concurrently and keeps waiting for new
// records. A shard starts once its parents (if still listed) have been read
// to their end, so a key's records print in order across a split or merge.
// When all shards are being read and one ends, it lists the shards again
// and reads the new ones from their start; the shards listed at the outset
// start at pos.
func (o *getOptions) followShards(ctx context.Context, st store, stream string, shards []shardInfo, all bool, pos engine.StartPosition, out *recordPrinter) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		initial = map[string]bool{}
		started = map[string]bool{}
		ended   = map[string]bool{}
	)
	for _, s := range shards {
		initial[s.ID] = true
	}
	// startReady starts the shards of list whose parents are done. It
	// holds mu.
	var startReady func(list []shardInfo)
	startReady = func(list []shardInfo) {
		listed := make(map[string]bool, len(list))
		for _, s := range list {
			listed[s.ID] = true
		}
		for _, s := range list {
			if started[s.ID] {
				continue
			}
			if (s.Parent != "" && listed[s.Parent] && !ended[s.Parent]) ||
				(s.AdjacentParent != "" && listed[s.AdjacentParent] && !ended[s.AdjacentParent]) {
				continue
			}
			started[s.ID] = true
			p := engine.TrimHorizon()
			if initial[s.ID] {
				p = pos
			}
			wg.Go(func() {
				done, err := followShard(ctx, st, stream, s.ID, p, out)
				if err != nil {
					cancel(err)
					return
				}
				if !done || !all {
					return
				}
				info, err := st.DescribeStream(ctx, stream)
				if err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				ended[s.ID] = true
				startReady(info.Shards)
			})
		}
	}
	mu.Lock()
	startReady(shards)
	mu.Unlock()
	wg.Wait()
	return context.Cause(ctx)
}

// followShard prints one shard's records as they arrive, until the shard
// ends or ctx does.
func followShard(ctx context.Context, st store, stream, id string, pos engine.StartPosition, out *recordPrinter) (ended bool, err error) {
	r, err := st.OpenShard(ctx, stream, id, pos)
	if err != nil {
		return false, err
	}
	defer func() { err = cmpErr(err, r.Close()) }()
	for {
		recs, state, err := r.Next(ctx, getBatch)
		if perr := out.print(recs); perr != nil {
			err = cmpErr(err, perr)
		}
		switch {
		case err != nil:
			return false, err
		case out.full():
			return false, nil
		case state == stateEnded:
			return true, nil
		case state == stateCaughtUp:
			if err := r.Wait(ctx); err != nil {
				if ctx.Err() != nil {
					return false, nil
				}
				return false, err
			}
		}
	}
}

// consumerCheckpointEvery bounds the records printed between two
// checkpoints of a durable consumer.
const consumerCheckpointEvery = 1000

// readConsumer prints the records of the durable consumer o.consumer
// (created at pos if new) and checkpoints them once printed: at least
// once, so a record printed just before a crash is printed again. Without
// --follow it stops when the consumer has caught up with every shard.
func (o *getOptions) readConsumer(ctx context.Context, st *localStore, stream string, pos engine.StartPosition, out *recordPrinter) (err error) {
	c, err := st.db.Consumer(stream, o.consumer, &engine.ConsumerConfig{Start: pos})
	if err != nil {
		return st.wrap(err, stream)
	}
	ctx, cancel := context.WithCancel(ctx)
	recs := make(chan engine.Record, getBatch)
	errc := make(chan error, 1)
	go func() {
		defer close(recs)
		for r, err := range c.Records(ctx) {
			if err != nil {
				if ctx.Err() == nil {
					errc <- err
				}
				return
			}
			select {
			case recs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range recs { // let the reader goroutine end before the DB closes
		}
	}()

	// last holds the newest printed record per shard, not yet checkpointed.
	last := map[engine.ShardID]engine.Record{}
	pending := 0
	flush := func() error {
		for id, r := range last {
			if err := c.Checkpoint(r); err != nil {
				return err
			}
			delete(last, id)
		}
		pending = 0
		return nil
	}
	defer func() { err = cmpErr(err, flush()) }()
	for {
		var r engine.Record
		var ok bool
		select {
		case r, ok = <-recs:
		default:
			// Nothing ready: checkpoint, and without --follow stop if the
			// consumer is caught up everywhere.
			if err := flush(); err != nil {
				return err
			}
			if !o.follow {
				lag, err := c.Lag()
				if err != nil {
					return st.wrap(err, stream)
				}
				if caughtUp(lag) {
					return nil
				}
			}
			select {
			case r, ok = <-recs:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !ok {
			select {
			case err := <-errc:
				return st.wrap(err, stream)
			default:
				return ctx.Err()
			}
		}
		if err := out.print([]record{{Shard: r.ShardID.String(), Seq: r.SequenceNumber.String(), Key: r.PartitionKey, Data: r.Data, Time: r.Timestamp}}); err != nil {
			return err
		}
		last[r.ShardID] = r
		if pending++; pending >= consumerCheckpointEvery {
			if err := flush(); err != nil {
				return err
			}
		}
		if out.full() {
			return nil
		}
	}
}

func caughtUp(lag []engine.ShardLag) bool {
	for _, l := range lag {
		if l.Behind > 0 {
			return false
		}
	}
	return true
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// recordPrinter prints records from any number of goroutines and stops
// everything once limit records are out.
type recordPrinter struct {
	w     io.Writer
	json  bool
	limit int
	done  func()

	mu  sync.Mutex
	n   int
	buf []byte
}

// jsonRecord is the --format json shape: Kinesis' field names, data as
// text when it is UTF-8 and as base64 otherwise.
type jsonRecord struct {
	ShardID                     string `json:"shardId"`
	SequenceNumber              string `json:"sequenceNumber"`
	PartitionKey                string `json:"partitionKey"`
	ApproximateArrivalTimestamp string `json:"approximateArrivalTimestamp"`
	Data                        string `json:"data,omitempty"`
	DataBase64                  string `json:"dataBase64,omitempty"`
}

func (p *recordPrinter) print(recs []record) error {
	if len(recs) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit > 0 {
		recs = recs[:min(len(recs), max(0, p.limit-p.n))]
	}
	p.buf = p.buf[:0]
	for _, r := range recs {
		if p.json {
			jr := jsonRecord{
				ShardID:                     r.Shard,
				SequenceNumber:              r.Seq,
				PartitionKey:                r.Key,
				ApproximateArrivalTimestamp: r.Time.UTC().Format(time.RFC3339Nano),
			}
			if utf8.Valid(r.Data) {
				jr.Data = string(r.Data)
			} else {
				jr.DataBase64 = base64.StdEncoding.EncodeToString(r.Data)
			}
			b, err := marshalNoEscape(jr)
			if err != nil {
				return err
			}
			p.buf = append(p.buf, b...)
		} else {
			p.buf = append(p.buf, r.Data...)
			p.buf = append(p.buf, '\n')
		}
	}
	p.n += len(recs)
	if _, err := p.w.Write(p.buf); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	if p.limit > 0 && p.n >= p.limit {
		p.done()
	}
	return nil
}

func (p *recordPrinter) full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit > 0 && p.n >= p.limit
}

// marshalNoEscape is json.Marshal without HTML escaping, plus a newline.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
