package command

import (
	"time"

	"github.com/spf13/cobra"
)

type streamsRetentionOptions struct {
	root  *rootOptions
	store *storeOptions
}

func newStreamsRetentionCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsRetentionOptions{root: root, store: so}
	return &cobra.Command{
		Use:   "retention STREAM DURATION",
		Short: "Set how long a stream keeps records",
		Long: `Retention sets the stream's retention period, a Go duration such as 48h or 90m.
Lowering it hides older records at once. Kinesis endpoints take whole hours
from 24h to 8760h.`,
		Example: "  kvstream streams retention orders 168h",
		Args:    exactArgs("STREAM", "DURATION"),
		RunE:    o.run,
	}
}

func (o *streamsRetentionOptions) run(cmd *cobra.Command, args []string) (err error) {
	d, err := time.ParseDuration(args[1])
	if err != nil || d <= 0 {
		return usagef("DURATION %q must be a positive duration such as 48h", args[1])
	}
	st, err := o.store.open(cmd.Context(), o.root, readWrite)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if err := st.SetRetention(cmd.Context(), args[0], d); err != nil {
		return err
	}
	printf(cmd.OutOrStdout(), "set retention of %s to %s\n", args[0], formatDuration(d))
	return nil
}
