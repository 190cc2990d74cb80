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
}

func (o *streamsCreateOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.shards, "shards", 1, "number of shards")
	fs.DurationVar(&o.retention, "retention", 24*time.Hour, "how long records stay readable")
	fs.StringVar(&o.partitioner, "partitioner", "", "partition-key hash: xxhash (default) or md5 (exactly Kinesis' placement); local only")
}

func newStreamsCreateCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsCreateOptions{root: root, store: so}
	cmd := &cobra.Command{
		Use:     "create STREAM",
		Short:   "Create a stream",
		Example: "  kvstream streams create orders --shards 4 --retention 48h",
		Args:    exactArgs("STREAM"),
		RunE:    o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *streamsCreateOptions) run(cmd *cobra.Command, args []string) (err error) {
	if o.shards < 1 {
		return usagef("--shards %d must be at least 1", o.shards)
	}
	st, err := o.store.open(cmd.Context(), o.root, mayCreate)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if err := st.CreateStream(cmd.Context(), args[0], createConfig{Shards: o.shards, Retention: o.retention, Partitioner: o.partitioner}); err != nil {
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
