package loyaltyctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

func dlqCommand(out *cmdline.Output) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "the dead-letter topic: publish again the derived events Kafka refused",
		Args:  cmdline.Args(cobra.NoArgs),
	}
	var o republishOptions
	republish := &cobra.Command{
		Use:   "republish --since T",
		Short: "publish again, on their topics, the derived events the relay dead-lettered because Kafka refused them (code " + relay.CodeRefusedEvent + ")",
		Long: `A derived event Kafka refuses for good (over its topic's max.message.bytes, say) goes to the
dead-letter topic with code ` + relay.CodeRefusedEvent + `, so that it does not stall its outbox shard
(alert LoyaltyDerivedEventsRefused). Once the topic takes it (its limit raised), republish
publishes each such dead letter dead-lettered at or after --since on the topic it was meant for,
with its key, its value and an event_id header read from the value, as the relay would have.
Subscribers dedupe by event_id, so running it twice publishes repeats, not new events.
Dead letters whose value was cut to fit the dead-letter topic (value_truncated) cannot be
published again; they are listed and counted, and the command fails. --dry-run lists without
publishing.`,
		Args: cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.since == "" {
				return Usagef("--since: required (a time such as 2026-12-07T10:00:00Z)")
			}
			since, err := time.Parse(time.RFC3339, o.since)
			if err != nil {
				return Usagef("--since %q: want an RFC 3339 time such as 2026-12-07T10:00:00Z", o.since)
			}
			o.from = since
			return runRepublish(cmd.Context(), o, out, cmd.OutOrStdout())
		},
	}
	republish.Flags().StringVar(&o.since, "since", "", "republish what was dead-lettered at or after this time (RFC 3339)")
	republish.Flags().BoolVar(&o.dryRun, "dry-run", false, "list what would be published, publish nothing")
	cmd.AddCommand(republish)
	return cmd
}

type republishOptions struct {
	since  string
	from   time.Time
	dryRun bool
}

// republished is one dead letter republish handled.
type republished struct {
	Topic     string `json:"topic"`
	Key       string `json:"key"`
	EventID   string `json:"event_id,omitempty"`
	Bytes     int    `json:"bytes"`
	Published bool   `json:"published"`
	// Problem says why it was not published (a truncated or unreadable value).
	Problem string `json:"problem,omitempty"`
}

// errUnpublishable is returned when some refused events could not be published again.
var errUnpublishable = errors.New("some dead-lettered derived events cannot be published again")

func runRepublish(ctx context.Context, o republishOptions, out *cmdline.Output, stdout io.Writer) error {
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	c, err := env.codec(ctx)
	if err != nil {
		return err
	}
	admin, err := env.admin()
	if err != nil {
		return err
	}
	defer func() { _ = admin.Close() }()
	dlq := event.TopicDeadLetter + env.cfg.TopicSuffix
	from, err := admin.OffsetsForTime(ctx, dlq, o.from)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dlq, err)
	}
	ends, err := admin.EndOffsets(ctx, dlq)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dlq, err)
	}
	var results []republished
	var records []stream.Record
	for p, end := range ends {
		if from[p] >= end {
			continue
		}
		// Read as it arrives: only the refused events are kept, not the range.
		msgs, read := make(chan stream.Message, 256), make(chan error, 1)
		go func() {
			read <- admin.ReadRange(ctx, dlq, p, from[p], end, msgs)
			close(msgs)
		}()
		for m := range msgs {
			r, rec, ok := refusedEvent(ctx, c, m)
			if !ok {
				continue
			}
			if r.Problem == "" {
				records = append(records, rec)
			}
			results = append(results, r)
		}
		if err := <-read; err != nil {
			return fmt.Errorf("reading %s partition %d: %w", dlq, p, err)
		}
	}
	if !o.dryRun && len(records) > 0 {
		p, err := env.producer()
		if err != nil {
			return err
		}
		defer func() { _ = p.Close() }()
		if err := p.Produce(ctx, records...); err != nil {
			return fmt.Errorf("publishing %d dead-lettered derived events: %w", len(records), err)
		}
		for i := range results {
			results[i].Published = results[i].Problem == ""
		}
	}
	if err := writeRepublished(stdout, out, results, o.dryRun); err != nil {
		return err
	}
	for _, r := range results {
		if r.Problem != "" {
			return errUnpublishable
		}
	}
	return nil
}

// refusedEvent reads a dead-letter record: false for one that is not a refused derived event;
// otherwise what republish does with it and, when it can be published, its record.
func refusedEvent(ctx context.Context, c *codec.Codec, m stream.Message) (republished, stream.Record, bool) {
	ev, err := c.Decode(ctx, m.Value)
	if err != nil {
		return republished{}, stream.Record{}, false // not an envelope this command reads; consume shows it
	}
	dl, ok := ev.(event.DeadLetter)
	if !ok || dl.ErrorCode != relay.CodeRefusedEvent {
		return republished{}, stream.Record{}, false
	}
	r := republished{Topic: dl.SourceTopic, Key: string(dl.Key), Bytes: len(dl.Value)}
	switch {
	case dl.ValueTruncated:
		r.Problem = fmt.Sprintf("value cut to %d of its %d bytes to fit the dead-letter topic (SHA-256 %s)", len(dl.Value), dl.ValueSize, dl.ValueSHA256)
	case dl.KeyTruncated:
		r.Problem = "key cut to fit the dead-letter topic"
	default:
		derived, err := c.Decode(ctx, dl.Value)
		if err != nil {
			r.Problem = fmt.Sprintf("value unreadable: %v", err)
			break
		}
		if r.EventID = derivedEventID(derived); r.EventID == "" {
			r.Problem = fmt.Sprintf("a %s is not a derived event", derived.Schema())
		}
	}
	if r.Problem != "" {
		return r, stream.Record{}, true
	}
	return r, stream.Record{Topic: dl.SourceTopic, Key: dl.Key, Value: dl.Value,
		Headers: []stream.Header{{Key: relay.HeaderEventID, Value: []byte(r.EventID)}}}, true
}

// derivedEventID is the event id of a derived event, "" for any other event.
func derivedEventID(ev event.Event) string {
	switch e := ev.(type) {
	case event.TierChanged:
		return e.EventID
	case event.ChurnRiskChanged:
		return e.EventID
	case event.SegmentChanged:
		return e.EventID
	}
	return ""
}

func writeRepublished(w io.Writer, out *cmdline.Output, results []republished, dryRun bool) error {
	if out.JSON() {
		return cmdline.WriteJSON(w, results)
	}
	published, problems := 0, 0
	for _, r := range results {
		state := "published"
		switch {
		case r.Problem != "":
			state, problems = "NOT PUBLISHED: "+r.Problem, problems+1
		case dryRun:
			state = "would publish"
		default:
			published++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d bytes\t%s\n", r.Topic, r.Key, r.EventID, r.Bytes, state)
	}
	fmt.Fprintf(w, "%d refused derived events: %d published, %d cannot be\n", len(results), published, problems)
	return nil
}
