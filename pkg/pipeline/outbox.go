package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// DefaultOutboxMax is the outbox bound unless configured (OUTBOX_MAX_ENTRIES): about 150 MB of
// derived events waiting in Redis at typical sizes.
const DefaultOutboxMax = 500_000

// ErrOutboxFull is returned by OutboxBound.Check while the outboxes are at their bound.
var ErrOutboxFull = errors.New("outbox full: waiting for the relay to publish")

// OutboxBound keeps the namespace's outboxes bounded. The outboxes fill when the relay is down
// or Kafka refuses its writes while the consumers and the sweeper go on deriving; unbounded,
// they would grow Redis until it refuses every write (maxmemory, noeviction) or the machine
// runs out of memory. Writers call Check before a write; at the bound it fails, so a consumer
// retries its batch with backoff, uncommitted (it pauses, and loses nothing), and the sweeper
// retries its pass, until the relay has drained the outboxes below the bound. The depth is
// read (one pipelined XLEN per shard) at most every Every; in between, the writer adds what it
// wrote itself (Added), so one writer never overshoots the bound by more than one batch.
type OutboxBound struct {
	Redis redisconn.Client
	Keys  keyspace.Keyspace
	// Max is the bound, in entries over every shard; 0 or less: unbounded.
	Max int64
	// Every is how long a depth reading is reused (0: one second).
	Every time.Duration
	// Depth, when not nil, is set to each depth read (loyalty_outbox_entries).
	Depth prometheus.Gauge

	mu     sync.Mutex
	depth  int64
	readAt time.Time
}

// NewOutboxDepthGauge creates and registers (when reg is not nil) the gauge of the entries
// waiting in the namespace's outboxes, as the writers last read it.
func NewOutboxDepthGauge(reg prometheus.Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_outbox_entries",
		Help: "Derived events waiting in the namespace's outboxes, as last read by this writer (bounded by OUTBOX_MAX_ENTRIES)."})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// Added counts n entries this writer appended since the last reading.
func (b *OutboxBound) Added(n int) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	b.depth += int64(n)
	b.mu.Unlock()
}

// Check returns an error wrapping ErrOutboxFull while the outboxes hold Max entries or more,
// or the error of reading their depth. A nil bound never refuses.
func (b *OutboxBound) Check(ctx context.Context) error {
	if b == nil || b.Max <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	every := b.Every
	if every <= 0 {
		every = time.Second
	}
	if b.readAt.IsZero() || time.Since(b.readAt) >= every {
		depth, err := b.read(ctx)
		if err != nil {
			return err
		}
		b.depth, b.readAt = depth, time.Now()
		if b.Depth != nil {
			b.Depth.Set(float64(depth))
		}
	}
	if b.depth >= b.Max {
		return fmt.Errorf("%w: %d entries waiting, the bound is %d", ErrOutboxFull, b.depth, b.Max)
	}
	return nil
}

func (b *OutboxBound) read(ctx context.Context) (int64, error) {
	depths, err := state.OutboxDepths(ctx, b.Redis, b.Keys)
	var total int64
	for _, d := range depths {
		total += d
	}
	return total, err
}
