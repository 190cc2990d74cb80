package command

import (
	"github.com/spf13/cobra"
)

// newStreamsCommand groups the stream administration subcommands. They
// all take --endpoint to act on a Kinesis endpoint instead of --data.
func newStreamsCommand(root *rootOptions) *cobra.Command {
	so := &storeOptions{}
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "List, create, describe, delete, reshard and bound streams",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown streams subcommand %q", args[0])
			}
			return cmd.Help()
		},
	}
	so.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newStreamsListCommand(root, so),
		newStreamsCreateCommand(root, so),
		newStreamsDescribeCommand(root, so),
		newStreamsDeleteCommand(root, so),
		newStreamsSplitCommand(root, so),
		newStreamsMergeCommand(root, so),
		newStreamsScaleCommand(root, so),
		newStreamsRetentionCommand(root, so),
		newStreamsMaxBytesCommand(root, so),
	)
	return cmd
}
