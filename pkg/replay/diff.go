package replay

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// Profile is one customer's headline scores in a namespace.
type Profile struct {
	Tier    string `json:"tier"`
	Segment string `json:"segment"`
	Churn   string `json:"churn_level"`
}

// CustomerDiff is a customer whose tier or churn level differs between live and replay.
type CustomerDiff struct {
	CustomerID string   `json:"customer_id"`
	Live       *Profile `json:"live"`   // nil: not in live
	Replay     *Profile `json:"replay"` // nil: not in the replay
}

// OutputDiff compares derived event ids on live and shadow topics.
type OutputDiff struct {
	Topic         string `json:"topic"`
	Live          int    `json:"live"`
	Replay        int    `json:"replay"`
	MissingReplay int    `json:"missing_in_replay"`
	ExtraReplay   int    `json:"extra_in_replay"`
	// Examples describe a few missing (-) and extra (+) events.
	Examples []string `json:"examples,omitempty"`
}

// Diff is the comparison of a replay namespace with live.
type Diff struct {
	Live         string                    `json:"live_namespace"`
	Replay       string                    `json:"replay_namespace"`
	Customers    map[string]int            `json:"customers"`
	Counts       map[string]map[string]int `json:"counts"` // "tier/live" → value → n
	Differing    int                       `json:"customers_differing"`
	TierDiffer   int                       `json:"tier_differs"`
	ChurnDiffer  int                       `json:"churn_level_differs"`
	Sample       []CustomerDiff            `json:"sample"`
	DifferingIDs []string                  `json:"-"`
	Outputs      []OutputDiff              `json:"outputs,omitempty"`
}

// Zero reports whether the replay matches live in state and outputs.
func (d Diff) Zero() bool {
	if d.Differing != 0 {
		return false
	}
	for _, o := range d.Outputs {
		if o.MissingReplay != 0 || o.ExtraReplay != 0 {
			return false
		}
	}
	return true
}

// Profiles reads every customer of a namespace (SCAN over its customer keys: an operator
// command, not a hot path).
func Profiles(ctx context.Context, rdb redisconn.Client, keys keyspace.Keyspace, p *scoring.Policy) (map[string]Profile, error) {
	out := map[string]Profile{}
	var mu sync.Mutex
	err := state.ForEachCustomer(ctx, rdb, keys, func(_ string, cur state.Current) {
		st, err := cur.State()
		if err != nil || st.CustomerID == "" {
			return
		}
		mu.Lock()
		out[st.CustomerID] = Profile{Tier: p.TierName(int(st.Tier)), Segment: st.Segment.String(), Churn: st.Churn.String()}
		mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", keys.Namespace(), err)
	}
	return out, nil
}

// Scores is a namespace's customer state and the policy that names its tiers.
type Scores struct {
	Namespace
	Policy *scoring.Policy
}

// Outputs is what comparing derived events needs: the admin that reads the topics, the codec
// that decodes them and the topic naming.
type Outputs struct {
	Admin  *stream.Admin
	Codec  *codec.Codec
	Topics Topics
}

// Compare diffs a replay namespace against live. With outputs (not nil), it also compares
// the derived event ids on the live topics with the replay's shadow topics.
func Compare(ctx context.Context, liveRT, replayRT Scores, sampleSize int, outputs *Outputs) (Diff, error) {
	live, err := Profiles(ctx, liveRT.Redis, liveRT.Keys, liveRT.Policy)
	if err != nil {
		return Diff{}, err
	}
	rep, err := Profiles(ctx, replayRT.Redis, replayRT.Keys, replayRT.Policy)
	if err != nil {
		return Diff{}, err
	}
	d := Diff{Live: liveRT.Keys.Namespace(), Replay: replayRT.Keys.Namespace(),
		Customers: map[string]int{"live": len(live), "replay": len(rep)}, Counts: map[string]map[string]int{}}
	count := func(kind, side, value string) {
		k := kind + "/" + side
		if d.Counts[k] == nil {
			d.Counts[k] = map[string]int{}
		}
		d.Counts[k][value]++
	}
	for side, m := range map[string]map[string]Profile{"live": live, "replay": rep} {
		for _, p := range m {
			count("tier", side, p.Tier)
			count("segment", side, p.Segment)
			count("churn", side, p.Churn)
		}
	}
	ids := map[string]bool{}
	for id := range live {
		ids[id] = true
	}
	for id := range rep {
		ids[id] = true
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	for _, id := range sorted {
		l, lok := live[id]
		r, rok := rep[id]
		tierDiff := !lok || !rok || l.Tier != r.Tier
		churnDiff := !lok || !rok || l.Churn != r.Churn
		if !tierDiff && !churnDiff {
			continue
		}
		d.Differing++
		d.DifferingIDs = append(d.DifferingIDs, id)
		if tierDiff {
			d.TierDiffer++
		}
		if churnDiff {
			d.ChurnDiffer++
		}
		if len(d.Sample) < sampleSize {
			cd := CustomerDiff{CustomerID: id}
			if lok {
				cd.Live = &l
			}
			if rok {
				cd.Replay = &r
			}
			d.Sample = append(d.Sample, cd)
		}
	}
	if outputs != nil {
		for _, logical := range event.DerivedTopics() {
			o, err := compareTopic(ctx, outputs, outputs.Topics.Physical(logical), ShadowTopic(outputs.Topics.Physical(logical), replayRT.Keys.Namespace()))
			if err != nil {
				return d, err
			}
			d.Outputs = append(d.Outputs, o)
		}
	}
	return d, nil
}

func compareTopic(ctx context.Context, rt *Outputs, liveTopic, shadowTopic string) (OutputDiff, error) {
	liveIDs, err := topicIDs(ctx, rt, liveTopic)
	if err != nil {
		return OutputDiff{}, err
	}
	shadowIDs, err := topicIDs(ctx, rt, shadowTopic)
	if err != nil {
		return OutputDiff{}, err
	}
	o := OutputDiff{Topic: liveTopic, Live: len(liveIDs), Replay: len(shadowIDs)}
	for id, what := range liveIDs {
		if _, ok := shadowIDs[id]; !ok {
			o.MissingReplay++
			if len(o.Examples) < 6 {
				o.Examples = append(o.Examples, "- "+what)
			}
		}
	}
	for id, what := range shadowIDs {
		if _, ok := liveIDs[id]; !ok {
			o.ExtraReplay++
			if len(o.Examples) < 12 {
				o.Examples = append(o.Examples, "+ "+what)
			}
		}
	}
	sort.Strings(o.Examples)
	return o, nil
}

// topicIDs reads a topic from start to its current end and returns the derived event ids,
// each with a one-line description.
func topicIDs(ctx context.Context, rt *Outputs, topic string) (map[string]string, error) {
	starts, err := rt.Admin.OffsetsForTime(ctx, topic, time.Time{})
	if err != nil {
		return nil, err
	}
	ends, err := rt.Admin.EndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for p, end := range ends {
		ch := make(chan stream.Message, 1000)
		errc := make(chan error, 1)
		go func() { errc <- rt.Admin.ReadRange(ctx, topic, p, starts[p], end, ch); close(ch) }()
		for m := range ch {
			if id, what := derivedID(ctx, rt.Codec, m.Value); id != "" {
				ids[id] = what
			}
		}
		if err := <-errc; err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func derivedID(ctx context.Context, c *codec.Codec, value []byte) (id, what string) {
	e, err := c.Decode(ctx, value)
	if err != nil {
		return "", ""
	}
	switch v := e.(type) {
	case event.TierChanged:
		return v.EventID, fmt.Sprintf("%s %s %s→%s at %s", v.CustomerID, v.Direction, v.FromTier, v.ToTier, v.OccurredAt.Format(time.RFC3339))
	case event.ChurnRiskChanged:
		return v.EventID, fmt.Sprintf("%s churn %s→%s at %s", v.CustomerID, v.FromLevel, v.ToLevel, v.OccurredAt.Format(time.RFC3339))
	case event.SegmentChanged:
		return v.EventID, fmt.Sprintf("%s segment %s→%s (%s) at %s", v.CustomerID, v.FromSegment, v.ToSegment, v.ValueLayer, v.OccurredAt.Format(time.RFC3339))
	}
	return "", ""
}

// WriteTable prints the diff for people.
func (d Diff) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "namespaces\tlive %s\treplay %s\n", d.Live, d.Replay)
	fmt.Fprintf(tw, "customers\t%d\t%d\n", d.Customers["live"], d.Customers["replay"])
	for _, kind := range []string{"tier", "churn", "segment"} {
		values := map[string]bool{}
		for v := range d.Counts[kind+"/live"] {
			values[v] = true
		}
		for v := range d.Counts[kind+"/replay"] {
			values[v] = true
		}
		keys := make([]string, 0, len(values))
		for v := range values {
			keys = append(keys, v)
		}
		sort.Strings(keys)
		for _, v := range keys {
			l, r := d.Counts[kind+"/live"][v], d.Counts[kind+"/replay"][v]
			mark := ""
			if l != r {
				mark = fmt.Sprintf("(%+d)", r-l)
			}
			fmt.Fprintf(tw, "%s %s\t%d\t%d\t%s\n", kind, v, l, r, mark)
		}
	}
	fmt.Fprintf(tw, "customers differing\t%d\t(tier %d, churn level %d)\n", d.Differing, d.TierDiffer, d.ChurnDiffer)
	for _, o := range d.Outputs {
		fmt.Fprintf(tw, "events %s\t%d\t%d\tmissing %d, extra %d\n", strings.TrimPrefix(o.Topic, "loyalty."), o.Live, o.Replay, o.MissingReplay, o.ExtraReplay)
		for _, ex := range o.Examples {
			fmt.Fprintf(tw, "  %s\n", ex)
		}
	}
	if len(d.Sample) > 0 {
		fmt.Fprintln(tw, "\nsample\tlive\treplay")
		show := func(p *Profile) string {
			if p == nil {
				return "-"
			}
			return p.Tier + " " + p.Churn + " " + p.Segment
		}
		for _, s := range d.Sample {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.CustomerID, show(s.Live), show(s.Replay))
		}
	}
	return tw.Flush()
}
