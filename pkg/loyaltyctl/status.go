package loyaltyctl

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/ops"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// opsService is a service of the pipeline whose ops server status asks for /readyz, with the
// address its main listens on by default (HTTP_ADDR overrides it in the service).
type opsService struct {
	name, defaultAddr string
	// consumes lists the logical topics its consumer group reads; none for relay and sweeper.
	consumes []string
}

// opsServices are the services of services/*/main.go, with their default ops addresses.
func opsServices() []opsService {
	return []opsService{
		{"purchases", "127.0.0.1:9101", []string{event.TopicPurchases}},
		{"logins", "127.0.0.1:9102", []string{event.TopicLogins}},
		{"feedback", "127.0.0.1:9103", []string{event.TopicFeedback}},
		{"relay", "127.0.0.1:9104", nil},
		{"sweeper", "127.0.0.1:9105", nil},
		{notifier.Service, "127.0.0.1:9106", []string{event.TopicTierChanges, event.TopicChurnRisk}},
	}
}

// addrEnv is the environment variable that overrides a service's ops address for status,
// e.g. PURCHASES_HTTP_ADDR.
func addrEnv(service string) string { return strings.ToUpper(service) + "_HTTP_ADDR" }

// Status is the operator's view of the pipeline that `loyaltyctl status` prints.
type Status struct {
	At time.Time `json:"at"`
	// Namespace is the active namespace (the promoted one, else LOYALTY_NAMESPACE).
	Namespace     string `json:"namespace"`
	PolicyVersion string `json:"policy_version"`
	// Lag is each consumer group's records not yet committed, per service and topic.
	Lag []GroupLag `json:"consumer_lag"`
	// Watermark is the sweeper's event-time clock; nil when no consumer has reported yet.
	Watermark *time.Time `json:"watermark,omitempty"`
	// WatermarkBehindSeconds is how far the watermark is behind the wall clock (the
	// loyalty_watermark_lag_seconds metric).
	WatermarkBehindSeconds float64 `json:"watermark_behind_seconds"`
	// WatermarkHeldBy is the input partition (topic/partition) whose position is the
	// watermark: the slowest, or the one whose consumer stopped heartbeating.
	WatermarkHeldBy string `json:"watermark_held_by,omitempty"`
	// Cutpoints is the last sealed cut-point boundary; nil while none is (no day has closed).
	Cutpoints *namespace.SealedCutpoints `json:"cutpoints,omitempty"`
	// ChurnModel says which churn model scores the days after the last sealed boundary: a
	// fit's version and population, the policy's fixed parameters, or the rules fallback
	// and why.
	ChurnModel  string `json:"churn_model"`
	OutboxDepth int64  `json:"outbox_depth"`
	// OutboxOldestAgeSeconds is the age of the oldest entry not yet relayed (0 when empty).
	OutboxOldestAgeSeconds float64 `json:"outbox_oldest_age_seconds"`
	// DeadlinesDue counts the scheduled deadlines at or before the wall clock;
	// DeadlinesPastWatermark those at or before the watermark, which the sweeper fires next.
	DeadlinesScheduled     int64 `json:"deadlines_scheduled"`
	DeadlinesDue           int64 `json:"deadlines_due"`
	DeadlinesPastWatermark int64 `json:"deadlines_past_watermark"`
	// DeadLettersLastHour counts the dead-letter topic's records of the last hour.
	DeadLettersLastHour int64 `json:"dead_letters_last_hour"`
	// Retention is each topic's retention as the broker reports it.
	Retention []TopicRetention `json:"retention"`
	Services  []ServiceHealth  `json:"services"`
	// Errors lists what could not be read; the rest of the view is still shown.
	Errors []string `json:"errors,omitempty"`
}

// GroupLag is one consumer group's lag on one topic.
type GroupLag struct {
	Service string `json:"service"`
	Group   string `json:"group"`
	Topic   string `json:"topic"`
	Lag     int64  `json:"lag"`
}

// TopicRetention is how long a topic keeps its records, and how far ahead of the broker a
// producer may stamp them. An input topic keeping less than a policy's tier window is Short:
// a replay would rebuild state from part of the history. An input topic where a producer can
// stamp records more than stream.DefaultMaxTimestampAhead ahead of the broker is
// ProducerClock: validation's future-skew check takes a record's timestamp as "now", so a
// producer with a clock in the future could move customers' clocks there.
type TopicRetention struct {
	Topic string `json:"topic"`
	// Retention is a Go duration, or "infinite".
	Retention string `json:"retention"`
	Short     bool   `json:"short,omitempty"`
	// TimestampType is the topic's message.timestamp.type: CreateTime or LogAppendTime.
	TimestampType string `json:"timestamp_type,omitempty"`
	// TimestampMaxAhead is its message.timestamp.after.max.ms as a Go duration, or
	// "unbounded" where the broker has no such setting.
	TimestampMaxAhead string `json:"timestamp_max_ahead,omitempty"`
	ProducerClock     bool   `json:"producer_clock,omitempty"`
}

// ServiceHealth is whether a service's /readyz answered 200.
type ServiceHealth struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	Ready   bool   `json:"ready"`
	Detail  string `json:"detail,omitempty"`
}

// statusOptions are the flags of status.
type statusOptions struct {
	addrs   map[string]*string
	timeout time.Duration
}

func statusCommand(out *cmdline.Output) *cobra.Command {
	o := statusOptions{addrs: map[string]*string{}}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "the pipeline at a glance: consumer lag, watermark, outbox, deadlines, dead letters, namespace, service readiness",
		Long: `status reads Kafka, Redis and every service's /readyz and prints consumer lag per service and
topic, the event-time watermark and how far it is behind the wall clock, the outbox depth and
the age of its oldest entry, the due deadlines (and how many are past the watermark), the dead
letters of the last hour, each topic's retention (flagging input topics shorter than the tier
window, or letting a producer stamp records more than a minute ahead of the broker), the
active namespace with its policy version, and which services are ready. Services' ops
addresses default to those of services/*/main.go; <SERVICE>_HTTP_ADDR (e.g.
PURCHASES_HTTP_ADDR) or the --<service>-addr flags override them, "off" skips one.
It exits 1 when Redis is unreachable or a part could not be read (shown under errors).`,
		Args: cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), o, out, cmd.OutOrStdout())
		},
	}
	for _, s := range opsServices() {
		o.addrs[s.name] = cmd.Flags().String(s.name+"-addr", cmp.Or(os.Getenv(addrEnv(s.name)), s.defaultAddr),
			"ops address of the "+s.name+" service ("+addrEnv(s.name)+"; off: do not ask)")
	}
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Second, "how long to wait for each service's /readyz")
	return cmd
}

func runStatus(ctx context.Context, o statusOptions, out *cmdline.Output, stdout io.Writer) error {
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	rdb, err := env.redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	st, err := collectStatus(ctx, env, rdb, o, time.Now())
	if err != nil {
		return err
	}
	if out.JSON() {
		err = cmdline.WriteJSON(stdout, st)
	} else {
		err = st.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if len(st.Errors) > 0 {
		return fmt.Errorf("%d parts of the status could not be read: %s", len(st.Errors), strings.Join(st.Errors, "; "))
	}
	return nil
}

// collectStatus reads every part of the status at now. Only an unreadable namespace fails it;
// other parts that cannot be read are listed in Errors.
func collectStatus(ctx context.Context, env *environment, rdb redisconn.Client, o statusOptions, now time.Time) (Status, error) {
	cfg := env.cfg
	st := Status{At: now.UTC(), Lag: []GroupLag{}, Services: []ServiceHealth{}}
	deployment, err := keyspace.NewDeployment(cfg.Deployment)
	if err != nil {
		return st, err
	}
	ns, err := namespace.ActiveNamespace(ctx, rdb, deployment, cfg.Namespace)
	if err != nil {
		return st, err
	}
	keys, err := keyspace.New(ns, cfg.Shards)
	if err != nil {
		return st, err
	}
	st.Namespace = keys.Namespace()
	fail := func(what string, err error) { st.Errors = append(st.Errors, what+": "+err.Error()) }

	policy, err := namespacePolicy(ctx, rdb, keys, cfg.PolicyFile)
	if err != nil {
		fail("policy", err)
		policy = scoring.DefaultPolicy()
	}
	st.PolicyVersion = policy.Version

	var wmAt time.Time
	if r, err := readWatermark(ctx, rdb, keys, policy); err != nil {
		fail("watermark", err)
	} else if r.Known {
		wmAt = r.At
		st.Watermark = &wmAt
		st.WatermarkBehindSeconds = max(now.Sub(wmAt), 0).Seconds()
		st.WatermarkHeldBy = r.Holder
	}
	if sealed, ok, err := namespace.LoadSealedCutpoints(ctx, rdb, keys); err != nil {
		fail("cut points", err)
	} else if ok {
		st.Cutpoints = &sealed
	}
	st.ChurnModel = churnModelInForce(policy, st.Cutpoints)
	if err := st.readOutboxAndDeadlines(ctx, rdb, keys, now, wmAt); err != nil {
		fail("outbox and deadlines", err)
	}

	// A status is a glance: a topic that does not exist yet is reported after a few seconds,
	// not after the admin's full retry budget.
	admin, err := stream.NewAdmin(cfg.KafkaBrokers, cfg.KafkaSecurity, env.log,
		stream.WithRetryPolicy(stream.RetryPolicy{Total: 3 * time.Second}))
	if err != nil {
		return st, err
	}
	defer admin.Close()
	for _, s := range opsServices() {
		group := "loyalty-" + keys.Namespace() + "-" + s.name // the services' default groups
		for _, logical := range s.consumes {
			topic := logical + cfg.TopicSuffix
			lag, err := groupLag(ctx, admin, group, topic)
			if err != nil {
				fail("lag of "+group+" on "+topic, err)
				continue
			}
			st.Lag = append(st.Lag, GroupLag{Service: s.name, Group: group, Topic: topic, Lag: lag})
		}
	}
	dlq := event.TopicDeadLetter + cfg.TopicSuffix
	if st.DeadLettersLastHour, err = recordsSince(ctx, admin, dlq, now.Add(-time.Hour)); err != nil {
		fail("dead letters on "+dlq, err)
	}

	for _, str := range event.Streams() {
		topic := str.Topic + cfg.TopicSuffix
		d, err := admin.TopicRetention(ctx, topic)
		if err != nil {
			fail("retention of "+topic, err)
			continue
		}
		r := TopicRetention{Topic: topic, Retention: d.String()}
		if d == stream.RetentionInfinite {
			r.Retention = "infinite"
		} else if str.Role == event.RoleInput && d < time.Duration(policy.Tiers.WindowDays)*24*time.Hour {
			r.Short = true
		}
		if ts, err := admin.TopicTimestamps(ctx, topic); err != nil {
			fail("timestamp settings of "+topic, err)
		} else {
			r.TimestampType, r.TimestampMaxAhead = ts.Type, "unbounded"
			if ts.MaxAhead >= 0 {
				r.TimestampMaxAhead = ts.MaxAhead.String()
			}
			r.ProducerClock = str.Role == event.RoleInput && !ts.Bounded(stream.DefaultMaxTimestampAhead)
		}
		st.Retention = append(st.Retention, r)
	}

	client := &http.Client{Timeout: o.timeout}
	for _, s := range opsServices() {
		addr := *o.addrs[s.name]
		if strings.EqualFold(addr, "off") || addr == "" {
			continue
		}
		st.Services = append(st.Services, readiness(ctx, client, s.name, addr, cfg.OpsToken))
	}
	return st, nil
}

// namespacePolicy is the policy the services run the namespace with: its own stored policy
// (replay --policy, carried by promote), else the configured file, else the default.
func namespacePolicy(ctx context.Context, rdb redisconn.Client, keys keyspace.Keyspace, file string) (*scoring.Policy, error) {
	yaml, ok, err := namespace.StoredPolicy(ctx, rdb, keys)
	if err != nil {
		return nil, err
	}
	if ok {
		return scoring.ParsePolicy(yaml)
	}
	if file != "" {
		return scoring.LoadPolicy(file)
	}
	return scoring.DefaultPolicy(), nil
}

// readWatermark reads the pipeline watermark (pipeline.Runtime.Watermarks reads the same
// hash).
func readWatermark(ctx context.Context, rdb redisconn.Client, keys keyspace.Keyspace, p *scoring.Policy) (watermark.Reading, error) {
	wm, err := watermark.NewTracker(ctx, rdb, keys.Global("watermarks"), p.AllowedLateness)
	if err != nil {
		return watermark.Reading{}, err
	}
	return wm.Read(ctx)
}

// readOutboxAndDeadlines fills the outbox and deadline figures from the store's backlog.
func (st *Status) readOutboxAndDeadlines(ctx context.Context, rdb redisconn.Client, keys keyspace.Keyspace, now, wm time.Time) error {
	b, err := state.ReadBacklog(ctx, rdb, keys, now, wm)
	if err != nil {
		return err
	}
	st.OutboxDepth = b.OutboxDepth
	st.DeadlinesScheduled, st.DeadlinesDue, st.DeadlinesPastWatermark = b.DeadlinesScheduled, b.DeadlinesDue, b.DeadlinesPastWatermark
	if !b.OutboxOldest.IsZero() {
		st.OutboxOldestAgeSeconds = max(now.Sub(b.OutboxOldest), 0).Seconds()
	}
	return nil
}

// groupLag is the records of topic that group has not committed; a partition without a
// commit counts from its first record.
func groupLag(ctx context.Context, admin *stream.Admin, group, topic string) (int64, error) {
	end, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	committed, err := admin.GroupOffsets(ctx, group, topic)
	if err != nil {
		return 0, err
	}
	var start stream.Offsets
	var lag int64
	for p, e := range end {
		c, ok := committed[p]
		if !ok || c < 0 {
			if start == nil {
				if start, err = admin.OffsetsForTime(ctx, topic, time.Time{}); err != nil {
					return 0, err
				}
			}
			c = start[p]
		}
		lag += max(e-c, 0)
	}
	return lag, nil
}

// recordsSince counts topic's records with a timestamp at or after t.
func recordsSince(ctx context.Context, admin *stream.Admin, topic string, t time.Time) (int64, error) {
	from, err := admin.OffsetsForTime(ctx, topic, t)
	if err != nil {
		return 0, err
	}
	end, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for p, e := range end {
		n += max(e-from[p], 0)
	}
	return n, nil
}

// readiness asks a service's /readyz, with the ops bearer token when one is configured
// (OPS_BEARER_TOKEN or OPS_BEARER_TOKEN_FILE, as the services read it); the service then
// answers which dependency is not ready, which status shows.
func readiness(ctx context.Context, client *http.Client, service, addr, token string) ServiceHealth {
	h := ServiceHealth{Service: service, Addr: addr}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		h.Detail = err.Error()
		return h
	}
	ops.SetToken(req, token)
	resp, err := client.Do(req)
	if err != nil {
		h.Detail = "not answering: " + err.Error()
		return h
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	h.Ready = resp.StatusCode == http.StatusOK
	switch {
	case h.Ready:
	case resp.StatusCode == http.StatusUnauthorized:
		h.Detail = resp.Status + ": set OPS_BEARER_TOKEN or OPS_BEARER_TOKEN_FILE to the services' ops token"
	case token != "" && len(bytes.TrimSpace(body)) > 0:
		h.Detail = resp.Status + ": " + strings.Join(strings.Fields(strings.ReplaceAll(string(bytes.TrimSpace(body)), "\n", "; ")), " ")
	default:
		h.Detail = resp.Status
	}
	return h
}

// WriteText writes the status for a reader.
func (st Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "namespace:\t%s (policy %s)\n", st.Namespace, st.PolicyVersion)
	if st.Watermark != nil {
		fmt.Fprintf(tw, "watermark:\t%s (%s behind the wall clock, held by %s)\n", st.Watermark.UTC().Format(time.RFC3339),
			(time.Duration(st.WatermarkBehindSeconds * float64(time.Second))).Round(time.Second), st.WatermarkHeldBy)
	} else {
		fmt.Fprintf(tw, "watermark:\tnone yet (no consumer has reported)\n")
	}
	fmt.Fprintf(tw, "outbox:\t%d entries, oldest %s old\n", st.OutboxDepth,
		(time.Duration(st.OutboxOldestAgeSeconds * float64(time.Second))).Round(time.Second))
	switch c := st.Cutpoints; {
	case c == nil:
		fmt.Fprintf(tw, "cut points:\tno boundary sealed yet (no day closes until the first is)\n")
	case c.Cutpoints == nil:
		fmt.Fprintf(tw, "cut points:\tthe policy's own; boundary %s sealed (%d customers)\n", c.Date, c.Population)
	default:
		fmt.Fprintf(tw, "cut points:\t%s; boundary %s sealed (%d customers)\n", c.Cutpoints.Version, c.Date, c.Population)
	}
	fmt.Fprintf(tw, "churn model:\t%s\n", st.ChurnModel)
	fmt.Fprintf(tw, "deadlines:\t%d scheduled, %d due, %d past the watermark\n", st.DeadlinesScheduled, st.DeadlinesDue, st.DeadlinesPastWatermark)
	fmt.Fprintf(tw, "dead letters:\t%d in the last hour\n", st.DeadLettersLastHour)
	fmt.Fprintln(tw, "consumer lag:")
	for _, l := range st.Lag {
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", l.Service, l.Topic, l.Lag)
	}
	fmt.Fprintln(tw, "retention:")
	for _, r := range st.Retention {
		var notes []string
		if r.Short {
			notes = append(notes, "SHORTER THAN THE TIER WINDOW: a replay would miss history")
		}
		if r.ProducerClock {
			notes = append(notes, "PRODUCERS' CLOCKS NOT BOUNDED ("+r.TimestampType+", up to "+r.TimestampMaxAhead+
				" ahead): they set the skew check's now; "+stream.ProducerClockFix(r.Topic, stream.DefaultMaxTimestampAhead))
		}
		note := ""
		if len(notes) > 0 {
			note = "\t" + strings.Join(notes, "; ")
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", r.Topic, r.Retention, note)
	}
	fmt.Fprintln(tw, "services:")
	for _, s := range st.Services {
		state := "ready"
		if !s.Ready {
			state = "NOT READY (" + s.Detail + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Service, s.Addr, state)
	}
	for _, e := range st.Errors {
		fmt.Fprintf(tw, "error:\t%s\n", e)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the status: %w", err)
	}
	return nil
}

// churnModelInForce describes the churn model that scores the days after boundary c.
func churnModelInForce(p *scoring.Policy, c *namespace.SealedCutpoints) string {
	if !p.Churn.Refit.Enabled() {
		return fmt.Sprintf("%s, the policy's fixed parameters (refit off)", p.Churn.ModelVersion)
	}
	var text string
	if c == nil || c.Model == nil {
		text = fmt.Sprintf("%s (rules fallback): no model fitted on this population yet", p.Churn.RulesVersion)
	} else {
		m := c.Model
		text = fmt.Sprintf("%s, fitted on %d customers (%d bought again)", m.Version, m.Customers, m.RepeatCustomers)
	}
	if c != nil && c.ModelNote != "" {
		text += "; boundary " + c.Date + " not fitted: " + c.ModelNote
	}
	return text
}
