package codec

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// converter maps one event type to goavro's native form and back. fromMap tolerates fields
// that an older writer schema did not have: they read as their zero value, which is each
// added field's declared default.
type converter struct {
	toMap   func(event.Event) (map[string]any, error)
	fromMap func(map[string]any) (event.Event, error)
}

var converters = map[string]converter{
	"Purchase": {
		toMap: func(e event.Event) (map[string]any, error) {
			p, err := as[event.Purchase](e)
			if err != nil {
				return nil, err
			}
			return map[string]any{
				"event_id": p.EventID, "customer_id": p.CustomerID, "occurred_at": millis(p.OccurredAt),
				"order_id": p.OrderID, "kind": string(p.Kind), "amount_minor": p.AmountMinor,
				"currency": p.Currency, "refund_of_order_id": optString(p.RefundOfOrderID),
				"channel": optString(p.Channel),
			}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			p := event.Purchase{
				EventID: r.str("event_id"), CustomerID: r.str("customer_id"), OccurredAt: r.time("occurred_at"),
				OrderID: r.str("order_id"), Kind: event.PurchaseKind(r.str("kind")), AmountMinor: r.long("amount_minor"),
				Currency: r.str("currency"), RefundOfOrderID: r.optString("refund_of_order_id"), Channel: r.optString("channel"),
			}
			return p, r.err
		},
	},
	"Login": {
		toMap: func(e event.Event) (map[string]any, error) {
			l, err := as[event.Login](e)
			if err != nil {
				return nil, err
			}
			return map[string]any{
				"event_id": l.EventID, "customer_id": l.CustomerID, "occurred_at": millis(l.OccurredAt),
				"channel": string(l.Channel),
			}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			l := event.Login{
				EventID: r.str("event_id"), CustomerID: r.str("customer_id"), OccurredAt: r.time("occurred_at"),
				Channel: event.LoginChannel(r.str("channel")),
			}
			return l, r.err
		},
	},
	"Feedback": {
		toMap: func(e event.Event) (map[string]any, error) {
			f, err := as[event.Feedback](e)
			if err != nil {
				return nil, err
			}
			var score any
			if f.Score != nil {
				score = map[string]any{"int": *f.Score}
			}
			return map[string]any{
				"event_id": f.EventID, "customer_id": f.CustomerID, "occurred_at": millis(f.OccurredAt),
				"kind": string(f.Kind), "score": score, "case_id": optString(f.CaseID),
			}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			f := event.Feedback{
				EventID: r.str("event_id"), CustomerID: r.str("customer_id"), OccurredAt: r.time("occurred_at"),
				Kind: event.FeedbackKind(r.str("kind")), Score: r.optInt("score"), CaseID: r.optString("case_id"),
			}
			return f, r.err
		},
	},
	"TierChanged": {
		toMap: func(e event.Event) (map[string]any, error) {
			t, err := as[event.TierChanged](e)
			if err != nil {
				return nil, err
			}
			return map[string]any{
				"event_id": t.EventID, "customer_id": t.CustomerID, "occurred_at": millis(t.OccurredAt),
				"from_tier": string(t.FromTier), "to_tier": string(t.ToTier), "direction": string(t.Direction),
				"reasons": reasonsToNative(t.Reasons), "policy_version": t.PolicyVersion, "replay": t.Replay,
				"source": sourceToNative(t.Source),
			}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			t := event.TierChanged{
				EventID: r.str("event_id"), CustomerID: r.str("customer_id"), OccurredAt: r.time("occurred_at"),
				FromTier: event.Tier(r.str("from_tier")), ToTier: event.Tier(r.str("to_tier")),
				Direction: event.TierDirection(r.str("direction")), Reasons: r.reasons("reasons"),
				PolicyVersion: r.str("policy_version"), Replay: r.bool("replay"), Source: r.source("source"),
			}
			return t, r.err
		},
	},
	"ChurnRiskChanged": {
		toMap: func(e event.Event) (map[string]any, error) {
			c, err := as[event.ChurnRiskChanged](e)
			if err != nil {
				return nil, err
			}
			return map[string]any{
				"event_id": c.EventID, "customer_id": c.CustomerID, "occurred_at": millis(c.OccurredAt),
				"from_level": string(c.FromLevel), "to_level": string(c.ToLevel), "score": c.Score,
				"p_alive": c.PAlive, "reasons": reasonsToNative(c.Reasons), "model_version": c.ModelVersion,
				"replay": c.Replay, "source": sourceToNative(c.Source),
			}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			c := event.ChurnRiskChanged{
				EventID: r.str("event_id"), CustomerID: r.str("customer_id"), OccurredAt: r.time("occurred_at"),
				FromLevel: event.ChurnLevel(r.str("from_level")), ToLevel: event.ChurnLevel(r.str("to_level")),
				Score: r.double("score"), PAlive: r.double("p_alive"), Reasons: r.reasons("reasons"),
				ModelVersion: r.str("model_version"), Replay: r.bool("replay"), Source: r.source("source"),
			}
			return c, r.err
		},
	},
	"SegmentChanged": {
		toMap: func(e event.Event) (map[string]any, error) {
			s, err := as[event.SegmentChanged](e)
			if err != nil {
				return nil, err
			}
			return map[string]any{
				"event_id": s.EventID, "customer_id": s.CustomerID, "occurred_at": millis(s.OccurredAt),
				"from_segment": s.FromSegment, "to_segment": s.ToSegment, "value_layer": s.ValueLayer,
				"from_value_layer":  s.FromValueLayer,
				"rfm":               map[string]any{"r": s.RFM.R, "f": s.RFM.F, "m": s.RFM.M},
				"cutpoints_version": s.CutpointsVersion, "policy_version": s.PolicyVersion,
				"reasons": reasonsToNative(s.Reasons), "replay": s.Replay, "source": sourceToNative(s.Source),
			}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			rfm := reader{m: r.record("rfm")}
			s := event.SegmentChanged{
				EventID: r.str("event_id"), CustomerID: r.str("customer_id"), OccurredAt: r.time("occurred_at"),
				FromSegment: r.str("from_segment"), ToSegment: r.str("to_segment"), ValueLayer: r.str("value_layer"),
				FromValueLayer:   r.str("from_value_layer"), // absent in version 1: ""
				RFM:              event.RFM{R: rfm.int("r"), F: rfm.int("f"), M: rfm.int("m")},
				CutpointsVersion: r.str("cutpoints_version"), PolicyVersion: r.str("policy_version"),
				Reasons: r.reasons("reasons"), Replay: r.bool("replay"), Source: r.source("source"),
			}
			if rfm.err != nil {
				return s, rfm.err
			}
			return s, r.err
		},
	},
	"ActionDecided": {
		toMap: func(e event.Event) (map[string]any, error) {
			a, err := as[event.ActionDecided](e)
			if err != nil {
				return nil, err
			}
			return map[string]any{
				"action_id": a.ActionID, "customer_id": a.CustomerID, "decided_at": millis(a.DecidedAt),
				"kind": string(a.Kind), "outcome": string(a.Outcome), "reason": a.Reason,
				"trigger_event_id": a.TriggerEventID, "channel": a.Channel,
			}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			a := event.ActionDecided{
				ActionID: r.str("action_id"), CustomerID: r.str("customer_id"), DecidedAt: r.time("decided_at"),
				Kind: event.ActionKind(r.str("kind")), Outcome: event.ActionOutcome(r.str("outcome")),
				Reason: r.str("reason"), TriggerEventID: r.str("trigger_event_id"), Channel: r.str("channel"),
			}
			return a, r.err
		},
	},
	"DeadLetter": {
		toMap: func(e event.Event) (map[string]any, error) {
			d, err := as[event.DeadLetter](e)
			if err != nil {
				return nil, err
			}
			return map[string]any{
				"source_topic": d.SourceTopic, "source_partition": d.SourcePartition, "source_offset": d.SourceOffset,
				"key": optBytes(d.Key), "value": optBytes(d.Value), "error_code": d.ErrorCode,
				"error_message": d.ErrorMessage, "service": d.Service, "failed_at": millis(d.FailedAt),
				"value_truncated": d.ValueTruncated, "value_size": d.ValueSize, "value_sha256": d.ValueSHA256,
				"key_truncated": d.KeyTruncated,
			}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			d := event.DeadLetter{
				SourceTopic: r.str("source_topic"), SourcePartition: r.int("source_partition"),
				SourceOffset: r.long("source_offset"), Key: r.optBytes("key"), Value: r.optBytes("value"),
				ErrorCode: r.str("error_code"), ErrorMessage: r.str("error_message"), Service: r.str("service"),
				FailedAt: r.time("failed_at"),
				// absent in version 1: false, 0, "", false
				ValueTruncated: r.bool("value_truncated"), ValueSize: r.long("value_size"), ValueSHA256: r.str("value_sha256"),
				KeyTruncated: r.bool("key_truncated"),
			}
			return d, r.err
		},
	},
	"CustomerErased": {
		toMap: func(e event.Event) (map[string]any, error) {
			c, err := as[event.CustomerErased](e)
			if err != nil {
				return nil, err
			}
			return map[string]any{"event_id": c.EventID, "customer_id": c.CustomerID, "erased_at": millis(c.ErasedAt),
				"requested_by": c.RequestedBy, "keys_removed": c.KeysRemoved}, nil
		},
		fromMap: func(m map[string]any) (event.Event, error) {
			r := reader{m: m}
			c := event.CustomerErased{EventID: r.str("event_id"), CustomerID: r.str("customer_id"), ErasedAt: r.time("erased_at"),
				RequestedBy: r.str("requested_by"), KeysRemoved: r.int("keys_removed")}
			return c, r.err
		},
	},
}

// as accepts both T and *T.
func as[T event.Event](e event.Event) (T, error) {
	switch v := any(e).(type) {
	case T:
		return v, nil
	case *T:
		if v != nil {
			return *v, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("%T is not a %s", e, zero.Schema())
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func optString(s string) any {
	if s == "" {
		return nil
	}
	return map[string]any{"string": s}
}

func optBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return map[string]any{"bytes": b}
}

func reasonsToNative(rs []event.Reason) []any {
	out := make([]any, len(rs))
	for i, r := range rs {
		out[i] = map[string]any{"code": r.Code, "message": r.Message, "value": r.Value}
	}
	return out
}

func sourceToNative(s event.Source) map[string]any {
	return map[string]any{"topic": s.Topic, "partition": s.Partition, "offset": s.Offset}
}

// reader pulls typed fields out of a goavro native record, remembering the first type error.
// A missing field reads as the zero value (an older writer schema without it).
type reader struct {
	m   map[string]any
	err error
}

func (r *reader) get(key string) (any, bool) {
	v, ok := r.m[key]
	return v, ok && v != nil
}

func (r *reader) wrong(key string, v any, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("field %s: %T is not %s", key, v, want)
	}
}

func (r *reader) str(key string) string {
	v, ok := r.get(key)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		r.wrong(key, v, "a string")
	}
	return s
}

func (r *reader) long(key string) int64 {
	v, ok := r.get(key)
	if !ok {
		return 0
	}
	switch n := v.(type) {
	case int64:
		return n
	case int32:
		return int64(n)
	}
	r.wrong(key, v, "a long")
	return 0
}

func (r *reader) int(key string) int32 {
	v, ok := r.get(key)
	if !ok {
		return 0
	}
	n, ok := v.(int32)
	if !ok {
		r.wrong(key, v, "an int")
	}
	return n
}

func (r *reader) double(key string) float64 {
	v, ok := r.get(key)
	if !ok {
		return 0
	}
	switch n := v.(type) {
	case float64:
		return n
	case float32:
		return float64(n)
	}
	r.wrong(key, v, "a double")
	return 0
}

func (r *reader) bool(key string) bool {
	v, ok := r.get(key)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		r.wrong(key, v, "a boolean")
	}
	return b
}

func (r *reader) time(key string) time.Time {
	v, ok := r.get(key)
	if !ok {
		return time.Time{}
	}
	switch t := v.(type) {
	case time.Time:
		return t.UTC()
	case int64:
		return time.UnixMilli(t).UTC()
	}
	r.wrong(key, v, "a timestamp")
	return time.Time{}
}

// union unwraps goavro's {"type": value} form of a non-null union branch.
func (r *reader) union(key, branch string) (any, bool) {
	v, ok := r.get(key)
	if !ok {
		return nil, false
	}
	u, ok := v.(map[string]any)
	if !ok {
		r.wrong(key, v, "a union")
		return nil, false
	}
	inner, ok := u[branch]
	return inner, ok
}

func (r *reader) optString(key string) string {
	v, ok := r.union(key, "string")
	if !ok {
		return ""
	}
	s, _ := v.(string)
	return s
}

func (r *reader) optInt(key string) *int32 {
	v, ok := r.union(key, "int")
	if !ok {
		return nil
	}
	n, ok := v.(int32)
	if !ok {
		r.wrong(key, v, "an int")
		return nil
	}
	return &n
}

func (r *reader) optBytes(key string) []byte {
	v, ok := r.union(key, "bytes")
	if !ok {
		return nil
	}
	b, _ := v.([]byte)
	return b
}

func (r *reader) record(key string) map[string]any {
	v, ok := r.get(key)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		r.wrong(key, v, "a record")
	}
	return m
}

func (r *reader) source(key string) event.Source {
	s := reader{m: r.record(key)}
	src := event.Source{Topic: s.str("topic"), Partition: s.int("partition"), Offset: s.long("offset")}
	if s.err != nil && r.err == nil {
		r.err = s.err
	}
	return src
}

func (r *reader) reasons(key string) []event.Reason {
	v, ok := r.get(key)
	if !ok {
		return nil
	}
	items, ok := v.([]any)
	if !ok {
		r.wrong(key, v, "an array")
		return nil
	}
	out := make([]event.Reason, 0, len(items))
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			r.wrong(key, it, "a record")
			return nil
		}
		ir := reader{m: m}
		out = append(out, event.Reason{Code: ir.str("code"), Message: ir.str("message"), Value: ir.double("value")})
		if ir.err != nil && r.err == nil {
			r.err = ir.err
		}
	}
	return out
}

// shortName is the unqualified name of a record schema ("loyalty.v1.Purchase" → "Purchase").
func shortName(schema string) string {
	var s struct {
		Name string `json:"name"`
	}
	if json.Unmarshal([]byte(schema), &s) != nil {
		return ""
	}
	return s.Name[strings.LastIndex(s.Name, ".")+1:]
}
