package event

import "slices"

// Role says what a topic carries.
type Role int

// Topic roles.
const (
	// RoleInput topics carry the events customers cause; one consumer service reads each.
	RoleInput Role = iota + 1
	// RoleDerived topics carry the changes the pipeline derives (published by the relay).
	RoleDerived
	// RoleAction carries the notifier's decisions.
	RoleAction
	// RoleDeadLetter carries records that could not be processed.
	RoleDeadLetter
	// RoleErasure carries erasure announcements.
	RoleErasure
)

// Stream is one row of the topic table: a topic, the schema of its records, what it carries
// and, for input topics, the service that consumes it.
type Stream struct {
	Topic  string
	Schema string
	Role   Role
	// Service is the consumer service of an input topic (its binary's name); empty otherwise.
	Service string
}

// Streams returns the topic table: every topic of the pipeline, in a fixed order (inputs
// first). It is the one mapping of topic ↔ schema ↔ consuming service; the schema manifest
// names the same topics and schemas, and a test keeps the two in step.
func Streams() []Stream { return slices.Clone(streams) }

// streams is the topic table (Streams); the lookups range over it without copying it.
var streams = []Stream{
	{TopicPurchases, Purchase{}.Schema(), RoleInput, "purchases"},
	{TopicLogins, Login{}.Schema(), RoleInput, "logins"},
	{TopicFeedback, Feedback{}.Schema(), RoleInput, "feedback"},
	{TopicTierChanges, TierChanged{}.Schema(), RoleDerived, ""},
	{TopicChurnRisk, ChurnRiskChanged{}.Schema(), RoleDerived, ""},
	{TopicSegmentChanges, SegmentChanged{}.Schema(), RoleDerived, ""},
	{TopicActions, ActionDecided{}.Schema(), RoleAction, ""},
	{TopicDeadLetter, DeadLetter{}.Schema(), RoleDeadLetter, ""},
	{TopicErasures, CustomerErased{}.Schema(), RoleErasure, ""},
}

// Topics returns the topics whose role is one of roles (every topic when none is given).
func Topics(roles ...Role) []string {
	var out []string
	for _, s := range streams {
		if len(roles) == 0 || slices.Contains(roles, s.Role) {
			out = append(out, s.Topic)
		}
	}
	return out
}

// InputStreams returns the rows of the input topics, each with its consumer service.
func InputStreams() []Stream {
	var out []Stream
	for _, s := range streams {
		if s.Role == RoleInput {
			out = append(out, s)
		}
	}
	return out
}

// InputTopics returns the topics the consumer services read.
func InputTopics() []string { return Topics(RoleInput) }

// OutputTopics returns the topics of derived events, decisions, dead letters and erasures.
func OutputTopics() []string {
	return Topics(RoleDerived, RoleAction, RoleDeadLetter, RoleErasure)
}

// DerivedTopics returns the topics of derived tier, churn-risk and segment changes.
func DerivedTopics() []string { return Topics(RoleDerived) }

// ConsumerServices returns the consumer services, one per input topic, in table order.
func ConsumerServices() []string {
	var out []string
	for _, s := range InputStreams() {
		out = append(out, s.Service)
	}
	return out
}

// StreamOfTopic returns the table row of a (logical) topic.
func StreamOfTopic(topic string) (Stream, bool) {
	for _, s := range streams {
		if s.Topic == topic {
			return s, true
		}
	}
	return Stream{}, false
}

// StreamOfService returns the table row of the input topic a consumer service reads.
func StreamOfService(service string) (Stream, bool) {
	for _, s := range streams {
		if s.Service != "" && s.Service == service {
			return s, true
		}
	}
	return Stream{}, false
}

// TopicOf returns the logical topic an event is published on ("" for a type with no topic).
func TopicOf(e Event) string {
	for _, s := range streams {
		if s.Schema == e.Schema() {
			return s.Topic
		}
	}
	return ""
}
