package namespace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// A namespace's population cut points are derived at boundary days (package population,
// pipeline.CutpointDeriver) and sealed one boundary after another in one hash: "sealed" holds
// the last sealed boundary, and one field per boundary day keeps each for the record. Every
// service follows "sealed" (pipeline.CutpointWatch); a replay derives its own in its own
// namespace, at the same boundaries from the same history, so it scores with the same
// versions.

// SealedCutpoints is a sealed boundary: the cut points in force for the days after it.
type SealedCutpoints struct {
	// Boundary is the boundary day; Date the same day for people.
	Boundary scoring.Day `json:"boundary"`
	Date     string      `json:"date"`
	// Population is how many customers had RFM measures at the end of the boundary day.
	Population int64 `json:"population"`
	// Derived reports whether Cutpoints were derived at this boundary; otherwise the
	// population was too small and the previous boundary's are carried on.
	Derived bool `json:"derived"`
	// Cutpoints are in force after the boundary; nil means the policy's own (no boundary had
	// a large enough population yet).
	Cutpoints *scoring.Cutpoints `json:"cutpoints,omitempty"`
	// Model is the churn model in force after the boundary under a policy with churn.refit:
	// fitted at this boundary (ModelFitted) or carried on from an earlier one; nil until the
	// first fit, when the rules fallback scores churn. ModelNote says why a refit boundary
	// kept the earlier model (too little data, no convergence).
	Model       *scoring.FittedModel `json:"model,omitempty"`
	ModelFitted bool                 `json:"model_fitted,omitempty"`
	ModelNote   string               `json:"model_note,omitempty"`
}

const sealedField = "sealed"

// seal stores a boundary only if it is later than the sealed one, so concurrent derivers (two
// sweepers) cannot move the series back; both derive the same cut points anyway.
var seal = redisconn.NewScript("cutpoints-seal", `
local cur = redis.call('HGET', KEYS[1], 'sealed_boundary')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'sealed_boundary', ARGV[1], 'sealed', ARGV[2], ARGV[1], ARGV[2])
return 1`)

// SealCutpoints makes s the namespace's last sealed boundary, unless a later one is sealed
// already; it reports whether it did.
func SealCutpoints(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, s SealedCutpoints) (bool, error) {
	if s.Cutpoints != nil {
		if err := s.Cutpoints.Validate(); err != nil {
			return false, fmt.Errorf("sealing boundary %s: %w", s.Date, err)
		}
	}
	if s.Model != nil {
		if err := s.Model.Validate(); err != nil {
			return false, fmt.Errorf("sealing boundary %s: %w", s.Date, err)
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return false, err
	}
	n, err := seal.Run(ctx, rdb, []string{keys.CutpointBoundaries()}, int64(s.Boundary), b).Int()
	if err != nil {
		return false, fmt.Errorf("sealing boundary %s: %w", s.Date, err)
	}
	return n == 1, nil
}

// LoadSealedCutpoints returns the namespace's last sealed boundary; ok is false when none is.
func LoadSealedCutpoints(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) (SealedCutpoints, bool, error) {
	b, err := rdb.HGet(ctx, keys.CutpointBoundaries(), sealedField).Bytes()
	if errors.Is(err, redis.Nil) {
		return SealedCutpoints{}, false, nil
	}
	if err != nil {
		return SealedCutpoints{}, false, fmt.Errorf("reading the sealed cut points: %w", err)
	}
	s, err := decodeSealed(b)
	return s, err == nil, err
}

// CutpointHistory returns every sealed boundary, oldest first.
func CutpointHistory(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace) ([]SealedCutpoints, error) {
	all, err := rdb.HGetAll(ctx, keys.CutpointBoundaries()).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the cut-point boundaries: %w", err)
	}
	var out []SealedCutpoints
	for field, v := range all {
		if _, err := strconv.Atoi(field); err != nil {
			continue // "sealed", "sealed_boundary"
		}
		s, err := decodeSealed([]byte(v))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Boundary < out[j].Boundary })
	return out, nil
}

func decodeSealed(b []byte) (SealedCutpoints, error) {
	var s SealedCutpoints
	if err := json.Unmarshal(b, &s); err != nil {
		return SealedCutpoints{}, fmt.Errorf("decoding sealed cut points: %w", err)
	}
	if s.Cutpoints != nil {
		if err := s.Cutpoints.Validate(); err != nil {
			return SealedCutpoints{}, fmt.Errorf("sealed cut points of %s: %w", s.Date, err)
		}
	}
	if s.Model != nil {
		if err := s.Model.Validate(); err != nil {
			return SealedCutpoints{}, fmt.Errorf("sealed churn model of %s: %w", s.Date, err)
		}
	}
	return s, nil
}

// PolicyInForce returns p as the namespace's services score with it now: under its last sealed
// cut points and churn model fit. Readers that explain a customer (profile, CLV) use it.
func PolicyInForce(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, p *scoring.Policy) (*scoring.Policy, error) {
	s, ok, err := LoadSealedCutpoints(ctx, rdb, keys)
	if err != nil {
		return nil, err
	}
	return PolicyUnder(p, s, ok)
}

// PolicyUnder returns p under the namespace's sealed cut points (scoring.Policy.Sealed) and
// churn model fit (scoring.Policy.Fitted), or under none sealed yet.
func PolicyUnder(p *scoring.Policy, s SealedCutpoints, ok bool) (*scoring.Policy, error) {
	if !ok {
		return p.WithSealedCutpoints(scoring.NotSealed, nil)
	}
	q, err := p.WithSealedCutpoints(s.Boundary, s.Cutpoints)
	if err != nil {
		return nil, err
	}
	if !p.Churn.Refit.Enabled() {
		return q, nil // a namespace promoted onto a policy that does not refit keeps its fixed model
	}
	return q.WithFittedModel(s.Model)
}
