package command

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/server"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type serveOptions struct {
	root                *rootOptions
	addr                string
	region              string
	account             string
	createDelay         time.Duration
	deleteDelay         time.Duration
	updateDelay         time.Duration
	shardLimit          int
	kinesisLimits       bool
	accessKey           string
	secretKey           string
	insecureAllowRemote bool
	profile             string
	noSync              bool
	maxMemory           string
	maxConns            int
	tlsCert, tlsKey     string
	metricsAddr         string
	cpuProfile          string
}

func (o *serveOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.addr, "addr", server.DefaultAddr, "address to listen on (port 0 picks a free one)")
	fs.StringVar(&o.region, "region", server.DefaultRegion, "region reported in stream ARNs")
	fs.StringVar(&o.account, "account", server.DefaultAccount, "12-digit account id reported in ARNs and messages")
	fs.DurationVar(&o.createDelay, "create-delay", 0, "keep new streams CREATING this long, as AWS does (e.g. 500ms)")
	fs.DurationVar(&o.deleteDelay, "delete-delay", 0, "keep deleted streams DELETING this long before they are gone, as AWS does")
	fs.DurationVar(&o.updateDelay, "update-delay", 0, "keep streams UPDATING, with their old shards, this long after SplitShard, MergeShards or UpdateShardCount")
	fs.IntVar(&o.shardLimit, "shard-limit", server.DefaultShardLimit, "the account's open-shard quota (LimitExceededException beyond it)")
	fs.BoolVar(&o.kinesisLimits, "kinesis-limits", false, "throttle streams created through the server at Kinesis' per-shard limits (1000 rec/s, 1 MiB/s in; 2 MiB/s, 5 reads/s out)")
	fs.StringVar(&o.accessKey, "access-key", "", "verify SigV4 signatures made with this access key (also $KVSTREAM_ACCESS_KEY)")
	fs.StringVar(&o.secretKey, "secret-key", "", "the secret key for --access-key (also $KVSTREAM_SECRET_KEY, which keeps it out of ps)")
	fs.BoolVar(&o.insecureAllowRemote, "insecure-allow-remote", false, "allow a non-loopback --addr without SigV4 verification")
	fs.StringVar(&o.profile, "profile", "small", "engine memory profile: small (about 64 MiB) or throughput")
	fs.BoolVar(&o.noSync, "no-sync", false, "acknowledge puts before they are fsync'd (faster; a crash can lose the last ones)")
	fs.StringVar(&o.maxMemory, "max-memory", "", "memory budget of the whole server, e.g. 512MiB or 2GiB (default 160MiB with --profile small, 2GiB with throughput)")
	fs.IntVar(&o.maxConns, "max-conns", 0, "cap on open client connections (default: from --max-memory, 96 with the small profile)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS (HTTP/1.1 and HTTP/2) with this PEM certificate chain (with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	fs.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the whole run to this file when the server stops (for go tool pprof)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "also serve GET /metrics and /healthz, unauthenticated, on this address (for Prometheus when --addr is remote and signed)")
}

func newServeCommand(root *rootOptions) *cobra.Command {
	o := &serveOptions{root: root}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Kinesis API on the data directory",
		Long: `Serve opens the data directory and serves the Amazon Kinesis Data Streams API
(JSON 1.1 and CBOR 1.1, HTTP/1.1 and h2c) on --addr, so the AWS CLI, boto3, the
AWS SDKs and KCL work against it by changing only their endpoint. It also
answers GET /healthz and GET /metrics (Prometheus). Ctrl-C stops it cleanly.

While it runs, the data directory is the server's; other kvstream commands on it
(put, get, streams) reach it through its socket, <data>/kvstream.sock, or use
--endpoint.`,
		Example: `  kvstream serve --data ./kvstream-data --addr 127.0.0.1:4567
  aws kinesis list-streams --endpoint-url http://127.0.0.1:4567
  kvstream streams list --endpoint http://127.0.0.1:4567`,
		Args: exactArgs(),
		RunE: o.run,
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func (o *serveOptions) run(cmd *cobra.Command, _ []string) error {
	profile := engine.ProfileSmall
	switch o.profile {
	case "small":
	case "throughput":
		profile = engine.ProfileThroughput
	default:
		return usagef("--profile %q must be small or throughput", o.profile)
	}
	var maxMemory int64 // 0: the profile's default
	var err error
	if o.maxMemory != "" {
		if maxMemory, err = parseSize(o.maxMemory); err != nil {
			return usagef("--max-memory: %v", err)
		}
	}
	cfg := server.Config{
		Addr:                o.addr,
		DataDir:             o.root.dataDir,
		Engine:              &engine.Options{Profile: profile, NoSync: o.noSync},
		Region:              o.region,
		Account:             o.account,
		CreateDelay:         o.createDelay,
		DeleteDelay:         o.deleteDelay,
		UpdateDelay:         o.updateDelay,
		ShardLimit:          o.shardLimit,
		KinesisLimits:       o.kinesisLimits,
		AccessKey:           cmp.Or(o.accessKey, os.Getenv("KVSTREAM_ACCESS_KEY")),
		SecretKey:           cmp.Or(o.secretKey, os.Getenv("KVSTREAM_SECRET_KEY")),
		InsecureAllowRemote: o.insecureAllowRemote,
		Logger:              slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
		MaxMemory:           maxMemory,
		MaxConns:            o.maxConns,
		TLSCertFile:         o.tlsCert,
		TLSKeyFile:          o.tlsKey,
		MetricsAddr:         o.metricsAddr,
	}
	// Other kvstream commands reach the directory through its socket
	// while the server holds it (socket.go).
	cfg.Attach = func(db *engine.DB, s *server.Server) func() {
		sock, err := startSocket(o.root.dataDir, db, s)
		if err != nil {
			cfg.Logger.Warn("other kvstream commands cannot reach the data directory while the server runs (use --endpoint)", "reason", err)
			return nil
		}
		return sock.close
	}
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	out := cmd.OutOrStdout()
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	err = server.Serve(cmd.Context(), cfg, func(addr string) {
		auth := "no authentication"
		if cfg.AccessKey != "" {
			auth = "SigV4 with access key " + cfg.AccessKey
		}
		printf(out, "Serving the Kinesis API for %s on %s://%s (%s). Ctrl-C to stop.\n", o.root.dataDir, scheme, addr, auth)
	})
	if errors.Is(err, engine.ErrLocked) || errors.Is(err, syscall.EAGAIN) {
		return &cliError{err: err, msg: inUseMessage(o.root.dataDir, nil)}
	}
	if err != nil {
		return err
	}
	printf(out, "Stopped; %s closed cleanly.\n", o.root.dataDir)
	return nil
}

// startCPUProfile starts writing the process' CPU profile to path and
// returns the function that ends it and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
