// Package config reads the settings every service and loyaltyctl share from environment
// variables (12-factor), with defaults, and reports every bad variable by name at start-up.
// The README's configuration table lists the same variables.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// Common holds the settings shared by every process.
type Common struct {
	KafkaBrokers      []string
	KafkaSecurity     stream.Security
	Partitions        int
	ReplicationFactor int
	Redis             redisconn.Config
	SchemaRegistryURL string
	RegistryUsername  string
	RegistryPassword  string
	// Namespace is the Redis key namespace of live state ("live" unless promoted).
	Namespace string
	// Deployment names one installation sharing a Redis: the promoted-namespace pointer,
	// the namespace registry and the erasure list are per deployment (LOYALTY_DEPLOYMENT).
	Deployment string
	Shards     int
	PolicyFile string
	HTTPAddr   string
	LogLevel   zapcore.Level
	BatchSize  int
	Linger     time.Duration

	// TopicSuffix is appended to every Kafka topic name (LOYALTY_TOPIC_SUFFIX, empty by
	// default). It lets tests and side-by-side environments share one broker.
	TopicSuffix string
}

// Env reads variables; os.Getenv in production, a map in tests.
type Env func(string) string

// FromOS reads the process environment.
func FromOS() Env { return os.Getenv }

type parser struct {
	env  Env
	errs []error
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.env(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) list(name, def string) []string {
	v := p.str(name, def)
	if v == "" {
		return nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) int(name string, def, lo, hi int) int {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.errs = append(p.errs, fmt.Errorf("%s=%q: want an integer in %d..%d", name, v, lo, hi))
		return def
	}
	return n
}

func (p *parser) bool(name string) bool {
	v := p.str(name, "")
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s=%q: want true or false", name, v))
	}
	return b
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.errs = append(p.errs, fmt.Errorf("%s=%q: want a duration such as 50ms or 2s", name, v))
		return def
	}
	return d
}

// Load reads the common settings. httpDefault is the service's default ops address.
func Load(env Env, httpDefault string) (Common, error) {
	p := &parser{env: env}
	c := Common{
		KafkaBrokers: p.list("KAFKA_BROKERS", "127.0.0.1:9092"),
		KafkaSecurity: stream.Security{
			TLS: p.bool("KAFKA_TLS"), CAFile: p.str("KAFKA_CA_FILE", ""),
			SASLMechanism: p.str("KAFKA_SASL_MECHANISM", ""), Username: p.str("KAFKA_USERNAME", ""),
			Password: p.str("KAFKA_PASSWORD", ""),
		},
		Partitions:        p.int("KAFKA_PARTITIONS", 6, 1, 10_000),
		ReplicationFactor: p.int("KAFKA_REPLICATION_FACTOR", 1, 1, 16),
		Redis: redisconn.Config{
			Addrs: p.list("REDIS_ADDR", "127.0.0.1:6379"), Cluster: p.bool("REDIS_CLUSTER"),
			MasterName: p.str("REDIS_MASTER_NAME", ""), Username: p.str("REDIS_USERNAME", ""),
			Password: p.str("REDIS_PASSWORD", ""), DB: p.int("REDIS_DB", 0, 0, 15), TLS: p.bool("REDIS_TLS"),
		},
		SchemaRegistryURL: p.str("SCHEMA_REGISTRY_URL", ""),
		RegistryUsername:  p.str("SCHEMA_REGISTRY_USERNAME", ""),
		RegistryPassword:  p.str("SCHEMA_REGISTRY_PASSWORD", ""),
		Namespace:         p.str("LOYALTY_NAMESPACE", "live"),
		Deployment:        p.str("LOYALTY_DEPLOYMENT", "loyalty"),
		TopicSuffix:       p.str("LOYALTY_TOPIC_SUFFIX", ""),
		Shards:            p.int("LOYALTY_SHARDS", keyspace.DefaultShards, 1, 4096),
		PolicyFile:        p.str("POLICY_FILE", ""),
		HTTPAddr:          p.str("HTTP_ADDR", httpDefault),
		BatchSize:         p.int("BATCH_SIZE", 1000, 1, 100_000),
		Linger:            p.duration("BATCH_LINGER", 50*time.Millisecond),
	}
	if strings.EqualFold(c.HTTPAddr, "off") {
		c.HTTPAddr = ""
	}
	level, err := zapcore.ParseLevel(p.str("LOG_LEVEL", "info"))
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	c.LogLevel = level
	if err := c.KafkaSecurity.Validate(); err != nil {
		p.errs = append(p.errs, fmt.Errorf("KAFKA_*: %w", err))
	}
	if err := c.Redis.Validate(); err != nil {
		p.errs = append(p.errs, fmt.Errorf("REDIS_*: %w", err))
	}
	if err := keyspace.ValidateNamespace(c.Namespace); err != nil {
		p.errs = append(p.errs, fmt.Errorf("LOYALTY_NAMESPACE: %w", err))
	}
	if err := keyspace.ValidateNamespace(c.Deployment); err != nil {
		p.errs = append(p.errs, fmt.Errorf("LOYALTY_DEPLOYMENT: %w", err))
	}
	if err := validateTopicSuffix(c.TopicSuffix); err != nil {
		p.errs = append(p.errs, fmt.Errorf("LOYALTY_TOPIC_SUFFIX: %w", err))
	}
	if len(c.KafkaBrokers) == 0 {
		p.errs = append(p.errs, errors.New("KAFKA_BROKERS: at least one host:port is required"))
	}
	return c, errors.Join(p.errs...)
}

// validateTopicSuffix accepts what Kafka accepts in topic names, short enough that every
// suffixed topic stays within Kafka's 249-byte limit.
func validateTopicSuffix(s string) error {
	if len(s) > 64 {
		return errors.New("at most 64 bytes")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q: only letters, digits, '.', '_' and '-' are allowed", s)
		}
	}
	return nil
}

// Logger builds the JSON production logger at the configured level.
func (c Common) Logger(service string) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(c.LogLevel)
	cfg.Sampling = nil
	log, err := cfg.Build()
	if err != nil {
		return nil, err
	}
	return log.With(zap.String("service", service)), nil
}
