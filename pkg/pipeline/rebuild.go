package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/ingest"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// ErrTombstoneMoved is RebuildCompute's error when the quarantined customer's tombstone is no
// longer the one the rebuild chose its records against: a record was turned away since (or the
// customer was released), so the rebuild must choose its records again.
var ErrTombstoneMoved = errors.New("the quarantined customer changed since the rebuild read it")

// ErrNotQuarantinedNow is RebuildCompute's error for a customer that is not quarantined.
var ErrNotQuarantinedNow = errors.New("the customer is not quarantined")

// RebuildCompute returns the store computation that ends a customer's quarantine with a
// rebuilt state: replayed is the customer's state in a replay namespace (empty when the replay
// never saw it), records are the customer's records that arrived after the replay's range, in
// the replay's merge order, and wm is the live watermark. The stored value must still be the
// tombstone whose QuarantineMarkField was marker; the result is the replayed state with the
// records applied as a lagging consumer would apply them (days closed at wm first), and the
// derived events of those records only: what the replay derived was never live and is not
// sent now.
func (s *Scorer) RebuildCompute(replayed state.Current, marker string, records []ingest.Record, wm time.Time) state.ComputeFunc {
	return func(id string, cur state.Current) (state.Update, error) {
		if _, ok := cur.Tombstone(); !ok {
			return state.Update{}, fmt.Errorf("%w: %s", ErrNotQuarantinedNow, id)
		}
		if cur.Fields[state.QuarantineMarkField] != marker {
			return state.Update{}, fmt.Errorf("%w: %s", ErrTombstoneMoved, id)
		}
		base := replayed
		before, err := storedState(id, base)
		if err != nil {
			return state.Update{}, fmt.Errorf("the replayed state of %s: %w", id, err)
		}
		u, err := s.ApplyCompute(map[string][]ingest.Record{id: records}, wm)(id, base)
		if err != nil {
			return state.Update{}, err
		}
		if u.Quarantine != "" {
			return state.Update{}, fmt.Errorf("rebuilding %s: %s", id, u.Quarantine)
		}
		if u.Value == nil {
			// Nothing to apply: the replayed state as it is, with its deadline.
			if before.CustomerID == "" {
				return state.Update{}, fmt.Errorf("rebuilding %s: neither the replay nor the later records have this customer", id)
			}
			if u.Value, err = encodeState(before); err != nil {
				return state.Update{}, err
			}
			u.Deadline = scoring.NextDeadline(before, s.Policy())
		}
		return u, nil
	}
}
