package loyaltyctl

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"

	"github.com/redis/go-redis/v9"
)

// environment is what the operator commands read, from the same variables as the services.
type environment struct {
	cfg config.Common
	log *zap.Logger
}

func loadEnvironment() (*environment, error) {
	cfg, err := config.Load(config.FromOS(), "")
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	log, err := cfg.Logger("loyaltyctl")
	if err != nil {
		return nil, err
	}
	return &environment{cfg: cfg, log: log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))}, nil
}

func (e *environment) codec(ctx context.Context) (*codec.Codec, error) {
	reg, err := wiring.Registry(e.cfg)
	if err != nil {
		return nil, err
	}
	return codec.New(ctx, reg)
}

func (e *environment) producer() (*stream.Producer, error) {
	return stream.NewProducer(stream.ProducerConfig{Brokers: e.cfg.KafkaBrokers, Security: e.cfg.KafkaSecurity}, e.log)
}

func (e *environment) redis(ctx context.Context) (redis.UniversalClient, error) {
	rdb, err := redisconn.New(e.cfg.Redis)
	if err != nil {
		return nil, err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("connecting to redis at %v: %w", e.cfg.Redis.Addrs, err)
	}
	return rdb, nil
}
