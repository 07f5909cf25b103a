// Package erasure is the GDPR right-to-erasure path: it removes a customer's state, pending
// outbox entries and deadlines from every namespace, adds the id to the suppression list the
// consumers honour (so neither new events nor a replay of history bring the customer back),
// and publishes a CustomerErased record for downstream systems.
package erasure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// Eraser removes what another component keeps about a customer in deployment d, for the
// namespace keys (the notifier's decision history and queued deliveries, say), and returns how
// many keys or entries it removed, so erasure reaches them too. It is called for every
// namespace of the deployment, so what it keeps per deployment is removed by the first call.
type Eraser func(ctx context.Context, rdb redisconn.Client, d keyspace.Deployment, keys keyspace.Keyspace, customerID string) (int, error)

// DefaultSettleDelay is how long erasure waits before its second pass unless configured
// otherwise: longer than a consumer batch takes to apply.
const DefaultSettleDelay = 2 * time.Second

// Config is what erasure needs to know about the deployment.
type Config struct {
	// Deployment names the installation whose erasure list and namespace registry are used.
	Deployment string
	// Shards is the shard count of the deployment's namespaces.
	Shards int
	// Topic is the physical topic the erasure record is published to.
	Topic string
	// SettleDelay is how long to wait before the second pass (0: DefaultSettleDelay).
	SettleDelay time.Duration
}

func (c Config) validate() error {
	switch {
	case c.Deployment == "":
		return errors.New("erasure: deployment is required")
	case c.Shards < 1:
		return fmt.Errorf("erasure: shards %d must be positive", c.Shards)
	case c.Topic == "":
		return errors.New("erasure: topic is required")
	case c.SettleDelay < 0:
		return fmt.Errorf("erasure: settle delay %v must not be negative", c.SettleDelay)
	}
	return nil
}

// Encoder encodes the erasure record (a *codec.Codec).
type Encoder interface {
	Encode(event.Event) ([]byte, error)
}

// Producer publishes the erasure record (a *stream.Producer).
type Producer interface {
	Produce(ctx context.Context, records ...stream.Record) error
}

// Service erases customers of one deployment.
type Service struct {
	cfg        Config
	deployment keyspace.Deployment
	rdb        redisconn.Client
	enc        Encoder
	producer   Producer
}

// New validates cfg and returns the deployment's erasure service.
func New(cfg Config, rdb redisconn.Client, enc Encoder, producer Producer) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d, err := keyspace.NewDeployment(cfg.Deployment)
	if err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	if cfg.SettleDelay == 0 {
		cfg.SettleDelay = DefaultSettleDelay
	}
	return &Service{cfg: cfg, deployment: d, rdb: rdb, enc: enc, producer: producer}, nil
}

// Result says what was removed.
type Result struct {
	Namespaces int `json:"namespaces"`
	Removed    int `json:"removed"`
	Record     event.CustomerErased
}

// Erase removes the customer everywhere and publishes the erasure record on the configured
// topic. It is idempotent: erasing twice removes nothing the second time but still records
// the request.
func (s *Service) Erase(ctx context.Context, customerID, requestedBy string, extra ...Eraser) (Result, error) {
	if customerID == "" {
		return Result{}, fmt.Errorf("customer id: required")
	}
	// Suppress first: from now on the consumers drop the customer's events, so nothing
	// recreates what is removed below.
	if err := namespace.Suppress(ctx, s.rdb, s.deployment, customerID); err != nil {
		return Result{}, err
	}
	namespaces, err := namespace.List(ctx, s.rdb, s.deployment)
	if err != nil {
		return Result{}, err
	}
	res := Result{Namespaces: len(namespaces)}
	// Two passes: a consumer batch that read the customer before the suppression took effect
	// may still be writing; the second pass, after such a batch is done, removes what it wrote.
	for pass := range 2 {
		if pass == 1 {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(s.cfg.SettleDelay):
			}
		}
		for _, ns := range namespaces {
			keys, err := keyspace.New(ns, s.cfg.Shards)
			if err != nil {
				continue
			}
			n, err := eraseIn(ctx, s.rdb, s.deployment, keys, customerID, extra)
			if err != nil {
				return res, fmt.Errorf("namespace %s: %w", ns, err)
			}
			res.Removed += n
		}
	}
	now := time.Now().UTC()
	sum := sha256.Sum256([]byte(customerID + "\x00" + strconv.FormatInt(now.UnixNano(), 10)))
	res.Record = event.CustomerErased{EventID: hex.EncodeToString(sum[:16]), CustomerID: customerID, ErasedAt: now,
		RequestedBy: requestedBy, KeysRemoved: int32(res.Removed)}
	value, err := s.enc.Encode(res.Record)
	if err != nil {
		return res, fmt.Errorf("encoding the erasure record: %w", err)
	}
	if err := s.producer.Produce(ctx, stream.Record{Topic: s.cfg.Topic, Key: []byte(customerID), Value: value}); err != nil {
		return res, fmt.Errorf("publishing the erasure record: %w", err)
	}
	return res, nil
}

// eraseIn removes the customer from one namespace: the store's keys, then every extra
// component's.
func eraseIn(ctx context.Context, rdb redisconn.Client, d keyspace.Deployment, keys keyspace.Keyspace, id string, extra []Eraser) (int, error) {
	removed, err := state.EraseCustomer(ctx, rdb, keys, id)
	if err != nil {
		return removed, err
	}
	for _, erase := range extra {
		n, err := erase(ctx, rdb, d, keys, id)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}
