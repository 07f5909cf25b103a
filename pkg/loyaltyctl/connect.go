package loyaltyctl

import (
	"context"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// environment is what the operator commands read, from the same variables as the services.
// Commands may change cfg (a --namespace flag) before connecting.
type environment struct {
	cfg config.Common
	log *zap.Logger
}

func loadEnvironment() (*environment, error) {
	e, err := cmdline.LoadEnvironment("loyaltyctl")
	if err != nil {
		return nil, err
	}
	return &environment{cfg: e.Cfg, log: e.Log}, nil
}

func (e *environment) shared() *cmdline.Environment {
	return &cmdline.Environment{Cfg: e.cfg, Log: e.log}
}

func (e *environment) codec(ctx context.Context) (*codec.Codec, error) { return e.shared().Codec(ctx) }

func (e *environment) producer() (*stream.Producer, error) { return e.shared().Producer() }

// admin returns the command's Kafka admin; the caller closes it.
func (e *environment) admin() (*stream.Admin, error) { return e.shared().Admin() }

func (e *environment) redis(ctx context.Context) (redisconn.Client, error) {
	return e.shared().Redis(ctx)
}
