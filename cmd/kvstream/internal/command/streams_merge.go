package command

import (
	"github.com/spf13/cobra"
)

type streamsMergeOptions struct {
	root  *rootOptions
	store *storeOptions
}

func newStreamsMergeCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsMergeOptions{root: root, store: so}
	return &cobra.Command{
		Use:     "merge STREAM SHARD ADJACENT_SHARD",
		Short:   "Merge two adjacent open shards into one",
		Example: "  kvstream streams merge orders shardId-000000000001 shardId-000000000002",
		Args:    exactArgs("STREAM", "SHARD", "ADJACENT_SHARD"),
		RunE:    o.run,
	}
}

func (o *streamsMergeOptions) run(cmd *cobra.Command, args []string) (err error) {
	a, err := parseShardID(args[1])
	if err != nil {
		return err
	}
	b, err := parseShardID(args[2])
	if err != nil {
		return err
	}
	st, err := o.store.open(cmd.Context(), o.root, readWrite)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if err := st.MergeShards(cmd.Context(), args[0], a, b); err != nil {
		return err
	}
	printf(cmd.OutOrStdout(), "merged %s and %s of %s\n", a, b, args[0])
	return nil
}
