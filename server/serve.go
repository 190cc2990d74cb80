package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/kvstream/kvstream/engine"
)

// Serve listens on cfg.Addr, then opens the engine at cfg.DataDir (so a
// failure to bind creates nothing), calls ready (if non-nil) with the
// address it listens on, and serves until ctx is cancelled. It then shuts down gracefully (in-flight requests finish,
// within cfg.ShutdownTimeout) and closes the engine. It returns nil after
// a clean shutdown, or the first error that stopped it.
//
// A non-loopback cfg.Addr is refused unless SigV4 verification is on or
// cfg.InsecureAllowRemote is set. The listener speaks HTTP/1.1 and
// unencrypted HTTP/2 (h2c, prior knowledge), as the Java SDK v2 expects.
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
	hs := s.httpServer()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// httpServer returns an http.Server for s with the configured timeouts,
// speaking HTTP/1.1 and h2c.
func (s *Server) httpServer() *http.Server {
	hs := &http.Server{
		Handler:           s,
		ReadTimeout:       s.cfg.ReadTimeout,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
	}
	hs.Protocols = Protocols()
	// End SubscribeToShard streams at once, or Shutdown would wait for
	// them to run out.
	hs.RegisterOnShutdown(s.Close)
	return hs
}

// Protocols returns the protocol set the server speaks: HTTP/1.1 and
// unencrypted HTTP/2. Use it for an http.Server or httptest.Server that
// wraps a Server.
func Protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// checkAddr refuses a non-loopback listen address unless SigV4
// verification is on or remote access was explicitly allowed.
func checkAddr(cfg Config) error {
	if cfg.verifying() || cfg.InsecureAllowRemote {
		return nil
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: bad address %q: %w", cfg.Addr, err)
	}
	if isLoopback(host) {
		return nil
	}
	return fmt.Errorf("server: refusing to listen on non-loopback address %q without SigV4 verification; "+
		"set an access key and secret key, or allow it explicitly with --insecure-allow-remote", cfg.Addr)
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
