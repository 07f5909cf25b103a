package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/segmentio/kafka-go"
)

// Topics returns the names of the cluster's topics that contain fragment ("" for all), sorted;
// Kafka's internal topics (__consumer_offsets) are left out.
func (a *Admin) Topics(ctx context.Context, fragment string) ([]string, error) {
	var names []string
	err := a.retry(ctx, "listing topics", func(ctx context.Context) error {
		meta, err := a.api.Metadata(ctx, &kafka.MetadataRequest{}) // no topics named: all of them
		if err != nil {
			return fmt.Errorf("listing topics: %w", err)
		}
		names = names[:0]
		for _, t := range meta.Topics {
			if !t.Internal && t.Error == nil && strings.Contains(t.Name, fragment) {
				names = append(names, t.Name)
			}
		}
		return nil
	})
	slices.Sort(names)
	return names, err
}

// DeleteTopics deletes the topics and every record on them; a topic that does not exist is
// not an error. Transient errors are retried.
func (a *Admin) DeleteTopics(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	return a.retry(ctx, fmt.Sprintf("deleting topics %v", names), func(ctx context.Context) error {
		resp, err := a.api.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
		if err != nil {
			return fmt.Errorf("deleting topics: %w", err)
		}
		var errs []error
		for topic, terr := range resp.Errors {
			if terr != nil && !errors.Is(terr, kafka.UnknownTopicOrPartition) {
				errs = append(errs, fmt.Errorf("deleting topic %s: %w", topic, terr))
			}
		}
		return errors.Join(errs...)
	})
}

// DeleteTopicsContaining deletes the topics whose names contain fragment (Topics) and returns
// their names: a run's or a test's topics, named with its suffix.
func (a *Admin) DeleteTopicsContaining(ctx context.Context, fragment string) ([]string, error) {
	names, err := a.Topics(ctx, fragment)
	if err != nil {
		return nil, err
	}
	return names, a.DeleteTopics(ctx, names...)
}

// DeleteGroup deletes a consumer group and its committed offsets; a group that does not
// exist is not an error. A group with members is refused (kafka.NonEmptyGroup): stop them
// first.
func (a *Admin) DeleteGroup(ctx context.Context, group string) error {
	return a.retry(ctx, "deleting consumer group "+group, func(ctx context.Context) error {
		resp, err := a.api.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
		if err != nil {
			return fmt.Errorf("deleting consumer group %s: %w", group, err)
		}
		if gerr := resp.Errors[group]; gerr != nil && !errors.Is(gerr, kafka.GroupIdNotFound) {
			return fmt.Errorf("deleting consumer group %s: %w", group, gerr)
		}
		return nil
	})
}
