package command

import (
	"github.com/spf13/cobra"
)

type streamsListOptions struct {
	root  *rootOptions
	store *storeOptions
}

func newStreamsListCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsListOptions{root: root, store: so}
	return &cobra.Command{
		Use:   "list",
		Short: "List the streams, one name per line",
		Args:  exactArgs(),
		RunE:  o.run,
	}
}

func (o *streamsListOptions) run(cmd *cobra.Command, _ []string) (err error) {
	if o.store.endpoint == "" && !dataDirExists(o.root.dataDir) {
		return nil // no directory, no streams
	}
	st, err := o.store.open(cmd.Context(), o.root, readOnly)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	names, err := st.ListStreams(cmd.Context())
	if err != nil {
		return err
	}
	for _, n := range names {
		printf(cmd.OutOrStdout(), "%s\n", n)
	}
	return nil
}
