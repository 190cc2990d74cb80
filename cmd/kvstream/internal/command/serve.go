package command

import (
	"errors"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type serveOptions struct {
	root *rootOptions
	addr string
}

func (o *serveOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.addr, "addr", "127.0.0.1:4567", "address to listen on")
}

func newServeCommand(root *rootOptions) *cobra.Command {
	o := &serveOptions{root: root}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Kinesis API on the data directory",
		Args:  exactArgs(),
		RunE:  o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *serveOptions) run(cmd *cobra.Command, _ []string) error {
	return errors.New("serve is not available yet: the server package is still being built")
}
