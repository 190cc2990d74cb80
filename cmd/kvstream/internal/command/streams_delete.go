package command

import (
	"github.com/spf13/cobra"
)

type streamsDeleteOptions struct {
	root  *rootOptions
	store *storeOptions
}

func newStreamsDeleteCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsDeleteOptions{root: root, store: so}
	return &cobra.Command{
		Use:   "delete STREAM",
		Short: "Delete a stream and all its records",
		Args:  exactArgs("STREAM"),
		RunE:  o.run,
	}
}

func (o *streamsDeleteOptions) run(cmd *cobra.Command, args []string) (err error) {
	st, err := o.store.open(cmd.Context(), o.root, readWrite)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if err := st.DeleteStream(cmd.Context(), args[0]); err != nil {
		return err
	}
	printf(cmd.OutOrStdout(), "deleted stream %s\n", args[0])
	return nil
}
