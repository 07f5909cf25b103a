// Package redisconn builds the Redis client every service uses (standalone, Sentinel or
// Cluster, by configuration, behind go-redis's UniversalClient) and loads the Lua scripts the
// state store runs, calling them by SHA with a fallback to EVAL when a server has lost its
// script cache (after a restart or failover).
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Config selects and configures the Redis deployment.
//
//   - one address, no MasterName: a standalone server;
//   - MasterName set: Sentinel, Addrs are the sentinels;
//   - several addresses (or Cluster true): Redis Cluster, Addrs are seed nodes.
type Config struct {
	Addrs      []string
	Cluster    bool
	MasterName string
	Username   string
	Password   string
	DB         int
	TLS        bool
	// CAFile is a PEM bundle of the CAs that sign the servers' certificates (REDIS_CA_FILE);
	// empty trusts the system pool. Only with TLS.
	CAFile   string
	PoolSize int
	// DialTimeout, ReadTimeout and WriteTimeout bound each network step.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
}

// Validate reports the first problem, naming the field.
func (c Config) Validate() error {
	if len(c.Addrs) == 0 {
		return errors.New("Addrs: at least one host:port is required")
	}
	for _, a := range c.Addrs {
		if !strings.Contains(a, ":") {
			return fmt.Errorf("Addrs: %q is not host:port", a)
		}
	}
	if c.DB != 0 && (c.Cluster || len(c.Addrs) > 1 && c.MasterName == "") {
		return errors.New("DB: Redis Cluster has only database 0")
	}
	if c.DB < 0 || c.DB > 15 {
		return fmt.Errorf("DB: %d is not in 0..15", c.DB)
	}
	if c.PoolSize < 0 {
		return errors.New("PoolSize: must not be negative")
	}
	if c.CAFile != "" && !c.TLS {
		return errors.New("CAFile: set but TLS is off")
	}
	return nil
}

// tlsConfig is nil without TLS, and trusts CAFile's certificates when it is set.
func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Client is a connection to standalone Redis, Sentinel or Cluster. Packages that hand a
// client on without issuing commands themselves name it by this type.
type Client = redis.UniversalClient

// New returns a client for cfg after validating it and reading its CA file. It does not
// connect; call Ping to check.
func New(cfg Config) (redis.UniversalClient, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redis config: %w", err)
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("redis config: CAFile: %w", err)
	}
	opts := &redis.UniversalOptions{
		Addrs:        cfg.Addrs,
		MasterName:   cfg.MasterName,
		Username:     cfg.Username,
		Password:     cfg.Password,
		DB:           cfg.DB,
		PoolSize:     cfg.PoolSize,
		DialTimeout:  orDefault(cfg.DialTimeout, 5*time.Second),
		ReadTimeout:  orDefault(cfg.ReadTimeout, 5*time.Second),
		WriteTimeout: orDefault(cfg.WriteTimeout, 5*time.Second),
		MaxRetries:   3,
		TLSConfig:    tlsCfg,
	}
	if cfg.Cluster && cfg.MasterName == "" {
		return redis.NewClusterClient(opts.Cluster()), nil
	}
	return redis.NewUniversalClient(opts), nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Script is a Lua script called by SHA (EVALSHA), falling back to EVAL when the server does
// not have it cached, which go-redis's Script.Run does for us.
type Script struct {
	Name   string
	script *redis.Script
}

// NewScript wraps Lua source.
func NewScript(name, src string) *Script {
	return &Script{Name: name, script: redis.NewScript(src)}
}

// Load caches the script on the server(s) ahead of the first call, so a misconfigured script
// fails at start-up rather than on the first batch. On a cluster client go-redis sends
// SCRIPT LOAD to every master.
func (s *Script) Load(ctx context.Context, c redis.Scripter) error {
	if err := s.script.Load(ctx, c).Err(); err != nil {
		return fmt.Errorf("loading script %s: %w", s.Name, err)
	}
	return nil
}

// SHA is the script's SHA1, for EVALSHA in pipelines.
func (s *Script) SHA() string { return s.script.Hash() }

// Run executes the script with keys and args (EVALSHA, then EVAL on NOSCRIPT).
func (s *Script) Run(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	return s.script.Run(ctx, c, keys, args...)
}

// LoadAll loads scripts in order, stopping at the first failure.
func LoadAll(ctx context.Context, c redis.Scripter, scripts ...*Script) error {
	for _, s := range scripts {
		if err := s.Load(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// RouteLogs sends go-redis's own log lines (connection pool dial failures and the like), which
// it otherwise prints to stderr in its own format, to log at debug level: every failure they
// describe also reaches the caller as an error, which is logged or printed where it is
// handled. go-redis keeps one logger per process, so a binary's composition root calls this
// once at start-up.
func RouteLogs(log *zap.Logger) {
	redis.SetLogger(zapPrintf{log: log.WithOptions(zap.AddCallerSkip(1))})
}

type zapPrintf struct{ log *zap.Logger }

func (z zapPrintf) Printf(_ context.Context, format string, args ...any) {
	z.log.Debug(fmt.Sprintf(format, args...), zap.String("source", "go-redis"))
}

// IsNil reports whether err is Redis's nil reply (no such key), for packages that reach Redis
// through a Client without importing go-redis.
func IsNil(err error) bool { return errors.Is(err, redis.Nil) }
