package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"
)

// fakeAPI answers the Admin's requests from scripted errors: each call of a kind takes the
// next scripted error (nil once the script runs out) and answers with it, at the top level
// or inside the response as the script says.
type fakeAPI struct {
	mu         sync.Mutex
	partitions int
	script     map[string][]fakeErr // by request kind
	calls      map[string]int
}

// fakeErr is one scripted answer: err at the top level of the call, or in the response for
// partition (or topic) inner.
type fakeErr struct {
	err       error
	partition int
	inner     bool
}

func newFakeAPI(partitions int) *fakeAPI {
	return &fakeAPI{partitions: partitions, script: map[string][]fakeErr{}, calls: map[string]int{}}
}

func (f *fakeAPI) fail(kind string, errs ...fakeErr) {
	f.script[kind] = append(f.script[kind], errs...)
}

func (f *fakeAPI) next(kind string) fakeErr {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[kind]++
	if len(f.script[kind]) == 0 {
		return fakeErr{}
	}
	e := f.script[kind][0]
	f.script[kind] = f.script[kind][1:]
	return e
}

func (f *fakeAPI) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[kind]
}

func (f *fakeAPI) Metadata(_ context.Context, req *kafka.MetadataRequest) (*kafka.MetadataResponse, error) {
	e := f.next("metadata")
	if e.err != nil && !e.inner {
		return nil, e.err
	}
	resp := &kafka.MetadataResponse{}
	for _, name := range req.Topics {
		t := kafka.Topic{Name: name, Partitions: make([]kafka.Partition, f.partitions)}
		if e.inner {
			t.Error = e.err
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func (f *fakeAPI) ListOffsets(_ context.Context, req *kafka.ListOffsetsRequest) (*kafka.ListOffsetsResponse, error) {
	e := f.next("listoffsets")
	if e.err != nil && !e.inner {
		return nil, e.err
	}
	resp := &kafka.ListOffsetsResponse{Topics: map[string][]kafka.PartitionOffsets{}}
	for topic, reqs := range req.Topics {
		for _, r := range reqs {
			po := kafka.PartitionOffsets{Partition: r.Partition, FirstOffset: 10, LastOffset: 100 + int64(r.Partition),
				Offsets: map[int64]time.Time{50: {}}}
			if e.inner && e.partition == r.Partition {
				po.Error = e.err
			}
			resp.Topics[topic] = append(resp.Topics[topic], po)
		}
	}
	return resp, nil
}

func (f *fakeAPI) OffsetFetch(_ context.Context, req *kafka.OffsetFetchRequest) (*kafka.OffsetFetchResponse, error) {
	e := f.next("offsetfetch")
	if e.err != nil && !e.inner {
		return nil, e.err
	}
	resp := &kafka.OffsetFetchResponse{Topics: map[string][]kafka.OffsetFetchPartition{}}
	for topic, parts := range req.Topics {
		for _, p := range parts {
			fp := kafka.OffsetFetchPartition{Partition: p, CommittedOffset: 7}
			if e.inner && e.partition == p {
				fp.Error = e.err
			}
			resp.Topics[topic] = append(resp.Topics[topic], fp)
		}
	}
	return resp, nil
}

func (f *fakeAPI) OffsetCommit(_ context.Context, req *kafka.OffsetCommitRequest) (*kafka.OffsetCommitResponse, error) {
	e := f.next("offsetcommit")
	if e.err != nil && !e.inner {
		return nil, e.err
	}
	resp := &kafka.OffsetCommitResponse{Topics: map[string][]kafka.OffsetCommitPartition{}}
	for topic, commits := range req.Topics {
		for _, c := range commits {
			cp := kafka.OffsetCommitPartition{Partition: c.Partition}
			if e.inner && e.partition == c.Partition {
				cp.Error = e.err
			}
			resp.Topics[topic] = append(resp.Topics[topic], cp)
		}
	}
	return resp, nil
}

func (f *fakeAPI) CreateTopics(_ context.Context, req *kafka.CreateTopicsRequest) (*kafka.CreateTopicsResponse, error) {
	e := f.next("createtopics")
	if e.err != nil && !e.inner {
		return nil, e.err
	}
	resp := &kafka.CreateTopicsResponse{Errors: map[string]error{}}
	for i, t := range req.Topics {
		resp.Errors[t.Topic] = nil
		if e.inner && e.partition == i {
			resp.Errors[t.Topic] = e.err
		}
	}
	return resp, nil
}

func (f *fakeAPI) DeleteTopics(_ context.Context, req *kafka.DeleteTopicsRequest) (*kafka.DeleteTopicsResponse, error) {
	e := f.next("deletetopics")
	if e.err != nil && !e.inner {
		return nil, e.err
	}
	resp := &kafka.DeleteTopicsResponse{Errors: map[string]error{}}
	for i, name := range req.Topics {
		resp.Errors[name] = nil
		if e.inner && e.partition == i {
			resp.Errors[name] = e.err
		}
	}
	return resp, nil
}

func (f *fakeAPI) DeleteGroups(_ context.Context, req *kafka.DeleteGroupsRequest) (*kafka.DeleteGroupsResponse, error) {
	e := f.next("deletegroups")
	if e.err != nil && !e.inner {
		return nil, e.err
	}
	resp := &kafka.DeleteGroupsResponse{Errors: map[string]error{}}
	for _, g := range req.GroupIDs {
		resp.Errors[g] = nil
		if e.inner {
			resp.Errors[g] = e.err
		}
	}
	return resp, nil
}

// DescribeConfigs answers every resource with a retention.ms of seven days.
func (f *fakeAPI) DescribeConfigs(_ context.Context, req *kafka.DescribeConfigsRequest) (*kafka.DescribeConfigsResponse, error) {
	e := f.next("describeconfigs")
	if e.err != nil && !e.inner {
		return nil, e.err
	}
	resp := &kafka.DescribeConfigsResponse{}
	for i, r := range req.Resources {
		res := kafka.DescribeConfigResponseResource{ResourceName: r.ResourceName,
			ConfigEntries: []kafka.DescribeConfigResponseConfigEntry{{ConfigName: "retention.ms", ConfigValue: "604800000"}}}
		if e.inner && e.partition == i {
			res.Error = e.err
		}
		resp.Resources = append(resp.Resources, res)
	}
	return resp, nil
}

// fastPolicy keeps the tests quick: waits of 1, 2, 4, 5, 5… ms, giving up after 200 ms.
func fastPolicy() RetryPolicy {
	return RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Total: 200 * time.Millisecond}
}

func testAdmin(t *testing.T, f *fakeAPI, p RetryPolicy) *Admin {
	return newAdmin(f, nil, []string{"fake:9092"}, nil, zaptest.NewLogger(t), WithRetryPolicy(p))
}

func TestRetriableClassifiesKafkaAndNetworkErrors(t *testing.T) {
	for _, err := range []error{
		kafka.NotLeaderForPartition, kafka.LeaderNotAvailable, kafka.UnknownTopicOrPartition,
		kafka.GroupLoadInProgress, kafka.GroupCoordinatorNotAvailable, kafka.NotCoordinatorForGroup,
		kafka.RequestTimedOut, kafka.NotController, kafka.NetworkException,
		fmt.Errorf("listing offsets of t/2: %w", kafka.NotLeaderForPartition),
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
		fmt.Errorf("kafka.(*Client).ListOffsets: %w", syscall.ECONNRESET),
		io.EOF, io.ErrUnexpectedEOF,
		fmt.Errorf("per-call timeout: %w", context.DeadlineExceeded),
		errors.Join(fmt.Errorf("creating topic a: %w", kafka.LeaderNotAvailable)),
	} {
		if !Retriable(err) {
			t.Errorf("Retriable(%v) = false, want true", err)
		}
	}
	for _, err := range []error{
		nil, context.Canceled, errors.New("something else"),
		kafka.TopicAuthorizationFailed, kafka.GroupAuthorizationFailed, kafka.InvalidReplicationFactor,
		kafka.InvalidPartitionNumber, kafka.IllegalGeneration, kafka.RebalanceInProgress, kafka.InvalidMessage,
		kafka.SASLAuthenticationFailed,
		fmt.Errorf("group g: %w (%w)", ErrGroupActive, kafka.UnknownMemberId),
	} {
		if Retriable(err) {
			t.Errorf("Retriable(%v) = true, want false", err)
		}
	}
}

func TestBackoffDoublesUpToItsCap(t *testing.T) {
	p := RetryPolicy{Initial: 100 * time.Millisecond, Max: time.Second, Total: 30 * time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if got := p.backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w*time.Millisecond)
		}
	}
	if got := p.backoff(1000); got != time.Second {
		t.Errorf("backoff(1000) = %s, want the cap", got)
	}
	d := RetryPolicy{}.withDefaults()
	if d != DefaultRetryPolicy() || d.Total != 30*time.Second {
		t.Errorf("zero policy = %+v, want the defaults with 30s in all", d)
	}
}

// The bug of bench-e2e: ListOffsets right after topic creation answers one partition with
// NOT_LEADER_OR_FOLLOWER inside an otherwise successful response.
func TestEndOffsetsRetriesAPartitionsNotLeaderError(t *testing.T) {
	f := newFakeAPI(4)
	f.fail("listoffsets", fakeErr{err: kafka.NotLeaderForPartition, partition: 2, inner: true},
		fakeErr{err: kafka.LeaderNotAvailable, partition: 3, inner: true})
	got, err := testAdmin(t, f, fastPolicy()).EndOffsets(context.Background(), "t")
	if err != nil {
		t.Fatalf("EndOffsets: %v", err)
	}
	if f.count("listoffsets") != 3 {
		t.Errorf("ListOffsets calls = %d, want 3", f.count("listoffsets"))
	}
	for p := range 4 {
		if got[p] != 100+int64(p) {
			t.Errorf("end of partition %d = %d, want %d", p, got[p], 100+p)
		}
	}
}

func TestEveryOperationRetriesItsTransientErrors(t *testing.T) {
	ctx := context.Background()
	netErr := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	cases := []struct {
		name string
		kind string
		errs []fakeErr
		op   func(a *Admin) error
	}{
		{"PartitionCount, topic not yet in metadata", "metadata", []fakeErr{{err: kafka.UnknownTopicOrPartition, inner: true}, {err: netErr}},
			func(a *Admin) error {
				n, err := a.PartitionCount(ctx, "t")
				if err == nil && n != 4 {
					return fmt.Errorf("PartitionCount = %d, want 4", n)
				}
				return err
			}},
		{"OffsetsForTime zero", "listoffsets", []fakeErr{{err: kafka.RequestTimedOut}, {err: kafka.NotLeaderForPartition, partition: 0, inner: true}},
			func(a *Admin) error {
				offs, err := a.OffsetsForTime(ctx, "t", time.Time{})
				if err == nil && offs[3] != 10 {
					return fmt.Errorf("start of 3 = %d, want 10", offs[3])
				}
				return err
			}},
		{"OffsetsForTime at a time", "listoffsets", []fakeErr{{err: kafka.UnknownTopicOrPartition, partition: 1, inner: true}},
			func(a *Admin) error {
				offs, err := a.OffsetsForTime(ctx, "t", time.Unix(1000, 0))
				if err == nil && offs[1] != 50 {
					return fmt.Errorf("offset of 1 = %d, want 50", offs[1])
				}
				return err
			}},
		{"GroupOffsets, coordinator loading", "offsetfetch", []fakeErr{{err: kafka.GroupLoadInProgress}, {err: kafka.NotCoordinatorForGroup},
			{err: kafka.UnstableOffsetCommit, partition: 2, inner: true}},
			func(a *Admin) error {
				offs, err := a.GroupOffsets(ctx, "g", "t")
				if err == nil && (len(offs) != 4 || offs[2] != 7) {
					return fmt.Errorf("GroupOffsets = %v, want 7s", offs)
				}
				return err
			}},
		{"CommitGroupOffsets, coordinator moving", "offsetcommit", []fakeErr{{err: kafka.GroupCoordinatorNotAvailable, partition: 0, inner: true},
			{err: kafka.NotCoordinatorForGroup, partition: 1, inner: true}, {err: netErr}},
			func(a *Admin) error { return a.CommitGroupOffsets(ctx, "g", "t", Offsets{0: 1, 1: 2}) }},
		{"EnsureTopics, no controller yet", "createtopics", []fakeErr{{err: kafka.NotController}, {err: kafka.LeaderNotAvailable, partition: 1, inner: true}},
			func(a *Admin) error {
				return a.EnsureTopics(ctx, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 1}, TopicSpec{Name: "b", Partitions: 1, ReplicationFactor: 1})
			}},
		{"DeleteTopics, no controller yet", "deletetopics", []fakeErr{{err: kafka.NotController}, {err: kafka.RequestTimedOut, partition: 1, inner: true}},
			func(a *Admin) error { return a.DeleteTopics(ctx, "a", "b") }},
		{"DeleteGroup, coordinator loading", "deletegroups", []fakeErr{{err: kafka.GroupLoadInProgress, inner: true}, {err: netErr}},
			func(a *Admin) error { return a.DeleteGroup(ctx, "g") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeAPI(4)
			f.fail(c.kind, c.errs...)
			if err := c.op(testAdmin(t, f, fastPolicy())); err != nil {
				t.Fatal(err)
			}
			if got, want := f.count(c.kind), len(c.errs)+1; got < want {
				t.Errorf("%s calls = %d, want at least %d", c.kind, got, want)
			}
		})
	}
}

func TestNonRetriableErrorsFailAtOnce(t *testing.T) {
	ctx := context.Background()
	f := newFakeAPI(2)
	f.fail("listoffsets", fakeErr{err: kafka.TopicAuthorizationFailed, partition: 1, inner: true})
	_, err := testAdmin(t, f, fastPolicy()).EndOffsets(ctx, "t")
	if !errors.Is(err, kafka.TopicAuthorizationFailed) || f.count("listoffsets") != 1 {
		t.Errorf("EndOffsets = %v after %d calls, want TopicAuthorizationFailed after 1", err, f.count("listoffsets"))
	}

	f = newFakeAPI(2)
	f.fail("offsetcommit", fakeErr{err: kafka.RebalanceInProgress, partition: 0, inner: true})
	err = testAdmin(t, f, fastPolicy()).CommitGroupOffsets(ctx, "g", "t", Offsets{0: 1})
	if !errors.Is(err, ErrGroupActive) || f.count("offsetcommit") != 1 {
		t.Errorf("CommitGroupOffsets = %v after %d calls, want ErrGroupActive after 1", err, f.count("offsetcommit"))
	}

	f = newFakeAPI(2)
	f.fail("deletegroups", fakeErr{err: kafka.NonEmptyGroup, inner: true})
	err = testAdmin(t, f, fastPolicy()).DeleteGroup(ctx, "g")
	if !errors.Is(err, kafka.NonEmptyGroup) || f.count("deletegroups") != 1 {
		t.Errorf("DeleteGroup = %v after %d calls, want NonEmptyGroup after 1", err, f.count("deletegroups"))
	}

	f = newFakeAPI(2)
	f.fail("deletetopics", fakeErr{err: kafka.TopicAuthorizationFailed, partition: 0, inner: true})
	err = testAdmin(t, f, fastPolicy()).DeleteTopics(ctx, "a")
	if !errors.Is(err, kafka.TopicAuthorizationFailed) || f.count("deletetopics") != 1 {
		t.Errorf("DeleteTopics = %v after %d calls, want TopicAuthorizationFailed after 1", err, f.count("deletetopics"))
	}

	f = newFakeAPI(2)
	f.fail("createtopics", fakeErr{err: kafka.InvalidReplicationFactor, partition: 0, inner: true})
	err = testAdmin(t, f, fastPolicy()).EnsureTopics(ctx, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 3})
	if !errors.Is(err, kafka.InvalidReplicationFactor) || f.count("createtopics") != 1 {
		t.Errorf("EnsureTopics = %v after %d calls, want InvalidReplicationFactor after 1", err, f.count("createtopics"))
	}
}

// A partition that never gets a leader fails the call after the policy's budget, with an
// error naming the operation, the topic and Kafka's last error.
func TestRetriesAreBoundedAndTheErrorSaysWhatFailed(t *testing.T) {
	f := newFakeAPI(3)
	for range 1000 {
		f.fail("listoffsets", fakeErr{err: kafka.NotLeaderForPartition, partition: 2, inner: true})
	}
	start := time.Now()
	_, err := testAdmin(t, f, fastPolicy()).EndOffsets(context.Background(), "loyalty.purchases.v1")
	took := time.Since(start)
	if err == nil {
		t.Fatal("EndOffsets succeeded on a partition that never has a leader")
	}
	if took < fastPolicy().Total-fastPolicy().Max || took > fastPolicy().Total+time.Second {
		t.Errorf("gave up after %s, want about %s", took, fastPolicy().Total)
	}
	if n := f.count("listoffsets"); n < 10 {
		t.Errorf("ListOffsets calls = %d, want many retries", n)
	}
	if !errors.Is(err, kafka.NotLeaderForPartition) {
		t.Errorf("error %v does not wrap Kafka's last error", err)
	}
	for _, want := range []string{"end offsets", "loyalty.purchases.v1/2", "Not Leader For Partition", "attempts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestRetriesStopWhenTheContextEnds(t *testing.T) {
	f := newFakeAPI(1)
	for range 1000 {
		f.fail("offsetfetch", fakeErr{err: kafka.GroupLoadInProgress})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	slow := RetryPolicy{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, Total: time.Minute}
	start := time.Now()
	_, err := testAdmin(t, f, slow).GroupOffsets(ctx, "g", "t")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, kafka.GroupLoadInProgress) {
		t.Errorf("GroupOffsets = %v, want the deadline and the last Kafka error", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("returned %s after the context ended", took)
	}
}
