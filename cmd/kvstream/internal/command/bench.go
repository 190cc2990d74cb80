package command

import (
	"errors"

	"github.com/spf13/cobra"
)

type benchOptions struct {
	root *rootOptions
}

func newBenchCommand(root *rootOptions) *cobra.Command {
	o := &benchOptions{root: root}
	return &cobra.Command{
		Use:   "bench",
		Short: "Run the benchmark workloads against the raw-Pebble ceiling",
		Args:  exactArgs(),
		RunE:  o.run,
	}
}

func (o *benchOptions) run(cmd *cobra.Command, _ []string) error {
	return errors.New("bench is not available yet: the bench package is still being built")
}
