package notifier

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

var (
	//go:embed claim.lua
	claimLua    string
	claimScript = redisconn.NewScript("notifier-claim", claimLua)
	//go:embed settle.lua
	settleLua    string
	settleScript = redisconn.NewScript("notifier-settle", settleLua)
)

// Dead-letter codes of actions that could not be delivered.
const (
	CodeRejected  = "webhook_rejected"   // the receiver answered 4xx: FAILED, not retried
	CodeExhausted = "delivery_exhausted" // every attempt failed transiently: DEAD_LETTERED
)

// DeadLetterSink publishes undeliverable actions (stream.DeadLetterWriter).
type DeadLetterSink interface {
	DeadLetter(ctx context.Context, rejected []stream.Rejection) error
}

// deliverer drains the shards' delivery queues: it claims due actions with a lease, delivers
// them on their kind's channel with a bounded number of workers, and settles each attempt
// (delivered, retry later, or failed for good) in Redis. A process that dies mid-delivery
// leaves its claims to expire; whoever claims them next delivers them again with the same
// idempotency key.
type deliverer struct {
	rdb      redis.UniversalClient
	keys     keys
	cfg      DeliveryConfig
	channels map[event.ActionKind]channel
	enc      Encoder
	dlq      DeadLetterSink
	metrics  *Metrics
	log      *zap.Logger
	now      func() time.Time

	wake  chan struct{}
	slots chan struct{} // one token per worker
	next  int           // shard to start the next pass at, for fairness
}

func newDeliverer(rdb redis.UniversalClient, k keys, cfg DeliveryConfig, channels map[event.ActionKind]channel,
	enc Encoder, dlq DeadLetterSink, m *Metrics, log *zap.Logger, now func() time.Time) *deliverer {
	return &deliverer{rdb: rdb, keys: k, cfg: cfg, channels: channels, enc: enc, dlq: dlq, metrics: m, log: log, now: now,
		wake: make(chan struct{}, 1), slots: make(chan struct{}, cfg.Workers)}
}

// Wake asks for a pass now (new actions were queued).
func (d *deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then gives in-flight attempts DrainTimeout to finish and
// abandons the rest (their leases expire and they are delivered again, same key).
func (d *deliverer) Run(ctx context.Context) error {
	attemptCtx, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	var wg sync.WaitGroup
	defer func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(d.cfg.DrainTimeout):
			abandon()
			<-done
		}
	}()
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	backoff := d.cfg.PollInterval
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-tick.C:
		}
		more, err := d.pass(ctx, attemptCtx, &wg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d.log.Warn("delivery pass failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			d.Wake()
			continue
		}
		backoff = d.cfg.PollInterval
		if more {
			d.Wake()
		}
	}
}

// claimed is an action claimed for one attempt.
type claimed struct {
	action   pendingAction
	attempts int
}

// pass claims due actions from every shard that has some, as long as workers are free, and
// starts their attempts. more reports that due actions were left for the next pass.
func (d *deliverer) pass(ctx, attemptCtx context.Context, wg *sync.WaitGroup) (more bool, err error) {
	shards := d.keys.ks.Shards()
	now := d.now().UnixMilli()
	pipe := d.rdb.Pipeline()
	due := make([]*redis.IntCmd, shards)
	total := make([]*redis.IntCmd, shards)
	for s := range shards {
		due[s] = pipe.ZCount(ctx, d.keys.due(s), "-inf", strconv.FormatInt(now, 10))
		total[s] = pipe.ZCard(ctx, d.keys.due(s))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("polling delivery queues: %w", err)
	}
	var pending int64
	for s := range shards {
		pending += total[s].Val()
	}
	d.metrics.pending.Set(float64(pending))
	start := d.next
	d.next = (d.next + 1) % shards
	for i := range shards {
		s := (start + i) % shards
		if due[s].Val() == 0 {
			continue
		}
		free := d.cfg.Workers - len(d.slots)
		if free == 0 {
			return true, nil
		}
		batch, err := d.claim(ctx, s, now, free)
		if err != nil {
			return false, err
		}
		if int64(len(batch)) < due[s].Val() {
			more = true
		}
		for _, c := range batch {
			d.slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-d.slots; wg.Done() }()
				d.attempt(attemptCtx, c)
			}()
		}
	}
	return more, nil
}

func (d *deliverer) claim(ctx context.Context, shard int, now int64, most int) ([]claimed, error) {
	res, err := claimScript.Run(ctx, d.rdb, []string{d.keys.due(shard), d.keys.pending(shard)},
		now, d.cfg.Lease.Milliseconds(), most).Slice()
	if err != nil {
		return nil, fmt.Errorf("claiming deliveries of shard %d: %w", shard, err)
	}
	out := make([]claimed, 0, len(res)/3)
	for i := 0; i+2 < len(res); i += 3 {
		payload, _ := res[i+1].(string)
		attempts, _ := res[i+2].(int64)
		var c claimed
		if err := json.Unmarshal([]byte(payload), &c.action); err != nil {
			// Unreadable payloads cannot be delivered; leave them claimed so an operator sees
			// them in the queue, and say so loudly.
			d.log.Error("undecodable pending action", zap.Any("id", res[i]), zap.Error(err))
			continue
		}
		c.attempts = int(attempts)
		out = append(out, c)
	}
	return out, nil
}

// attempt makes one delivery attempt and settles it.
func (d *deliverer) attempt(ctx context.Context, c claimed) {
	a := &c.action
	ch := d.channels[a.Kind]
	if ch == nil {
		d.log.Error("no channel for action kind; leaving it queued", zap.String("kind", string(a.Kind)), zap.String("action_id", a.ActionID))
		return
	}
	start := time.Now()
	result, detail := ch.deliver(ctx, a, c.attempts)
	d.metrics.attempts.WithLabelValues(string(a.Kind), a.Channel, resultNames[result]).Observe(time.Since(start).Seconds())
	switch {
	case result == aborted:
		return // shutdown: the lease expires and the action is delivered again, same key
	case result == delivered:
		d.final(ctx, a, c.attempts, event.OutcomeSent, "rule:"+a.Rule, "")
		d.metrics.toDeliver.WithLabelValues(string(a.Kind)).Observe(d.now().Sub(a.DecidedAt).Seconds())
	case result == permanent:
		d.final(ctx, a, c.attempts, event.OutcomeFailed, CodeRejected+": "+detail, CodeRejected)
	case c.attempts >= d.cfg.MaxAttempts:
		d.final(ctx, a, c.attempts, event.OutcomeDeadLettered,
			fmt.Sprintf("%s: %s after %d attempts", CodeExhausted, detail, c.attempts), CodeExhausted)
	default:
		d.metrics.retries.WithLabelValues(string(a.Kind)).Inc()
		next := d.now().Add(d.backoff(c.attempts))
		d.settle(ctx, a, "retry", next.UnixMilli(), nil, nil)
	}
}

// backoff is the pause after the n-th failed attempt: base·2^(n-1), capped, with "equal
// jitter" (a uniform draw between half of it and all of it), so receivers recovering from an
// outage are not hit by every notifier at once.
func (d *deliverer) backoff(n int) time.Duration {
	b := d.cfg.BackoffBase
	for i := 1; i < n && b < d.cfg.BackoffMax; i++ {
		b *= 2
	}
	b = min(b, d.cfg.BackoffMax)
	half := b / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// final records an action's last outcome. An undeliverable action goes to the dead-letter
// topic first (the envelope carries the webhook body and the trigger's position), so it is
// never lost: if the process dies before the settlement, the action is attempted again and
// dead-lettered again with the same body.
func (d *deliverer) final(ctx context.Context, a *pendingAction, attempts int, outcome event.ActionOutcome, reason, dlqCode string) {
	if dlqCode != "" {
		rej := stream.Rejection{Message: stream.Message{Topic: a.Position.Topic, Partition: int(a.Position.Partition),
			Offset: a.Position.Offset, Key: []byte(a.CustomerID), Value: a.Body},
			Code: dlqCode, Err: fmt.Errorf("action %s (%s): %s", a.ActionID, a.Kind, reason)}
		if err := d.retryRedis(ctx, func(ctx context.Context) error { return d.dlq.DeadLetter(ctx, []stream.Rejection{rej}) }); err != nil {
			d.metrics.settleErrors.Inc()
			d.log.Warn("dead-lettering an action failed; it will be attempted again", zap.String("action_id", a.ActionID), zap.Error(err))
			return
		}
	}
	rec, err := d.enc.Encode(event.ActionDecided{ActionID: a.ActionID, CustomerID: a.CustomerID, DecidedAt: a.DecidedAt,
		Kind: a.Kind, Outcome: outcome, Reason: reason, TriggerEventID: a.TriggerEventID, Channel: a.Channel})
	if err != nil {
		d.log.Error("encoding an action record", zap.String("action_id", a.ActionID), zap.Error(err))
		return
	}
	entry, err := json.Marshal(HistoryEntry{ActionID: a.ActionID, Kind: a.Kind, Outcome: string(outcome), Reason: reason,
		TriggerEventID: a.TriggerEventID, Rule: a.Rule, Channel: a.Channel, DecidedAt: a.DecidedAt.Format(time.RFC3339Nano),
		SettledAt: d.now().UTC().Format(time.RFC3339Nano), Attempts: attempts})
	if err != nil {
		d.log.Error("encoding a history entry", zap.Error(err))
		return
	}
	if d.settle(ctx, a, "final", 0, rec, entry) {
		label := reason
		if dlqCode != "" {
			label = dlqCode
		} else if outcome == event.OutcomeSent {
			label = "rule:" + a.Rule
		}
		d.metrics.decisions.WithLabelValues(string(a.Kind), string(outcome), label).Inc()
	}
}

// settle runs the settle script, retrying Redis failures briefly. It reports whether this
// call settled the action (false: already settled elsewhere, or Redis stayed unreachable and
// the lease will hand the action out again).
func (d *deliverer) settle(ctx context.Context, a *pendingAction, mode string, next int64, rec, entry []byte) bool {
	shard := d.keys.ks.Shard(a.CustomerID)
	ks := []string{d.keys.due(shard), d.keys.pending(shard), d.keys.outbox(shard), d.keys.customer(a.CustomerID), d.keys.history(a.CustomerID)}
	var n int64
	err := d.retryRedis(ctx, func(ctx context.Context) error {
		var err error
		n, err = settleScript.Run(ctx, d.rdb, ks, mode, a.ActionID, next, event.TopicActions, a.CustomerID, rec, entry, HistoryCap, d.keys.ks.OutboxBell()).Int64()
		return err
	})
	if err != nil {
		d.metrics.settleErrors.Inc()
		d.log.Warn("recording a delivery outcome failed; the action will be attempted again", zap.String("action_id", a.ActionID), zap.Error(err))
		return false
	}
	return n == 1
}

// retryRedis runs f up to five times with a short backoff; a delivery outcome is worth a few
// seconds of waiting for Redis to come back.
func (d *deliverer) retryRedis(ctx context.Context, f func(context.Context) error) error {
	var err error
	for i := range 5 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = f(cctx)
		cancel()
		if err == nil || errors.Is(ctx.Err(), context.Canceled) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(100<<i) * time.Millisecond):
		}
	}
	return err
}
