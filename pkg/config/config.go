// Package config reads the settings every service and loyaltyctl share from environment
// variables (12-factor), with defaults, and reports every bad variable by name at start-up.
// The README's configuration table lists the same variables.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/ops"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// Common holds the settings shared by every process.
type Common struct {
	KafkaBrokers  []string
	KafkaSecurity stream.Security
	// KafkaCompression is the codec of every record batch the process produces
	// (KAFKA_COMPRESSION).
	KafkaCompression  stream.Compression
	Partitions        int
	ReplicationFactor int
	// InputRetention and OutputRetention are the retention of the topics the services create:
	// the input topics (long enough to replay the tier window), and the derived, action,
	// dead-letter and erasure topics. stream.RetentionInfinite keeps records forever.
	InputRetention  time.Duration
	OutputRetention time.Duration
	// DeadLetterMaxRecordBytes is the largest record the dead-letter topic accepts (its
	// max.message.bytes, KAFKA_DLQ_MAX_RECORD_BYTES); envelopes are cut to fit under it.
	DeadLetterMaxRecordBytes int
	// OutboxMax bounds the derived events waiting in a namespace's outboxes
	// (OUTBOX_MAX_ENTRIES): at the bound, consumers and the sweeper pause for the relay.
	OutboxMax         int
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
	// CommitInterval is how often a consumer commits its handled offsets (COMMIT_INTERVAL);
	// 0 commits each micro-batch before fetching the next.
	CommitInterval time.Duration
	// AlignmentLead is how far in event time a consumer service may run ahead of the other
	// input topics before it pauses (ALIGNMENT_LEAD); 0 turns alignment off.
	AlignmentLead time.Duration
	// SweeperBacklogLag is how far behind the wall clock the watermark must be for the sweeper
	// to sweep at re-check days only while it moves (SWEEPER_BACKLOG_LAG; 0 turns it off; see
	// pipeline.SweeperConfig.BacklogLag).
	SweeperBacklogLag time.Duration
	// OpsToken is the bearer token the ops server requires, and loyaltyctl status sends
	// (OPS_BEARER_TOKEN, or the file OPS_BEARER_TOKEN_FILE); empty: the ops server is open.
	OpsToken string
	// Profiling serves Go's /debug/pprof/ profiles on the ops address (PPROF; off by
	// default), behind the ops token like /metrics.
	Profiling bool
	// GCPercent is the garbage collector's target heap growth between collections (GOGC,
	// 400 by default instead of Go's 100; -1 for "off"). The services keep small heaps of
	// short-lived batch garbage: at 400 a collection runs a quarter as often, for about
	// 11% less CPU per event in bench-e2e, at the price of a few tens of MB more memory;
	// GOMEMLIMIT, read by the Go runtime, caps the heap whatever this says.
	GCPercent int
	// MemoryLimitRatio is the share of the container's memory limit (cgroup) the services
	// hold their Go heap under (MEMORY_LIMIT_RATIO, 0.9 by default; 0 or off: none). An
	// explicit GOMEMLIMIT wins. See package gcsettings.
	MemoryLimitRatio float64

	// TopicSuffix is appended to every Kafka topic name (LOYALTY_TOPIC_SUFFIX, empty by
	// default). It lets tests and side-by-side environments share one broker.
	TopicSuffix string
}

// Env reads variables; os.Getenv in production, a map in tests.
type Env func(string) string

// FromOS reads the process environment.
func FromOS() Env { return os.Getenv }

// Var is one environment variable: its name, its default (empty: unset) and what it means.
// Vars lists every variable Load reads; Load takes its defaults from there, so the usage
// text a service prints cannot drift from what it parses.
type Var struct {
	Name    string
	Default string
	Meaning string
}

// Vars returns the variables Load reads, HTTP_ADDR defaulting to httpDefault.
func Vars(httpDefault string) []Var {
	return []Var{
		{"KAFKA_BROKERS", "127.0.0.1:9092", "comma-separated bootstrap brokers"},
		{"KAFKA_TLS", "false", "TLS to the brokers"},
		{"KAFKA_CA_FILE", "", "CA bundle (PEM) for KAFKA_TLS; unset trusts the system's CAs"},
		{"KAFKA_SASL_MECHANISM", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{"KAFKA_USERNAME", "", "SASL user"},
		{"KAFKA_PASSWORD", "", "SASL password"},
		{"KAFKA_COMPRESSION", "snappy", "codec of the record batches the services, the relay and loyaltyctl produce: none, gzip, snappy, lz4 or zstd"},
		{"KAFKA_PARTITIONS", "6", "partitions of the topics created when missing"},
		{"KAFKA_REPLICATION_FACTOR", "1", "replication factor of the topics created when missing"},
		{"KAFKA_INPUT_RETENTION", "400d", "retention of input topics created when missing (> the 365-day tier window, for replays): 400d, 9600h or infinite"},
		{"KAFKA_DLQ_MAX_RECORD_BYTES", strconv.Itoa(stream.DefaultMaxRecordBytes), "largest record the dead-letter topic accepts (its max.message.bytes, at least 16384): dead-letter envelopes are cut to stay 4 KB under it"},
		{"KAFKA_OUTPUT_RETENTION", "30d", "retention of the other topics created when missing (derived, actions, dead letters, erasures): 30d or infinite"},
		{"REDIS_ADDR", "127.0.0.1:6379", "one address (standalone), sentinels (with REDIS_MASTER_NAME) or cluster seeds"},
		{"REDIS_CLUSTER", "false", "treat REDIS_ADDR as Redis Cluster seeds"},
		{"REDIS_MASTER_NAME", "", "Sentinel master name"},
		{"REDIS_USERNAME", "", "Redis ACL user"},
		{"REDIS_PASSWORD", "", "Redis password"},
		{"REDIS_DB", "0", "Redis database (0..15)"},
		{"REDIS_TLS", "false", "TLS to Redis"},
		{"REDIS_CA_FILE", "", "CA bundle (PEM) for REDIS_TLS; unset trusts the system's CAs"},
		{"SCHEMA_REGISTRY_URL", "", "Confluent-compatible registry; unset uses the embedded manifest IDs"},
		{"SCHEMA_REGISTRY_USERNAME", "", "basic-auth user for the registry"},
		{"SCHEMA_REGISTRY_PASSWORD", "", "basic-auth password for the registry"},
		{"LOYALTY_NAMESPACE", "live", "Redis key namespace of the state (until a replay namespace is promoted)"},
		{"LOYALTY_DEPLOYMENT", "loyalty", "names the installation on a shared Redis (active pointer, namespace and erasure lists)"},
		{"LOYALTY_TOPIC_SUFFIX", "", "appended to every topic name (tests, side-by-side environments)"},
		{"LOYALTY_SHARDS", strconv.Itoa(keyspace.DefaultShards), "shards of a namespace (never change it for a namespace holding data)"},
		{"POLICY_FILE", "", "scoring policy YAML; unset uses the embedded default"},
		{"HTTP_ADDR", httpDefault, "address of /metrics, /healthz, /readyz; off disables"},
		{"OPS_BEARER_TOKEN", "", "bearer token required on /metrics and /readyz details (16+ visible ASCII characters; /healthz and the /readyz verdict stay open); unset: open"},
		{"OPS_BEARER_TOKEN_FILE", "", "file holding the ops bearer token (a mounted secret), instead of OPS_BEARER_TOKEN"},
		{"GOGC", "400", "garbage collector target: percent of heap growth between collections (Go's GOGC, whose default is 100), or off; GOMEMLIMIT caps the heap"},
		{"MEMORY_LIMIT_RATIO", "0.9", "share of the container's memory limit (cgroup v2 or v1) the Go heap is held under, so GOGC's headroom never outgrows the container (0 < ratio <= 1; 0 or off: none; an explicit GOMEMLIMIT wins; no container limit: none)"},
		{"PPROF", "false", "serve Go's /debug/pprof/ CPU and allocation profiles on HTTP_ADDR (behind OPS_BEARER_TOKEN when set); for benchmarks and diagnosis, off in production"},
		{"BATCH_SIZE", "4000", "micro-batch size (1..100000)"},
		{"BATCH_LINGER", "50ms", "how long to wait to fill a micro-batch"},
		{"COMMIT_INTERVAL", "1s", "how often a consumer service commits its handled offsets (0..10s; 0 commits each micro-batch before fetching the next); records handled but not committed at a crash are redelivered and skipped as applied"},
		{"OUTBOX_MAX_ENTRIES", "500000", "derived events that may wait in a namespace's outboxes before consumers and the sweeper pause for the relay (1000..100000000)"},
		{"ALIGNMENT_LEAD", "72h", "how far in event time a consumer may run ahead of the other input topics before it pauses (at most 552h; 0 turns alignment off)"},
		{"SWEEPER_BACKLOG_LAG", "24h", "how far the watermark must be behind the wall clock, beyond the allowed lateness, for the sweeper to take a customer's deadlines between two re-check days in one evaluation (a backlog, a replay); 0 turns it off"},
		{"LOG_LEVEL", "info", "debug, info, warn or error"},
	}
}

type parser struct {
	env      Env
	defaults map[string]string
	errs     []error
}

func newParser(env Env, vars []Var) *parser {
	p := &parser{env: env, defaults: make(map[string]string, len(vars))}
	for _, v := range vars {
		p.defaults[v.Name] = v.Default
	}
	return p
}

// raw returns the variable's value or its declared default; reading an undeclared variable
// is reported as an error, so every variable read appears in the usage text.
func (p *parser) raw(name string) string {
	def, ok := p.defaults[name]
	if !ok {
		p.errs = append(p.errs, fmt.Errorf("%s: not declared in the variable table", name))
	}
	if v := strings.TrimSpace(p.env(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) str(name string) string { return p.raw(name) }

func (p *parser) list(name string) []string {
	v := p.raw(name)
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

func (p *parser) int(name string, lo, hi int) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.errs = append(p.errs, fmt.Errorf("%s=%q: want an integer in %d..%d", name, v, lo, hi))
		n, _ = strconv.Atoi(p.defaults[name])
	}
	return n
}

func (p *parser) bool(name string) bool {
	v := p.raw(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s=%q: want true or false", name, v))
	}
	return b
}

func (p *parser) duration(name string) time.Duration {
	v := p.raw(name)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.errs = append(p.errs, fmt.Errorf("%s=%q: want a duration such as 50ms or 2s", name, v))
		d, _ = time.ParseDuration(p.defaults[name])
	}
	return d
}

// gcPercent reads a garbage collector target as Go's runtime does: a percentage, or "off"
// (-1).
func (p *parser) gcPercent(name string) int {
	if v := p.raw(name); strings.EqualFold(v, "off") {
		return -1
	}
	return p.int(name, 1, 1_000_000)
}

// ratio reads a share in (0, 1], or 0 or "off" for none.
func (p *parser) ratio(name string) float64 {
	v := p.raw(name)
	if strings.EqualFold(v, "off") {
		return 0
	}
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
		p.errs = append(p.errs, fmt.Errorf("%s=%q: want a share in 0..1 (such as 0.9), or off", name, v))
		r, _ = strconv.ParseFloat(p.defaults[name], 64)
	}
	return r
}

// compression reads a Kafka codec name (stream.ParseCompression).
func (p *parser) compression(name string) stream.Compression {
	c, err := stream.ParseCompression(p.raw(name))
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %w", name, err))
	}
	return c
}

// retention reads a topic retention: a positive duration (Go syntax, or whole days such as
// 400d) of at least a millisecond, or "infinite"/"-1" for stream.RetentionInfinite.
func (p *parser) retention(name string) time.Duration {
	v := p.raw(name)
	d, err := ParseRetention(v)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s=%q: %w", name, v, err))
		d, _ = ParseRetention(p.defaults[name])
	}
	return d
}

// ParseRetention parses a topic retention: "infinite" or "-1" (stream.RetentionInfinite), a
// number of days such as "400d", or a Go duration such as "72h"; it must be at least 1ms.
func ParseRetention(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "infinite") || v == "-1" {
		return stream.RetentionInfinite, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 100_000 {
			return 0, errors.New("want a positive duration such as 400d or 72h, or infinite")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errors.New("want a positive duration such as 400d or 72h, or infinite")
		}
	}
	if d < time.Millisecond {
		return 0, errors.New("want a positive duration of at least 1ms, or infinite")
	}
	return d, nil
}

// Load reads the common settings. httpDefault is the service's default ops address.
func Load(env Env, httpDefault string) (Common, error) {
	p := newParser(env, Vars(httpDefault))
	c := Common{
		KafkaBrokers: p.list("KAFKA_BROKERS"),
		KafkaSecurity: stream.Security{
			TLS: p.bool("KAFKA_TLS"), CAFile: p.str("KAFKA_CA_FILE"),
			SASLMechanism: p.str("KAFKA_SASL_MECHANISM"), Username: p.str("KAFKA_USERNAME"),
			Password: p.str("KAFKA_PASSWORD"),
		},
		KafkaCompression:         p.compression("KAFKA_COMPRESSION"),
		Partitions:               p.int("KAFKA_PARTITIONS", 1, 10_000),
		ReplicationFactor:        p.int("KAFKA_REPLICATION_FACTOR", 1, 16),
		InputRetention:           p.retention("KAFKA_INPUT_RETENTION"),
		OutputRetention:          p.retention("KAFKA_OUTPUT_RETENTION"),
		DeadLetterMaxRecordBytes: p.int("KAFKA_DLQ_MAX_RECORD_BYTES", 16<<10, 1<<30),
		Redis: redisconn.Config{
			Addrs: p.list("REDIS_ADDR"), Cluster: p.bool("REDIS_CLUSTER"),
			MasterName: p.str("REDIS_MASTER_NAME"), Username: p.str("REDIS_USERNAME"),
			Password: p.str("REDIS_PASSWORD"), DB: p.int("REDIS_DB", 0, 15), TLS: p.bool("REDIS_TLS"),
			CAFile: p.str("REDIS_CA_FILE"),
		},
		SchemaRegistryURL: p.str("SCHEMA_REGISTRY_URL"),
		RegistryUsername:  p.str("SCHEMA_REGISTRY_USERNAME"),
		RegistryPassword:  p.str("SCHEMA_REGISTRY_PASSWORD"),
		Namespace:         p.str("LOYALTY_NAMESPACE"),
		Deployment:        p.str("LOYALTY_DEPLOYMENT"),
		TopicSuffix:       p.str("LOYALTY_TOPIC_SUFFIX"),
		Shards:            p.int("LOYALTY_SHARDS", 1, 4096),
		PolicyFile:        p.str("POLICY_FILE"),
		HTTPAddr:          p.str("HTTP_ADDR"),
		Profiling:         p.bool("PPROF"),
		GCPercent:         p.gcPercent("GOGC"),
		MemoryLimitRatio:  p.ratio("MEMORY_LIMIT_RATIO"),
		BatchSize:         p.int("BATCH_SIZE", 1, 100_000),
		OutboxMax:         p.int("OUTBOX_MAX_ENTRIES", 1000, 100_000_000),
		Linger:            p.duration("BATCH_LINGER"),
		CommitInterval:    p.duration("COMMIT_INTERVAL"),
		AlignmentLead:     p.duration("ALIGNMENT_LEAD"),
		SweeperBacklogLag: p.duration("SWEEPER_BACKLOG_LAG"),
	}
	if maxLead := time.Duration(scoring.MaxAlignmentLeadDays) * 24 * time.Hour; c.AlignmentLead > maxLead {
		p.errs = append(p.errs, fmt.Errorf("ALIGNMENT_LEAD=%s: at most %s, what the open days a customer's state keeps exact leave after the re-check grid", c.AlignmentLead, maxLead))
	}
	if strings.EqualFold(c.HTTPAddr, "off") {
		c.HTTPAddr = ""
	}
	var err error
	if c.OpsToken, err = ops.LoadToken(p.str("OPS_BEARER_TOKEN"), p.str("OPS_BEARER_TOKEN_FILE")); err != nil {
		p.errs = append(p.errs, fmt.Errorf("OPS_BEARER_TOKEN/OPS_BEARER_TOKEN_FILE: %w", err))
	}
	level, err := zapcore.ParseLevel(p.str("LOG_LEVEL"))
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

// TopicSpec returns how the services create the pipeline topic name (its physical name) of
// role when it is missing: the configured partitions and replication factor, InputRetention
// for input topics, forever (compacted) for the erasures topic, and OutputRetention for every
// other role. Input topics refuse records a
// producer stamps more than stream.DefaultMaxTimestampAhead ahead of the broker's clock:
// validation's future-skew check takes a record's timestamp as "now", and a producer's clock
// must not be able to move it.
func (c Common) TopicSpec(name string, role event.Role) stream.TopicSpec {
	spec := stream.TopicSpec{Name: name, Partitions: c.Partitions, ReplicationFactor: c.ReplicationFactor, Retention: c.OutputRetention}
	switch role {
	case event.RoleInput:
		spec.Retention, spec.MaxTimestampAhead = c.InputRetention, stream.DefaultMaxTimestampAhead
	case event.RoleErasure:
		// The erasures topic is the durable copy of the suppression list (the Redis set is
		// restored from it): kept forever, compacted to the latest record per customer id.
		spec.Retention, spec.Config = stream.RetentionInfinite, map[string]string{"cleanup.policy": "compact"}
	}
	return spec
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
