package cmdline

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/gcsettings"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

// Environment is what a tool's commands read, from the same variables as the services, and
// the clients they connect with.
type Environment struct {
	Cfg config.Common
	Log *zap.Logger
}

// LoadEnvironment reads the configuration from the process environment; the logger of the
// tool named name logs warnings and errors only, so command output stays readable.
func LoadEnvironment(name string) (*Environment, error) {
	cfg, err := config.Load(config.FromOS(), "")
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	log, err := cfg.Logger(name)
	if err != nil {
		return nil, fmt.Errorf("logger: %w", err)
	}
	log = log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	// A replay or backfill is the services' work in one process.
	gcsettings.Apply(gcsettings.Settings{GCPercent: cfg.GCPercent, MemoryLimitRatio: cfg.MemoryLimitRatio}, log)
	redisconn.RouteLogs(log)
	return &Environment{Cfg: cfg, Log: log}, nil
}

// Admin returns a Kafka admin for the command, retrying transient errors; the caller closes
// it.
func (e *Environment) Admin() (*stream.Admin, error) {
	return stream.NewAdmin(e.Cfg.KafkaBrokers, e.Cfg.KafkaSecurity, e.Log)
}

// Codec connects to the schema registry the configuration names.
func (e *Environment) Codec(ctx context.Context) (*codec.Codec, error) {
	reg, err := wiring.Registry(e.Cfg)
	if err != nil {
		return nil, err
	}
	return codec.New(ctx, reg)
}

// Producer returns a Kafka producer for the configured brokers.
func (e *Environment) Producer() (*stream.Producer, error) {
	return stream.NewProducer(stream.ProducerConfig{Brokers: e.Cfg.KafkaBrokers, Security: e.Cfg.KafkaSecurity,
		Compression: e.Cfg.KafkaCompression}, e.Log)
}

// Redis returns a client of the configured Redis that has answered a PING.
func (e *Environment) Redis(ctx context.Context) (redisconn.Client, error) {
	rdb, err := redisconn.New(e.Cfg.Redis)
	if err != nil {
		return nil, err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("connecting to redis at %v: %w", e.Cfg.Redis.Addrs, err)
	}
	return rdb, nil
}
