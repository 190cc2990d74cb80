package command

import (
	"strconv"

	"github.com/spf13/cobra"
)

type streamsScaleOptions struct {
	root  *rootOptions
	store *storeOptions
}

func newStreamsScaleCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsScaleOptions{root: root, store: so}
	return &cobra.Command{
		Use:   "scale STREAM SHARD_COUNT",
		Short: "Reshard to SHARD_COUNT uniform open shards (UpdateShardCount)",
		Long: `Scale reshards the stream to SHARD_COUNT open shards with uniform hash ranges,
by splits and merges as Kinesis' UpdateShardCount does. SHARD_COUNT must be
between half and double the current open shard count.`,
		Example: "  kvstream streams scale orders 8",
		Args:    exactArgs("STREAM", "SHARD_COUNT"),
		RunE:    o.run,
	}
}

func (o *streamsScaleOptions) run(cmd *cobra.Command, args []string) (err error) {
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 {
		return usagef("SHARD_COUNT %q must be a positive integer", args[1])
	}
	st, err := o.store.open(cmd.Context(), o.root, readWrite)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if err := st.UpdateShardCount(cmd.Context(), args[0], n); err != nil {
		return err
	}
	printf(cmd.OutOrStdout(), "scaled %s to %d open shard%s\n", args[0], n, plural(n))
	return nil
}
