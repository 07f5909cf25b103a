package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// A quarantined customer can be released "after a replay of that customer": an operator
// replays the input topics into a new namespace (Run), and Rebuild then puts the customer's
// replayed state in place of its tombstone in the live namespace, brought up to date with the
// customer's records that arrived after the replay's range. Those records were turned away
// while the customer was quarantined; Rebuild applies them, in the replay's merge order, as a
// lagging consumer would (days closed at the live watermark first), and their derived events
// go to the live outbox. The rebuild is exact against records arriving meanwhile: each record
// the live pipeline turns away bumps the tombstone (state.QuarantineMarkField), and the write
// succeeds only on the tombstone the records were chosen against; otherwise Rebuild reads the
// new records and tries again. A record it applied that the live pipeline has yet to read is
// then skipped by the live pipeline as a repeat of its event id.

// RebuildSummary is what Rebuild reports.
type RebuildSummary struct {
	Customer string `json:"customer"`
	// Replay is the namespace the state came from, and Replayed whether it had the customer.
	Replay   string `json:"replay_namespace"`
	Replayed bool   `json:"replayed"`
	// Applied and Rejected count the later records applied and refused.
	Applied  int `json:"applied"`
	Rejected int `json:"rejected"`
	// Derived counts the derived events of the later records, sent to the live outbox.
	Derived  int `json:"derived"`
	Attempts int `json:"attempts"`
}

// ErrReplayNotUsable is Rebuild's error for a namespace that is not a finished, caught-up
// replay under the live policy.
var ErrReplayNotUsable = errors.New("the namespace cannot rebuild the customer")

// Rebuild ends the quarantine of customer id in the live namespace (live: its Redis, keys,
// admin, codec, policy and topics) with the customer's state from the replay namespace
// replayed. The replay must be finished, must have run up to "now" (no --to) and under the
// live policy.
func Rebuild(ctx context.Context, live Target, replayed Namespace, id string) (RebuildSummary, error) {
	sum := RebuildSummary{Customer: id, Replay: replayed.Keys.Namespace()}
	meta, err := usableReplay(ctx, live, replayed)
	if err != nil {
		return sum, err
	}
	if erased, err := namespace.NewSuppressor(live.Redis, live.Deployment).Suppressed(ctx, []string{id}); err != nil {
		return sum, err
	} else if erased[id] {
		return sum, fmt.Errorf("customer %s was erased: there is nothing to rebuild", id)
	}
	from, err := state.New(ctx, replayed.Redis, replayed.Keys, nil)
	if err != nil {
		return sum, err
	}
	replayedState, err := from.Current(ctx, id)
	switch {
	case errors.Is(err, state.ErrNotFound):
		replayedState = state.Current{}
	case err != nil:
		return sum, err
	}
	if _, quarantined := replayedState.Tombstone(); quarantined {
		return sum, fmt.Errorf("%w: customer %s is quarantined in %s too", ErrReplayNotUsable, id, replayed.Keys.Namespace())
	}
	sum.Replayed = !replayedState.Empty()

	store, err := state.New(ctx, live.Redis, live.Keys, nil)
	if err != nil {
		return sum, err
	}
	wm, err := live.watermarks(ctx)
	if err != nil {
		return sum, err
	}
	scorer := pipeline.NewScorer(live.Policy, live.Codec, false)
	watch := pipeline.CutpointWatch{Redis: live.Redis, Keys: live.Keys, Scorer: scorer, Log: live.Log}
	if err := watch.Load(ctx); err != nil {
		return sum, err
	}
	for sum.Attempts = 1; ; sum.Attempts++ {
		if sum.Attempts > 10 {
			return sum, fmt.Errorf("customer %s kept receiving records during the rebuild; try again", id)
		}
		tomb, err := store.Current(ctx, id)
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return sum, err
		}
		if _, ok := tomb.Tombstone(); !ok {
			return sum, fmt.Errorf("%w: %s", state.ErrNotQuarantined, id)
		}
		records, batch, err := laterRecords(ctx, live, meta, id, scorer)
		if err != nil {
			return sum, err
		}
		clock, err := liveClock(ctx, live, wm)
		if err != nil {
			return sum, err
		}
		var derived int
		compute := scorer.RebuildCompute(replayedState, tomb.Fields[state.QuarantineMarkField], records, clock)
		res, err := store.Apply(ctx, []string{id}, func(id string, cur state.Current) (state.Update, error) {
			u, err := compute(id, cur)
			derived = len(u.Outbox)
			return u, err
		})
		if errors.Is(err, pipeline.ErrTombstoneMoved) {
			continue
		}
		if err != nil {
			return sum, err
		}
		if res.Written != 1 {
			return sum, fmt.Errorf("rebuilding %s: the state was not written", id)
		}
		sum.Rejected = len(batch.Rejections())
		sum.Applied, sum.Derived = len(batch.Messages)-sum.Rejected, derived
		return sum, state.ForgetQuarantine(ctx, live.Redis, live.Keys, id)
	}
}

// usableReplay checks that replayed is a finished replay up to "now" under the live policy.
func usableReplay(ctx context.Context, live Target, replayed Namespace) (Metadata, error) {
	ns := replayed.Keys.Namespace()
	if ns == live.Keys.Namespace() {
		return Metadata{}, fmt.Errorf("%w: %s is the live namespace", ErrReplayNotUsable, ns)
	}
	meta, ok, err := LoadMetadata(ctx, replayed)
	switch {
	case err != nil:
		return Metadata{}, err
	case !ok:
		return Metadata{}, fmt.Errorf("%w: %s is not a replay namespace (loyaltyctl replay --namespace %s)", ErrReplayNotUsable, ns, ns)
	case meta.Status != "done":
		return Metadata{}, fmt.Errorf("%w: the replay into %s has not finished; run it again to resume it", ErrReplayNotUsable, ns)
	case !meta.To.IsZero():
		return Metadata{}, fmt.Errorf("%w: the replay into %s ends at --to %s, so the records after it would be missing", ErrReplayNotUsable, ns, meta.To.Format(time.RFC3339))
	}
	policyYAML, _, err := namespace.StoredPolicy(ctx, live.Redis, live.Keys)
	if err != nil {
		return Metadata{}, err
	}
	hash := sha256.Sum256(policyYAML)
	if hex.EncodeToString(hash[:8]) != meta.PolicyHash {
		return Metadata{}, fmt.Errorf("%w: the replay into %s ran under another policy than live's", ErrReplayNotUsable, ns)
	}
	return meta, nil
}

// NonEmptyInputPartitions lists the watermark fields of the input partitions holding
// records: the partitions a namespace's clock waits for.
func NonEmptyInputPartitions(ctx context.Context, admin *stream.Admin, topics Topics) ([]string, error) {
	var out []string
	for _, logical := range event.InputTopics() {
		topic := topics.Physical(logical)
		first, err := admin.OffsetsForTime(ctx, topic, time.Time{})
		if err != nil {
			return nil, err
		}
		ends, err := admin.EndOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		for p, end := range ends {
			if end > first[p] {
				out = append(out, watermark.Field(topic, p))
			}
		}
	}
	return out, nil
}

// liveClock reads the live watermark over the input partitions holding records (zero when
// not all of them have reported yet: no day is closed, as a consumer would do).
func liveClock(ctx context.Context, live Target, wm *watermark.Tracker) (time.Time, error) {
	required, err := NonEmptyInputPartitions(ctx, live.Admin, live.Topics)
	if err != nil {
		return time.Time{}, err
	}
	at, known, err := wm.Clock(ctx, required...)
	if err != nil || !known {
		return time.Time{}, err
	}
	return at, nil
}

// laterRecords reads the customer's records after the replay's range up to the current end of
// each input topic, from the partition its key maps to, merged in the replay's order (merging
// whole partitions and then keeping the customer's records gives the order a full replay
// gives them), decoded and validated; it returns the valid ones and the batch of them all,
// which holds the rejections.
func laterRecords(ctx context.Context, live Target, meta Metadata, id string, scorer *pipeline.Scorer) ([]ingest.Record, *stream.Batch, error) {
	readCtx, stop := context.WithCancel(ctx)
	defer stop()
	readErr := make(chan error, len(event.InputTopics()))
	var sources []*source
	for _, logical := range event.InputTopics() {
		topic := live.Topics.Physical(logical)
		ends, err := live.Admin.EndOffsets(ctx, topic)
		if err != nil {
			return nil, nil, err
		}
		p := stream.PartitionOf([]byte(id), len(ends))
		s := &source{topic: topic, partition: p, next: meta.Ends[logical][p], end: ends[p], ch: make(chan stream.Message, 1000)}
		sources = append(sources, s)
		go func() {
			defer close(s.ch)
			if err := live.Admin.ReadRange(readCtx, s.topic, s.partition, s.next, s.end, s.ch); err != nil && readCtx.Err() == nil {
				readErr <- err
			}
		}()
	}
	m := &merger{sources: sources, timeOf: pipeline.InputTime(ctx, live.Codec)}
	var mine []stream.Message
	for {
		select {
		case err := <-readErr:
			return nil, nil, err
		default:
		}
		msgs, err := m.next(ctx, 1000)
		if err != nil {
			return nil, nil, err
		}
		if len(msgs) == 0 {
			break
		}
		for _, msg := range msgs {
			if string(msg.Key) == id {
				mine = append(mine, msg)
			}
		}
	}
	validator, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		return nil, nil, err
	}
	var valid []ingest.Record
	capture := ingest.RecordsHandlerFunc(func(_ context.Context, _ *stream.Batch, records []ingest.Record) error {
		policy := scorer.Policy()
		for _, r := range records {
			if err := pipeline.ScoringEvent(r).Validate(policy); err != nil {
				r.Reject("invalid", err)
				continue
			}
			valid = append(valid, r)
		}
		return nil
	})
	b := stream.NewBatch(mine)
	// As the consumers handle a batch, without the dead-letter step: the live pipeline
	// dead-lettered these records when it turned them away.
	h := stream.Chain(ingest.Handler(live.Codec, validator, live.Topics.Logical, capture), stream.Recover(), stream.Oversize(ingest.MaxRecordBytes))
	if err := h.HandleBatch(ctx, b); err != nil {
		return nil, nil, err
	}
	return valid, b, nil
}
