package command

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kvstream/kvstream/engine"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type checkOptions struct {
	root *rootOptions
	json bool
}

func (o *checkOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
}

func newCheckCommand(root *rootOptions) *cobra.Command {
	o := &checkOptions{root: root}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify a data directory without modifying it",
		Long: `check verifies the data directory (--data) without writing to it: it reads the
MANIFEST, verifies the checksum of every block of every sstable, decodes the
metadata and the stream catalog, reads every record of every shard, and compares
each shard's records, bytes and counters with the counts the engine keeps.
Records that cannot be read are listed per shard, with the sequence numbers
around them.

The directory must not be open in another process (stop the server first).
Exit status: 0 if the directory is healthy, 1 if check found a problem or could
not check the directory.`,
		Args: exactArgs(),
		RunE: o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *checkOptions) run(cmd *cobra.Command, _ []string) error {
	rep, err := engine.Check(o.root.dataDir, nil)
	if isLocked(err) {
		return &cliError{err: err, msg: inUseMessage(o.root.dataDir, nil)}
	}
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeCheckReport(out, rep)
	}
	if !rep.OK() {
		return fmt.Errorf("check found %d problem(s) in %s", len(rep.Problems), rep.Dir)
	}
	return nil
}

// writeCheckReport prints the report for a human: a one-line summary when
// the directory is healthy, otherwise the problems and every unreadable
// range.
func writeCheckReport(w io.Writer, rep *engine.CheckReport) {
	shards := 0
	for _, s := range rep.Streams {
		shards += len(s.Shards)
	}
	summary := fmt.Sprintf("%d streams, %d shards, %d records; %d sstables (%s) verified",
		len(rep.Streams), shards, rep.Records(), rep.SSTables, formatBytes(rep.SSTableBytes))
	for _, p := range rep.Warnings {
		printf(w, "warning: %s\n", p)
	}
	if rep.OK() {
		printf(w, "ok: %s: %s\n", rep.Dir, summary)
		return
	}
	printf(w, "%s: %d problem(s)\n", rep.Dir, len(rep.Problems))
	for _, p := range rep.Problems {
		printf(w, "  %s\n", p)
	}
	var unreadable bool
	for _, s := range rep.Streams {
		for _, sh := range s.Shards {
			unreadable = unreadable || len(sh.Unreadable) > 0
		}
	}
	if unreadable {
		printf(w, "\nUnreadable records:\n")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "STREAM\tSHARD\tCOUNTERS\tAFTER SEQUENCE NUMBER\tBEFORE SEQUENCE NUMBER\n")
		for _, s := range rep.Streams {
			for _, sh := range s.Shards {
				for _, r := range sh.Unreadable {
					to := "end"
					if r.ToCounter != 0 {
						to = fmt.Sprint(r.ToCounter)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d-%s\t%s\t%s\n", s.Name, sh.ShardID, r.FromCounter, to, dash(r.AfterSequenceNumber), dash(r.BeforeSequenceNumber))
				}
			}
		}
		_ = tw.Flush()
	}
	printf(w, "\nread: %s\n", summary)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
