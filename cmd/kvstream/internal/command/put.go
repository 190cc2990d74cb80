package command

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Batching limits for put: under Kinesis' 500 entries and 5 MiB per
// PutRecords.
const (
	putBatchEntries = 500
	putBatchBytes   = 4 << 20
	maxLineBytes    = 16 << 20
)

type putOptions struct {
	root            *rootOptions
	store           storeOptions
	key             string
	keyField        string
	explicitHashKey string
	quiet           bool
}

func (o *putOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.key, "key", "", "partition key of every record (default: a random key per record)")
	fs.StringVar(&o.keyField, "key-field", "", "take each record's partition key from this field of the record, a JSON object")
	fs.StringVar(&o.explicitHashKey, "explicit-hash-key", "", "route every record to the shard owning this 128-bit hash key (a decimal)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "print only the number of records put")
	o.store.AddFlags(fs)
}

func newPutCommand(root *rootOptions) *cobra.Command {
	o := &putOptions{root: root}
	cmd := &cobra.Command{
		Use:   "put STREAM [DATA...]",
		Short: "Put records: each argument, or each line of stdin",
		Long: `Put writes each DATA argument as one record; without arguments it writes each
non-empty line of stdin as one record, batching lines that arrive together into
PutRecords calls. It prints the shard and sequence number of every record.`,
		Example: `  kvstream put orders '{"city":"NY","total":12}' --key-field city
  seq 1 1000 | kvstream put orders --key counter -q`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("missing argument STREAM")
			}
			return nil
		},
		RunE: o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *putOptions) run(cmd *cobra.Command, args []string) (err error) {
	if o.key != "" && o.keyField != "" {
		return usagef("--key and --key-field are mutually exclusive")
	}
	if o.explicitHashKey != "" {
		if _, ok := engine.ParseHashKey(o.explicitHashKey); !ok {
			return usagef("--explicit-hash-key %q must be a decimal in [0, 2^128-1]", o.explicitHashKey)
		}
	}
	ctx := cmd.Context()
	stream := args[0]
	st, err := o.store.open(ctx, o.root, readWrite)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)

	if len(args) == 1 && isTerminal(cmd.InOrStdin()) {
		printf(cmd.ErrOrStderr(), "Reading records from stdin, one per line; Ctrl-D ends.\n")
	}
	lines := make(chan []byte, putBatchEntries)
	readErr := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(lines)
		readErr <- o.readRecords(ctx, args[1:], cmd.InOrStdin(), lines)
	}()

	p := &putter{o: o, st: st, stream: stream, out: cmd.OutOrStdout()}
	// Ctrl-C ends the input: what was put stays put, the summary is
	// printed, and put exits 0 like every command (see Execute).
	interrupted := func() error {
		if o.quiet {
			printf(cmd.OutOrStdout(), "put %d record%s to %s (interrupted)\n", p.n, plural(p.n), stream)
		}
		return nil
	}
	var pending []byte
	for {
		first := pending
		if first == nil {
			var ok bool
			select {
			case first, ok = <-lines:
			case <-ctx.Done():
				return interrupted()
			}
			if !ok {
				break
			}
		}
		pending = nil
		batch, size := [][]byte{first}, len(first)
	drain:
		for len(batch) < putBatchEntries {
			select {
			case l, ok := <-lines:
				if !ok {
					break drain
				}
				if size+len(l) > putBatchBytes {
					pending = l
					break drain
				}
				batch, size = append(batch, l), size+len(l)
			default:
				break drain
			}
		}
		if err := p.put(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return interrupted()
			}
			return err
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	if ctx.Err() != nil {
		return interrupted()
	}
	if o.quiet {
		printf(cmd.OutOrStdout(), "put %d record%s to %s\n", p.n, plural(p.n), stream)
	}
	return nil
}

// readRecords sends each argument, or else each non-empty stdin line, to
// lines.
func (o *putOptions) readRecords(ctx context.Context, args []string, stdin io.Reader, lines chan<- []byte) error {
	send := func(b []byte) bool {
		select {
		case lines <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if len(args) > 0 {
		for _, a := range args {
			if !send([]byte(a)) {
				return nil
			}
		}
		return nil
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	for sc.Scan() {
		b := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(b) == 0 {
			continue
		}
		if !send(bytes.Clone(b)) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	return nil
}

// putter writes batches and prints their results.
type putter struct {
	o      *putOptions
	st     store
	stream string
	out    io.Writer
	n      int // records put so far
}

// put writes one batch, retrying entries that were throttled.
func (p *putter) put(ctx context.Context, batch [][]byte) error {
	entries := make([]engine.Entry, len(batch))
	for i, data := range batch {
		key, err := p.o.partitionKey(data, p.n+i+1)
		if err != nil {
			return err
		}
		entries[i] = engine.Entry{PartitionKey: key, ExplicitHashKey: p.o.explicitHashKey, Data: data}
	}
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		res, err := p.st.Put(ctx, p.stream, entries)
		if err != nil {
			return err
		}
		var retry []engine.Entry
		var lastErr error
		for i, r := range res {
			switch {
			case r.Err == nil:
				p.n++
				if !p.o.quiet {
					printf(p.out, "%s %s\n", r.Shard, r.Seq)
				}
			case errors.Is(r.Err, engine.ErrThroughputExceeded):
				retry = append(retry, entries[i])
				lastErr = r.Err
			default:
				return fmt.Errorf("record %d: %w", p.n+1, r.Err)
			}
		}
		if len(retry) == 0 {
			return nil
		}
		if attempt == 8 {
			return fmt.Errorf("%d record(s) still throttled after %d attempts: %w", len(retry), attempt+1, lastErr)
		}
		entries = retry
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// partitionKey returns the key of record n (1-based, for messages).
func (o *putOptions) partitionKey(data []byte, n int) (string, error) {
	switch {
	case o.key != "":
		return o.key, nil
	case o.keyField == "":
		return strconv.FormatUint(rand.Uint64(), 36), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return "", fmt.Errorf("record %d is not a JSON object, so --key-field %s cannot apply: %.60q", n, o.keyField, data)
	}
	raw, ok := obj[o.keyField]
	if !ok || string(raw) == "null" {
		return "", fmt.Errorf("record %d has no field %q for --key-field: %.60q", n, o.keyField, data)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return "", err
	}
	return c.String(), nil
}
