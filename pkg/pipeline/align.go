package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// Pacer aligns the three consumer services in event time (stream.Pacer): a batch whose
// earliest event is more than Lead ahead of the other topics' partitions waits until they
// catch up. Before it waits it reports the batch's partitions at the earliest event time they
// hold, so the services it waits for can move on too. A topic's own partitions are not
// waited for: kafka-go fetches them concurrently, and a customer's events of one topic all
// live in one partition.
//
// The lead (ALIGNMENT_LEAD, 72h by default) is chosen so that a routine restart, or an outage
// of a whole day, of one service never pauses the others, and it is at most what a customer's
// state keeps open (scoring.MaxOpenDays less the day itself and the allowed lateness). See
// docs/design.md, "Event time".
type Pacer struct {
	Watermarks *watermark.Tracker
	// Required lists the watermark fields of the partitions holding records (nil: none).
	Required func(ctx context.Context) ([]string, error)
	// Lead is the most a batch may be ahead of the other topics; it must be positive.
	Lead time.Duration
	// TimeOf returns a record's event time (the decoder's occurred_at, else the record's
	// timestamp).
	TimeOf func(stream.Message) time.Time
	// Poll is the pause between two looks at the watermark while paused; 0 means 250ms.
	Poll   time.Duration
	Paused prometheus.Gauge // nil: not exported
	Log    *zap.Logger
}

// NewPausedGauge returns the gauge a Pacer sets while it holds a batch.
func NewPausedGauge(reg prometheus.Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "loyalty_consumer_paused",
		Help: "1 while the consumer holds a batch because it is more than the alignment lead ahead of the other topics in event time."})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// Pace implements stream.Pacer.
func (p *Pacer) Pace(ctx context.Context, msgs []stream.Message) error {
	heads := map[string]watermark.Position{}
	own := map[string]bool{}
	var earliest time.Time
	for _, m := range msgs {
		own[m.Topic] = true
		at := p.TimeOf(m)
		f := watermark.Field(m.Topic, m.Partition)
		if h, ok := heads[f]; !ok || at.Before(h.MaxEventTime) {
			heads[f] = watermark.Position{Topic: m.Topic, Partition: m.Partition, MaxEventTime: at}
		}
		if earliest.IsZero() || at.Before(earliest) {
			earliest = at
		}
	}
	poll := p.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	var (
		pausedAt  time.Time
		reported  bool
		lastLog   time.Time
		lastError error
	)
	defer func() {
		if !pausedAt.IsZero() && p.Paused != nil {
			p.Paused.Set(0)
		}
	}()
	for {
		other, holder, known, err := p.others(ctx, own)
		switch {
		case err != nil:
			lastError = err
		case known && (other.Equal(maxTime) || !earliest.After(other.Add(p.Lead))):
			if !pausedAt.IsZero() {
				p.Log.Info("resumed: the other topics caught up", zap.Duration("paused", time.Since(pausedAt)))
			}
			return nil
		}
		if !reported {
			// The records held are the partitions' next ones: their positions can move up
			// to them, which is what the paused services may be waiting for.
			positions := make([]watermark.Position, 0, len(heads))
			for _, h := range heads {
				positions = append(positions, h)
			}
			if err := p.Watermarks.Report(ctx, positions, time.Now()); err != nil {
				lastError = err
			} else {
				reported = true
				continue
			}
		}
		if pausedAt.IsZero() {
			pausedAt = time.Now()
			if p.Paused != nil {
				p.Paused.Set(1)
			}
		}
		if time.Since(lastLog) >= 30*time.Second {
			lastLog = time.Now()
			fields := []zap.Field{zap.Time("batch_from", earliest), zap.Duration("lead", p.Lead),
				zap.Duration("paused", time.Since(pausedAt).Round(time.Second))}
			if known {
				fields = append(fields, zap.Time("other_topics_at", other), zap.String("held_by", holder))
			} else if lastError == nil {
				fields = append(fields, zap.String("held_by", "a partition with records that has not reported yet"))
			}
			if lastError != nil {
				fields = append(fields, zap.Error(lastError))
			}
			p.Log.Warn("paused: ahead of the other topics by more than the alignment lead", fields...)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// maxTime is later than any event time: the position of "nothing to wait for".
var maxTime = time.Unix(1<<62, 0)

// others returns the minimum position over the partitions of the topics not in own, the
// partition holding it, and false while one of them that holds records has not reported.
func (p *Pacer) others(ctx context.Context, own map[string]bool) (time.Time, string, bool, error) {
	var required []string
	if p.Required != nil {
		var err error
		if required, err = p.Required(ctx); err != nil {
			return time.Time{}, "", false, err
		}
	}
	r, err := p.Watermarks.Read(ctx)
	if err != nil {
		return time.Time{}, "", false, err
	}
	ownField := func(f string) bool {
		i := strings.LastIndexByte(f, '/')
		return i > 0 && own[f[:i]]
	}
	// A partition of another topic that holds records but has not reported yet may be
	// behind everything: wait for it, but only once every partition of this consumer's own
	// topics has reported. Until then this consumer keeps going, so that partitions of its
	// own that its batches have not reached yet get to report; otherwise two services
	// starting together could each wait for the other.
	var missing string
	ownMissing := false
	for _, f := range required {
		if _, ok := r.Positions[f]; !ok {
			if ownField(f) {
				ownMissing = true
			} else if missing == "" {
				missing = f
			}
		}
	}
	if missing != "" && !ownMissing {
		return time.Time{}, missing, false, nil
	}
	var (
		at     time.Time
		holder string
	)
	fields := make([]string, 0, len(r.Positions))
	for f := range r.Positions {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	for _, f := range fields {
		if ownField(f) {
			continue
		}
		if pos := r.Positions[f]; holder == "" || pos.Before(at) {
			at, holder = pos, f
		}
	}
	if holder == "" {
		// No other topic holds records: nothing to align with.
		return maxTime, "", true, nil
	}
	return at, holder, true, nil
}

// Heartbeat reports, every Every, the partitions of a consumer group that are caught up: the
// group has committed everything up to their end. A caught-up partition's position is the
// wall clock of its last heartbeat less the allowed lateness (see package watermark), so the
// watermark moves with the wall clock while the pipeline is live, and stops where it was
// when the consumer is gone or falls behind.
type Heartbeat struct {
	Admin      *stream.Admin
	Watermarks *watermark.Tracker
	Group      string
	Topics     []string // physical
	Every      time.Duration
	// Now is the wall clock of the heartbeats; nil means time.Now.
	Now func() time.Time
	Log *zap.Logger
}

// Run heartbeats until ctx ends.
func (h Heartbeat) Run(ctx context.Context) error {
	if h.Every <= 0 {
		return errors.New("heartbeat: Every must be positive")
	}
	t := time.NewTicker(h.Every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := h.beat(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			h.Log.Warn("watermark heartbeat failed; the watermark holds until it succeeds", zap.Error(err))
		case err == nil && failing:
			failing = false
			h.Log.Info("watermark heartbeat recovered")
		}
	}
}

// beat heartbeats the caught-up partitions once.
func (h Heartbeat) beat(ctx context.Context) error {
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	at := now() // before the end offsets are read: everything up to them existed by then
	var fields []string
	for _, topic := range h.Topics {
		ends, err := h.Admin.EndOffsets(ctx, topic)
		if err != nil {
			return err
		}
		committed, err := h.Admin.GroupOffsets(ctx, h.Group, topic)
		if err != nil {
			return err
		}
		for part, end := range ends {
			if c, ok := committed[part]; ok && c >= end {
				fields = append(fields, watermark.Field(topic, part))
			}
		}
	}
	if err := h.Watermarks.Heartbeat(ctx, fields, at); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// InputTime returns a record's event time: its decoded occurred_at, else (a record the
// consumer will dead-letter) the record's timestamp.
func InputTime(ctx context.Context, dec interface {
	Decode(context.Context, []byte) (event.Event, error)
}) func(stream.Message) time.Time {
	return func(m stream.Message) time.Time {
		if e, err := dec.Decode(ctx, m.Value); err == nil {
			if in, ok := e.(event.Input); ok {
				return in.Time()
			}
		}
		return m.Time
	}
}
