package command

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type streamsMaxBytesOptions struct {
	root    *rootOptions
	store   *storeOptions
	discard string
}

func (o *streamsMaxBytesOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.discard, "discard", "", "at the bound: old (drop the oldest records) or new (refuse new records); default: keep the stream's")
}

func newStreamsMaxBytesCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsMaxBytesOptions{root: root, store: so}
	cmd := &cobra.Command{
		Use:   "max-bytes STREAM SIZE",
		Short: "Bound a stream's size on disk (local data directories)",
		Long: `Max-bytes bounds the stream's stored record bytes to SIZE (e.g. 64MiB, 2GB;
0 removes the bound). At the bound, --discard old drops the oldest records to
make room (the default for a new bound) and --discard new refuses new records
until retention frees space. Lowering the bound with discard old trims the
stream in the background. 'kvstream streams describe' shows the bound.`,
		Example: `  kvstream streams max-bytes events 512MiB
  kvstream streams max-bytes events 1GB --discard new
  kvstream streams max-bytes events 0`,
		Args: exactArgs("STREAM", "SIZE"),
		RunE: o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *streamsMaxBytesOptions) run(cmd *cobra.Command, args []string) (err error) {
	size, err := parseSize(args[1])
	if err != nil {
		return usagef("SIZE: %v", err)
	}
	if o.discard != "" && o.discard != "old" && o.discard != "new" {
		return usagef("--discard %q must be old (drop the oldest records) or new (refuse new records)", o.discard)
	}
	if o.store.endpoint != "" {
		return usagef("a size bound applies to local data directories only (Kinesis streams have no size bound)")
	}
	st, err := o.store.open(cmd.Context(), o.root, readWrite)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	discard := o.discard
	if discard == "" {
		info, err := st.DescribeStream(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		discard = info.Discard
	}
	if err := st.SetMaxBytes(cmd.Context(), args[0], size, discard); err != nil {
		return err
	}
	if size == 0 {
		printf(cmd.OutOrStdout(), "removed the size bound of %s\n", args[0])
		return nil
	}
	printf(cmd.OutOrStdout(), "bounded %s to %s (%d B), discard %s\n", args[0], formatBytes(size), size, discard)
	return nil
}
