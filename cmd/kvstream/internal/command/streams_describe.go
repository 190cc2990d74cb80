package command

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
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
		return enc.Encode(info.toJSON())
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
		if info.MaxBytes > 0 {
			fmt.Fprintf(tw, "Max bytes:\t%s (%d B), discard %s\n", formatBytes(info.MaxBytes), info.MaxBytes, info.Discard)
		} else {
			fmt.Fprintf(tw, "Max bytes:\tunbounded\n")
		}
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

// streamInfoJSON is streams describe --json: times in RFC 3339 (UTC),
// the retention in seconds and as a duration string.
type streamInfoJSON struct {
	Name             string      `json:"name"`
	Status           string      `json:"status"`
	Created          string      `json:"created"`
	RetentionSeconds int64       `json:"retentionSeconds"`
	Retention        string      `json:"retention"`
	Mode             string      `json:"mode,omitempty"`
	Partitioner      string      `json:"partitioner,omitempty"`
	Encryption       string      `json:"encryption,omitempty"`
	OpenShards       int         `json:"openShards"`
	Records          *int64      `json:"records,omitempty"`
	Bytes            *int64      `json:"bytes,omitempty"`
	MaxBytes         *int64      `json:"maxBytes,omitempty"` // 0: unbounded
	Discard          string      `json:"discard,omitempty"`
	Shards           []shardInfo `json:"shards"`
}

func (info streamInfo) toJSON() streamInfoJSON {
	j := streamInfoJSON{
		Name:             info.Name,
		Status:           info.Status,
		Created:          info.Created.UTC().Format(time.RFC3339Nano),
		RetentionSeconds: int64(info.Retention / time.Second),
		Retention:        formatDuration(info.Retention),
		Mode:             info.Mode,
		Partitioner:      info.Partitioner,
		Encryption:       info.Encryption,
		OpenShards:       info.OpenShards,
		Shards:           info.Shards,
	}
	if j.Shards == nil {
		j.Shards = []shardInfo{}
	}
	if info.HasStats {
		j.Records, j.Bytes, j.MaxBytes = &info.Records, &info.Bytes, &info.MaxBytes
		if info.MaxBytes > 0 {
			j.Discard = info.Discard
		}
	}
	return j
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

// parseSize parses a byte size: a whole number with an optional unit, B,
// KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB and K, M, G, T
// (powers of 1024), case-insensitive, e.g. 64MiB, 500MB, 1048576.
func parseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
	unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
	mult := map[string]int64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}[unit]
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || mult == 0 || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size such as 64MiB, 500MB or 1048576", s)
	}
	return n * mult, nil
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
