package stream

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// adminAPI is the part of *kafka.Client an Admin uses; tests put a fake in its place.
type adminAPI interface {
	Metadata(ctx context.Context, req *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	ListOffsets(ctx context.Context, req *kafka.ListOffsetsRequest) (*kafka.ListOffsetsResponse, error)
	OffsetFetch(ctx context.Context, req *kafka.OffsetFetchRequest) (*kafka.OffsetFetchResponse, error)
	OffsetCommit(ctx context.Context, req *kafka.OffsetCommitRequest) (*kafka.OffsetCommitResponse, error)
	CreateTopics(ctx context.Context, req *kafka.CreateTopicsRequest) (*kafka.CreateTopicsResponse, error)
	DescribeConfigs(ctx context.Context, req *kafka.DescribeConfigsRequest) (*kafka.DescribeConfigsResponse, error)
	DeleteTopics(ctx context.Context, req *kafka.DeleteTopicsRequest) (*kafka.DeleteTopicsResponse, error)
	DeleteGroups(ctx context.Context, req *kafka.DeleteGroupsRequest) (*kafka.DeleteGroupsResponse, error)
}

// Admin does a process's administrative Kafka requests (offsets, consumer-group positions,
// topics) and its out-of-group reads (ReadRange). Build one per process with NewAdmin and
// share it: it keeps one kafka.Client whose Transport pools connections and caches the
// cluster metadata, and it retries Kafka's transient errors (see Retriable) under its
// RetryPolicy, also those reported per partition or per topic inside a response. It is safe
// for concurrent use. Close releases its connections.
type Admin struct {
	api       adminAPI
	transport *kafka.Transport // nil with a fake api
	brokers   []string
	dialer    *kafka.Dialer
	policy    RetryPolicy
	log       *zap.Logger
}

// AdminOption changes a setting of NewAdmin.
type AdminOption func(*Admin)

// WithRetryPolicy replaces DefaultRetryPolicy; zero fields keep their defaults.
func WithRetryPolicy(p RetryPolicy) AdminOption {
	return func(a *Admin) { a.policy = p.withDefaults() }
}

// NewAdmin returns the Admin of brokers. It does not connect until the first request. Its
// transport refreshes the cached cluster layout every few seconds (kafka-go's MetadataTTL):
// after a leader moves, or a topic is created by another process, requests routed with the
// old layout fail with a retriable error until the refresh.
func NewAdmin(brokers []string, sec Security, log *zap.Logger, opts ...AdminOption) (*Admin, error) {
	if err := validateBrokers(brokers); err != nil {
		return nil, err
	}
	transport, err := sec.transport()
	if err != nil {
		return nil, err
	}
	dialer, err := sec.dialer()
	if err != nil {
		return nil, err
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 15 * time.Second, Transport: transport}
	return newAdmin(client, transport, brokers, dialer, log, opts...), nil
}

func newAdmin(api adminAPI, transport *kafka.Transport, brokers []string, dialer *kafka.Dialer, log *zap.Logger, opts ...AdminOption) *Admin {
	if log == nil {
		log = zap.NewNop()
	}
	a := &Admin{api: api, transport: transport, brokers: brokers, dialer: dialer, policy: DefaultRetryPolicy(), log: log}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Close closes the pooled connections. Requests made after Close open new ones.
func (a *Admin) Close() error {
	if a.transport != nil {
		a.transport.CloseIdleConnections()
	}
	return nil
}

// retry runs op under the Admin's retry policy.
func (a *Admin) retry(ctx context.Context, what string, op func(context.Context) error) error {
	return retry(ctx, a.policy, a.log, what, op)
}
