// Package scoring is the pure core of the loyalty pipeline: it turns one
// customer's purchases, refunds, logins and feedback into rolling RFM
// scores, an RFM segment and value layer, a loyalty tier and a churn-risk
// level, and reports every change of those as a typed Change value.
//
// The package has no I/O, no logger and no clock. Time is always an
// argument, and all decisions are taken in event time:
//
//	st, changes, err := scoring.Apply(st, ev, policy)   // an input event arrived
//	st, changes = scoring.Evaluate(st, watermark, policy) // time passed
//	due := scoring.NextDeadline(st, policy)              // when to call Evaluate next
//
// The same state, event and policy always give byte-identical results, so a
// replay of the input topics reproduces the same derived events with the
// same ids. State is a compact value meant to live in one Redis hash of
// small fields (State.MarshalFields / UnmarshalFields).
//
// Everything configurable (tiers, churn weights and thresholds, BG/NBD
// population parameters, RFM cut points, allowed lateness) is in a Policy,
// loaded from YAML (ParsePolicy, LoadPolicy, DefaultPolicy). See
// docs/scoring.md for the rules.
package scoring
