package command

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type streamsCreateOptions struct {
	root        *rootOptions
	store       *storeOptions
	shards      int
	retention   time.Duration
	partitioner string
	maxBytes    string
	discard     string
}

func (o *streamsCreateOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.shards, "shards", 1, "number of shards")
	fs.DurationVar(&o.retention, "retention", 24*time.Hour, "how long records stay readable")
	fs.StringVar(&o.partitioner, "partitioner", "", "partition-key hash: xxhash (default) or md5 (exactly Kinesis' placement); local only")
	fs.StringVar(&o.maxBytes, "max-bytes", "0", "bound the stream's stored bytes, e.g. 64MiB or 2GB (0: unbounded); local only")
	fs.StringVar(&o.discard, "discard", "old", "at --max-bytes: old (drop the oldest records) or new (refuse new records)")
}

func newStreamsCreateCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsCreateOptions{root: root, store: so}
	cmd := &cobra.Command{
		Use:   "create STREAM",
		Short: "Create a stream",
		Example: `  kvstream streams create orders --shards 4 --retention 48h
  kvstream streams create events --max-bytes 512MiB --discard old`,
		Args: exactArgs("STREAM"),
		RunE: o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *streamsCreateOptions) run(cmd *cobra.Command, args []string) (err error) {
	if o.shards < 1 {
		return usagef("--shards %d must be at least 1", o.shards)
	}
	maxBytes, err := parseSize(o.maxBytes)
	if err != nil {
		return usagef("--max-bytes: %v", err)
	}
	if o.discard != "old" && o.discard != "new" {
		return usagef("--discard %q must be old (drop the oldest records) or new (refuse new records)", o.discard)
	}
	st, err := o.store.open(cmd.Context(), o.root, mayCreate)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if err := st.CreateStream(cmd.Context(), args[0], createConfig{Shards: o.shards, Retention: o.retention, Partitioner: o.partitioner, MaxBytes: maxBytes, Discard: o.discard}); err != nil {
		return err
	}
	printf(cmd.OutOrStdout(), "created stream %s with %d shard%s in %s\n", args[0], o.shards, plural(o.shards), st.Where())
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
