package stream_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// newAdmin returns an Admin of brokers closed when the test ends.
func newAdmin(t testing.TB, brokers []string) *stream.Admin {
	t.Helper()
	a, err := stream.NewAdmin(brokers, stream.Security{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// A topic created on a real Kafka 4.x broker started seconds before is usable at once: its
// partitions answer ListOffsets with NOT_LEADER_OR_FOLLOWER until their leaders are elected,
// which the Admin retries (bench-e2e failed here every time before it did).
func TestAdminOffsetsOfATopicJustCreatedOnAFreshBroker(t *testing.T) {
	brokers := testinfra.RealKafkaBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := newAdmin(t, brokers)
	for i := range 3 {
		topic := testinfra.Name("admin-fresh")
		if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 4, ReplicationFactor: 1}); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		ends, err := admin.EndOffsets(ctx, topic)
		if err != nil {
			t.Fatalf("round %d: EndOffsets right after creation: %v", i, err)
		}
		starts, err := admin.OffsetsForTime(ctx, topic, time.Time{})
		if err != nil {
			t.Fatalf("round %d: OffsetsForTime(zero) right after creation: %v", i, err)
		}
		at, err := admin.OffsetsForTime(ctx, topic, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatalf("round %d: OffsetsForTime right after creation: %v", i, err)
		}
		n, err := admin.PartitionCount(ctx, topic)
		if err != nil || n != 4 {
			t.Fatalf("round %d: PartitionCount = %d, %v; want 4", i, n, err)
		}
		for p := range 4 {
			if ends[p] != 0 || starts[p] != 0 || at[p] != 0 {
				t.Fatalf("round %d: partition %d of an empty topic: end %d, start %d, at %d; want 0s", i, p, ends[p], starts[p], at[p])
			}
		}
		// A second Admin, as another process would have, sees the topic too.
		other := newAdmin(t, brokers)
		if ends, err := other.EndOffsets(ctx, topic); err != nil || len(ends) != 4 {
			t.Fatalf("round %d: another Admin's EndOffsets = %v, %v", i, ends, err)
		}
		if offs, err := other.GroupOffsets(ctx, testinfra.Name("admin-group"), topic); err != nil || len(offs) != 0 {
			t.Fatalf("round %d: GroupOffsets of a new group = %v, %v; want none", i, offs, err)
		}
	}
}

// The Admin's methods work against the in-process broker the other tests use too, and
// CommitGroupOffsets is read back by GroupOffsets.
func TestAdminCommitsAndReadsGroupOffsets(t *testing.T) {
	brokers := testinfra.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := newAdmin(t, brokers)
	topic, group := testinfra.Name("admin-commit"), testinfra.Name("admin-commit-g")
	if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if err := admin.CommitGroupOffsets(ctx, group, topic, stream.Offsets{0: 0, 1: 0}); err != nil {
		t.Fatal(err)
	}
	got, err := admin.GroupOffsets(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 0 {
		t.Fatalf("GroupOffsets = %v, want {0:0 1:0}", got)
	}
}

// Topics are created with the retention their spec asks for, read back with TopicRetention:
// a duration, infinite, or the broker's default when the spec leaves it unset.
func TestTopicsAreCreatedWithTheirRetention(t *testing.T) {
	brokers := testinfra.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := newAdmin(t, brokers)
	long, forever, unset := testinfra.Name("ret-long"), testinfra.Name("ret-forever"), testinfra.Name("ret-unset")
	if err := admin.EnsureTopics(ctx,
		stream.TopicSpec{Name: long, Partitions: 1, ReplicationFactor: 1, Retention: 400 * 24 * time.Hour},
		stream.TopicSpec{Name: forever, Partitions: 1, ReplicationFactor: 1, Retention: stream.RetentionInfinite},
		stream.TopicSpec{Name: unset, Partitions: 1, ReplicationFactor: 1},
	); err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]time.Duration{long: 400 * 24 * time.Hour, forever: stream.RetentionInfinite} {
		if got, err := admin.TopicRetention(ctx, topic); err != nil || got != want {
			t.Errorf("%s: retention %v, %v; want %v", topic, got, err, want)
		}
	}
	if got, err := admin.TopicRetention(ctx, unset); err != nil || got == 400*24*time.Hour || got == stream.RetentionInfinite {
		t.Errorf("%s: retention %v, %v; want the broker's default", unset, got, err)
	}
	err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: testinfra.Name("ret-twice"), Partitions: 1, ReplicationFactor: 1,
		Config: map[string]string{"retention.ms": "1"}})
	if err == nil {
		t.Error("retention.ms in Config was accepted next to Retention")
	}
}

// Topics lists the topics whose names contain a fragment; DeleteTopics deletes them, and
// DeleteGroup a group's offsets; neither minds what is already gone.
func TestAdminListsAndDeletesTopicsAndGroups(t *testing.T) {
	brokers := testinfra.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := newAdmin(t, brokers)
	fragment := "." + testinfra.Name("admin-del")
	kept := testinfra.Name("admin-kept")
	mine := []string{"a" + fragment, "b" + fragment + ".replay.x"}
	for _, name := range append(mine, kept) {
		if err := admin.EnsureTopics(ctx, stream.TopicSpec{Name: name, Partitions: 1, ReplicationFactor: 1}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := admin.Topics(ctx, fragment)
	if err != nil || !slices.Equal(got, mine) {
		t.Fatalf("Topics(%q) = %v, %v; want %v", fragment, got, err, mine)
	}

	group := testinfra.Name("admin-del-g")
	if err := admin.CommitGroupOffsets(ctx, group, kept, stream.Offsets{0: 0}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time the group is gone already
		if err := admin.DeleteGroup(ctx, group); err != nil {
			t.Fatal(err)
		}
	}
	if offs, err := admin.GroupOffsets(ctx, group, kept); err != nil || len(offs) != 0 {
		t.Fatalf("the deleted group still has offsets %v (%v)", offs, err)
	}

	if err := admin.DeleteTopics(ctx, append(mine, "never-created"+fragment)...); err != nil {
		t.Fatal(err)
	}
	testinfra.WaitTopicsGone(t, admin, fragment)
	if all, err := admin.Topics(ctx, ""); err != nil || !slices.Contains(all, kept) || slices.Contains(all, "__consumer_offsets") {
		t.Fatalf("Topics(\"\") = %d topics (%v): want %s among them and no internal topic", len(all), err, kept)
	}
	if err := admin.DeleteTopics(ctx, kept); err != nil {
		t.Fatal(err)
	}
}
