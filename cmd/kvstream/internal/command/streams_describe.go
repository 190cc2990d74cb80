package command

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type streamsDescribeOptions struct {
	root  *rootOptions
	store *storeOptions
	json  bool
}

func (o *streamsDescribeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
}

func newStreamsDescribeCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsDescribeOptions{root: root, store: so}
	cmd := &cobra.Command{
		Use:   "describe STREAM",
		Short: "Show a stream's settings and shards",
		Args:  exactArgs("STREAM"),
		RunE:  o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *streamsDescribeOptions) run(cmd *cobra.Command, args []string) (err error) {
	st, err := o.store.open(cmd.Context(), o.root, readOnly)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	info, err := st.DescribeStream(cmd.Context(), args[0])
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	return writeStreamInfo(cmd.OutOrStdout(), info)
}

func writeStreamInfo(w io.Writer, info streamInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Stream:\t%s\n", info.Name)
	fmt.Fprintf(tw, "Status:\t%s\n", info.Status)
	fmt.Fprintf(tw, "Created:\t%s\n", info.Created.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "Retention:\t%s\n", formatDuration(info.Retention))
	if info.Mode != "" {
		fmt.Fprintf(tw, "Mode:\t%s\n", info.Mode)
	}
	if info.Partitioner != "" {
		fmt.Fprintf(tw, "Partitioner:\t%s\n", info.Partitioner)
	}
	fmt.Fprintf(tw, "Shards:\t%d open, %d in all\n", info.OpenShards, len(info.Shards))
	if info.HasStats {
		fmt.Fprintf(tw, "Records:\t%d (%s)\n", info.Records, formatBytes(info.Bytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(info.Shards) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "SHARD\tSTATE\tPARENTS"
	if info.HasStats {
		head += "\tRECORDS"
	}
	fmt.Fprintln(tw, head+"\tHASH KEYS")
	for _, s := range info.Shards {
		state := "open"
		if !s.Open() {
			state = "closed"
		}
		parents := "-"
		if s.Parent != "" {
			parents = strings.Join(nonEmpty(s.Parent, s.AdjacentParent), ",")
		}
		line := s.ID + "\t" + state + "\t" + parents
		if info.HasStats {
			line += fmt.Sprintf("\t%d", s.Records)
		}
		fmt.Fprintf(tw, "%s\t%s - %s\n", line, s.StartingHashKey, s.EndingHashKey)
	}
	return tw.Flush()
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// formatDuration prints whole hours as "24h" and anything else as Go does.
func formatDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

func formatBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
