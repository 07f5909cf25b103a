package replay

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// ConsumerGroup is the consumer group of a live service on a namespace (wiring.RunConsumer's
// default naming).
func ConsumerGroup(ns, service string) string { return "loyalty-" + ns + "-" + service }

// Promote makes a finished replay namespace the live one. It places the namespace's service
// consumer groups where the replay stopped (so they continue with what arrived since), then
// switches the active-namespace pointer in one SET. Running services notice within seconds,
// drain and exit with namespace.ExitPromoted; their supervisor restarts them on the new
// namespace (a rolling restart). The old namespace is kept until Drop. admin places the
// groups on the input topics topics names.
//
// Before the switch it waits, up to catchUp, until the live namespace's consumers have
// committed everything the replay applied. The promoted namespace continues from where the
// replay stopped, and the replay's derived events went to its shadow topics only: a record the
// live consumers had not yet processed when the replay read it would otherwise have its
// derived events and dead letter published nowhere live (a lagging consumer, a broker outage
// just before the promote). Waiting, the live consumers publish them; records they process
// after the replay's end are processed again on the promoted namespace, and their derived
// events repeat with the same ids. A live service that never committed on a topic is not
// waited for; catchUp 0 promotes without waiting, leaving such events on the shadow topics.
func Promote(ctx context.Context, rt Namespace, deployment keyspace.Deployment, admin *stream.Admin, topics Topics, fallbackLive string, catchUp time.Duration) (previous string, err error) {
	meta, ok, err := LoadMetadata(ctx, rt)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("namespace %s is not a replay namespace", rt.Keys.Namespace())
	}
	if meta.Status != "done" {
		return "", fmt.Errorf("the replay into %s has not finished (status %s); run it again to resume", rt.Keys.Namespace(), meta.Status)
	}
	previous, err = namespace.ActiveNamespace(ctx, rt.Redis, deployment, fallbackLive)
	if err != nil {
		return "", err
	}
	if previous == rt.Keys.Namespace() {
		return previous, fmt.Errorf("namespace %s is already live", previous)
	}
	placed := map[string]stream.Offsets{}
	for _, input := range event.InputStreams() {
		logical := input.Topic
		pos, err := admin.GroupOffsets(ctx, Group(rt.Keys.Namespace()), topics.Physical(logical))
		if err != nil {
			return "", err
		}
		if len(pos) == 0 {
			// Nothing replayed on this topic: start where the replay's range ended.
			pos = meta.Ends[logical]
		}
		placed[logical] = pos
	}
	if catchUp > 0 {
		if err := waitForLive(ctx, admin, previous, topics, placed, catchUp); err != nil {
			return "", err
		}
	}
	for _, input := range event.InputStreams() {
		group := ConsumerGroup(rt.Keys.Namespace(), input.Service)
		if err := admin.CommitGroupOffsets(ctx, group, topics.Physical(input.Topic), placed[input.Topic]); err != nil {
			return "", fmt.Errorf("placing group %s: %w", group, err)
		}
	}
	// The promoted namespace's relay publishes on the live topics from now on; entries still in
	// its outbox were derived by the replay and stay on the shadow topics' side: drop them.
	if err := namespace.DropOutboxes(ctx, rt.Redis, rt.Keys); err != nil {
		return "", err
	}
	if err := namespace.Activate(ctx, rt.Redis, deployment, previous, rt.Keys.Namespace()); err != nil {
		return "", err
	}
	return previous, nil
}

// waitForLive waits until the consumer groups of the live namespace have committed at least
// the positions the replay reached (placed, per logical input topic), or fails after timeout
// naming the partitions behind.
func waitForLive(ctx context.Context, admin *stream.Admin, live string, topics Topics, placed map[string]stream.Offsets, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var behind []string
		for _, input := range event.InputStreams() {
			topic := topics.Physical(input.Topic)
			committed, err := admin.GroupOffsets(ctx, ConsumerGroup(live, input.Service), topic)
			if err != nil {
				return err
			}
			if len(committed) == 0 {
				continue // the service never ran on the live namespace: nothing of it to wait for
			}
			for p, want := range placed[input.Topic] {
				if committed[p] < want {
					behind = append(behind, fmt.Sprintf("%s/%d at %d of %d", topic, p, committed[p], want))
				}
			}
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(behind)
			return fmt.Errorf("the live namespace %s has not processed every record the replay applied after %s (%s): its consumers must catch up first, or the derived events of those records reach only the shadow topics; promote again once they have, or with a catch-up timeout of 0 to accept that",
				live, timeout, strings.Join(behind, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Drop deletes every key of a namespace that is not live. It returns the number of keys
// deleted.
func Drop(ctx context.Context, rt Namespace, deployment keyspace.Deployment, fallbackLive string) (int64, error) {
	active, err := namespace.ActiveNamespace(ctx, rt.Redis, deployment, fallbackLive)
	if err != nil {
		return 0, err
	}
	if active == rt.Keys.Namespace() {
		return 0, fmt.Errorf("namespace %s is live; promote another one first", active)
	}
	deleted, err := namespace.DeleteKeys(ctx, rt.Redis, rt.Keys)
	if err != nil {
		return deleted, err
	}
	if err := namespace.Forget(ctx, rt.Redis, deployment, rt.Keys.Namespace()); err != nil {
		return deleted, err
	}
	return deleted, namespace.Unregister(ctx, rt.Redis, deployment, rt.Keys.Namespace())
}

// DropOutputs deletes what a replay into namespace ns left on Kafka: its shadow topics and its
// consumer group (Group), which only that replay reads. It returns the shadow topics it
// deleted; a namespace that never replayed with shadow outputs has none, which is not an
// error. Run it after Drop: a live namespace keeps its group and topics.
func DropOutputs(ctx context.Context, admin *stream.Admin, topics Topics, ns string) ([]string, error) {
	shadow := shadowTopics(topics, ns)
	existing, err := admin.Topics(ctx, ".replay."+ns)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, name := range existing {
		if slices.Contains(shadow, name) {
			deleted = append(deleted, name)
		}
	}
	if err := admin.DeleteTopics(ctx, deleted...); err != nil {
		return nil, fmt.Errorf("deleting the shadow topics of namespace %s: %w", ns, err)
	}
	if err := admin.DeleteGroup(ctx, Group(ns)); err != nil {
		return deleted, fmt.Errorf("deleting the replay's consumer group: %w", err)
	}
	return deleted, nil
}

// shadowTopics names the shadow topics of a replay into namespace ns: one per derived topic
// and the dead-letter topic's.
func shadowTopics(topics Topics, ns string) []string {
	var names []string
	for _, t := range append(event.DerivedTopics(), event.TopicDeadLetter) {
		names = append(names, ShadowTopic(topics.Physical(t), ns))
	}
	return names
}
