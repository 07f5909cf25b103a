package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// Pacer aligns the consumer services in event time (stream.Pacer), as Flink's watermark
// alignment does for splits: a consumer hands its records to the processor only up to the
// pipeline watermark plus Lead, per partition, holding the rest back while it keeps fetching
// the partitions that are behind. It reports the partitions it holds records of at their
// earliest held event time, so that the watermark (and every service waiting for it) can
// move on. A consumer whose own partition holds the watermark always fetches on, so two
// services can never wait for each other.
//
// The lead (ALIGNMENT_LEAD, 72h by default) is chosen so that a routine restart, or an outage
// of a whole day, of one service never pauses the others, and it is at most what a customer's
// state keeps exact (scoring.MaxAlignmentLeadDays). See docs/design.md, "Event time".
type Pacer struct {
	Watermarks *watermark.Tracker
	// Required lists the watermark fields of the partitions holding records (nil: none).
	Required func(ctx context.Context) ([]string, error)
	// Topics are the consumer's own (physical) topics.
	Topics []string
	// Lead is how far ahead of the watermark records may go; it must be positive.
	Lead time.Duration
	// EventTime returns a record's event time (InputTime).
	EventTime func(stream.Message) time.Time
	// Gate, when set, returns the watermark beyond which no day closes until the next
	// cut-point boundary is sealed, and how far past it records may go (Scorer.Gate), so a
	// customer's open days stay bounded while the cut points lag.
	Gate func() (gate time.Time, lead time.Duration, ok bool)

	reported map[string]time.Time
}

// TimeOf implements stream.Pacer.
func (p *Pacer) TimeOf(m stream.Message) time.Time { return p.EventTime(m) }

// Admit implements stream.Pacer.
func (p *Pacer) Admit(ctx context.Context, heads map[stream.TopicPartition]time.Time) (time.Time, bool, error) {
	if p.reported == nil {
		p.reported = map[string]time.Time{}
	}
	var positions []watermark.Position
	for tp, at := range heads {
		if f := watermark.Field(tp.Topic, tp.Partition); !p.reported[f].Equal(at) {
			positions = append(positions, watermark.Position{Topic: tp.Topic, Partition: tp.Partition, MaxEventTime: at})
		}
	}
	if len(positions) > 0 {
		if err := p.Watermarks.Report(ctx, positions, time.Now()); err != nil {
			return time.Time{}, false, err
		}
		for _, pos := range positions {
			p.reported[watermark.Field(pos.Topic, pos.Partition)] = pos.MaxEventTime
		}
	}
	var required []string
	if p.Required != nil {
		var err error
		if required, err = p.Required(ctx); err != nil {
			return time.Time{}, false, err
		}
	}
	r, err := p.Watermarks.Read(ctx)
	if err != nil {
		return time.Time{}, false, err
	}
	// A partition with records that has not reported yet may hold the oldest events: nothing
	// goes until it has. If it is one of this consumer's, its records are still to be fetched.
	ownMissing, otherMissing := false, false
	for _, f := range required {
		if _, ok := r.Positions[f]; !ok {
			if p.own(f) {
				ownMissing = true
			} else {
				otherMissing = true
			}
		}
	}
	switch {
	case ownMissing || r.Holder == "":
		return time.Time{}, true, nil
	case otherMissing:
		return time.Time{}, false, nil
	}
	if p.Gate != nil {
		if gate, lead, ok := p.Gate(); ok && gate.Add(lead).Before(r.At.Add(p.Lead)) {
			// The days beyond wait for the sweeper to seal the next boundary, not for a
			// partition: stop fetching once that far past it, like any consumer ahead.
			return gate.Add(lead), false, nil
		}
	}
	return r.At.Add(p.Lead), p.own(r.Holder), nil
}

// own reports whether a watermark field names a partition of the consumer's own topics.
func (p *Pacer) own(field string) bool {
	i := strings.LastIndexByte(field, '/')
	return i > 0 && slices.Contains(p.Topics, field[:i])
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
	return EveryTick(ctx, h.Every, h.beat, h.Log, "watermark heartbeat failed; the watermark holds until it succeeds", "watermark heartbeat recovered")
}

// EveryTick runs step every interval until ctx ends, logging the first failure of a run of
// them (failed) and the success that ends it (recovered).
func EveryTick(ctx context.Context, every time.Duration, step func(context.Context) error, log *zap.Logger, failed, recovered string) error {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := step(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			log.Warn(failed, zap.Error(err))
		case err == nil && failing:
			failing = false
			log.Info(recovered)
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
