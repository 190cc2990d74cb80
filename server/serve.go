package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Serve listens on cfg.Addr, then opens the engine at cfg.DataDir (so a
// failure to bind creates nothing), calls ready (if non-nil) with the
// address it listens on, and serves until ctx is cancelled. It then shuts down gracefully (in-flight requests finish,
// within cfg.ShutdownTimeout) and closes the engine. It returns nil after
// a clean shutdown, or the first error that stopped it.
//
// A non-loopback cfg.Addr is refused unless the server speaks TLS and
// verifies SigV4, or cfg.InsecureAllowRemote is set. Without TLS the
// listener speaks HTTP/1.1 and unencrypted HTTP/2 (h2c, prior knowledge),
// as the Java SDK v2 expects; with TLS, HTTP/1.1 and HTTP/2 by ALPN.
// Connections are capped (Config.MaxConns), and unless $GOMEMLIMIT is
// set, the Go runtime's soft memory limit is set to Config.MaxMemory less
// what Pebble allocates outside the Go heap, while Serve runs.
func Serve(ctx context.Context, cfg Config, ready func(addr string)) (err error) {
	cfg = cfg.withDefaults()
	if cfg.DataDir == "" {
		return errors.New("server: Config.DataDir is required")
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if err := checkAddr(cfg); err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("server: load TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	// Bind first: a port in use must not leave a new data directory behind.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", cfg.Addr, err)
	}
	eo := cfg.Engine.Clone()
	if eo.MaxShards == 0 {
		eo.MaxShards = cfg.ShardLimit
	}
	db, err := engine.Open(cfg.DataDir, eo)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	s, err := New(db, cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if cfg.Attach != nil {
		if detach := cfg.Attach(db, s); detach != nil {
			defer detach() // before the engine closes
		}
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		p := db.Options().Profile
		limit := cfg.MaxMemory
		if limit == 0 {
			limit = defaultMaxMemory(p)
		}
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(limit - engineManual(p)))
	}
	ln = &connLimitListener{Listener: ln, max: int64(cfg.maxConns(s.budget.total)), onOpen: func(d int) { s.metrics.connections.Add(float64(d)) },
		refusal: s.connRefusal, maxBody: cfg.MaxBodyBytes, linger: s.linger}
	hs := s.httpServer(tlsCfg)
	errc := make(chan error, 2)
	go func() {
		if tlsCfg != nil {
			errc <- hs.ServeTLS(ln, "", "")
			return
		}
		errc <- hs.Serve(ln)
	}()
	var ms *http.Server
	if cfg.MetricsAddr != "" {
		mln, err := lc.Listen(ctx, "tcp", cfg.MetricsAddr)
		if err != nil {
			_ = hs.Close()
			<-errc
			return fmt.Errorf("server: listen on %s: %w", cfg.MetricsAddr, err)
		}
		ms = s.metricsServer()
		go func() { errc <- ms.Serve(mln) }()
	}
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		_ = hs.Close()
		if ms != nil {
			_ = ms.Close()
		}
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if ms != nil {
		_ = ms.Close()
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = hs.Close()
			return fmt.Errorf("server: %w", err)
		}
	}
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// httpServer returns an http.Server for s with the configured timeouts,
// speaking HTTP/1.1 and h2c, or with tlsCfg, HTTP/1.1 and HTTP/2 over TLS.
// HTTP/2 gets at most h2MaxStreams streams per connection and small
// receive windows, so a connection can make the server buffer at most
// h2ConnWindow of unread body.
func (s *Server) httpServer(tlsCfg *tls.Config) *http.Server {
	hs := &http.Server{
		Handler:           s,
		ReadTimeout:       s.cfg.ReadTimeout,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug), // TLS handshake noise from scanners
		TLSConfig:         tlsCfg,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          h2MaxStreams,
			MaxReceiveBufferPerConnection: h2ConnWindow,
			MaxReceiveBufferPerStream:     h2StreamWindow,
			MaxDecoderHeaderTableSize:     16 << 10,
		},
	}
	hs.ConnContext = withConn // fair connection admission (memory.go)
	hs.Protocols = Protocols()
	if tlsCfg != nil {
		hs.Protocols = new(http.Protocols)
		hs.Protocols.SetHTTP1(true)
		hs.Protocols.SetHTTP2(true)
	}
	// End SubscribeToShard streams at once, or Shutdown would wait for
	// them to run out.
	hs.RegisterOnShutdown(s.Close)
	return hs
}

// metricsServer serves GET /metrics and GET /healthz only, without
// authentication, for Config.MetricsAddr.
func (s *Server) metricsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.handler)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: s.cfg.IdleTimeout, MaxHeaderBytes: 16 << 10}
}

// Protocols returns the protocol set the server speaks without TLS:
// HTTP/1.1 and unencrypted HTTP/2. Use it for an http.Server or
// httptest.Server that wraps a Server.
func Protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// checkAddr refuses a non-loopback listen address unless the server
// speaks TLS and verifies SigV4, or remote access was explicitly allowed.
func checkAddr(cfg Config) error {
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return fmt.Errorf("server: bad address %q: %w", cfg.Addr, err)
	}
	if cfg.InsecureAllowRemote || loopbackAddr(cfg.Addr) {
		return nil
	}
	var missing []string
	if cfg.TLSCertFile == "" {
		missing = append(missing, "TLS (--tls-cert and --tls-key)")
	}
	if !cfg.verifying() {
		missing = append(missing, "SigV4 verification (--access-key and --secret-key)")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("server: refusing to listen on non-loopback address %q without %s: "+
		"records and credentials would cross the network unprotected; set them, or allow it explicitly with --insecure-allow-remote",
		cfg.Addr, strings.Join(missing, " and "))
}

// loopbackAddr reports whether a host:port address names only loopback
// interfaces.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopback(host)
}

// isLoopback reports whether host names only loopback interfaces. An empty
// host (all interfaces) is not loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
