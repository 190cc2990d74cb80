package command

import (
	"fmt"
	"math/big"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type streamsSplitOptions struct {
	root  *rootOptions
	store *storeOptions
	at    string
}

func (o *streamsSplitOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.at, "at", "", "NewStartingHashKey: the first hash key of the upper child (default: the middle of the shard's range)")
}

func newStreamsSplitCommand(root *rootOptions, so *storeOptions) *cobra.Command {
	o := &streamsSplitOptions{root: root, store: so}
	cmd := &cobra.Command{
		Use:   "split STREAM SHARD",
		Short: "Split an open shard into two children",
		Long: `Split closes SHARD and creates two children: the lower one covers the shard's
hash keys below --at, the upper one the rest. Without --at the range is split
in the middle.`,
		Example: "  kvstream streams split orders shardId-000000000000",
		Args:    exactArgs("STREAM", "SHARD"),
		RunE:    o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *streamsSplitOptions) run(cmd *cobra.Command, args []string) (err error) {
	stream := args[0]
	shardID, err := parseShardID(args[1])
	if err != nil {
		return err
	}
	st, err := o.store.open(cmd.Context(), o.root, readWrite)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	at := o.at
	if at == "" {
		info, err := st.DescribeStream(cmd.Context(), stream)
		if err != nil {
			return err
		}
		if at, err = middleHashKey(info, shardID); err != nil {
			return err
		}
	}
	if err := st.SplitShard(cmd.Context(), stream, shardID, at); err != nil {
		return err
	}
	printf(cmd.OutOrStdout(), "split %s of %s at hash key %s\n", shardID, stream, at)
	return nil
}

// middleHashKey returns ceil((start+end)/2) of the shard's range, so a
// whole-space shard splits at 2^127 as a 2-shard stream would.
func middleHashKey(info streamInfo, shardID string) (string, error) {
	for _, s := range info.Shards {
		if s.ID != shardID {
			continue
		}
		a, ok1 := new(big.Int).SetString(s.StartingHashKey, 10)
		b, ok2 := new(big.Int).SetString(s.EndingHashKey, 10)
		if !ok1 || !ok2 {
			return "", fmt.Errorf("shard %s has an unreadable hash key range %q - %q", shardID, s.StartingHashKey, s.EndingHashKey)
		}
		m := new(big.Int).Add(a, b)
		m.Add(m, big.NewInt(1))
		return m.Rsh(m, 1).String(), nil
	}
	return "", fmt.Errorf("stream %s has no shard %s", info.Name, shardID)
}
