package wiring

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/console"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/kpi"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/ops"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/profile"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/watermark"
)

// ConsoleAddrDefault is where the console listens unless CONSOLE_ADDR says otherwise:
// loopback only.
const ConsoleAddrDefault = "127.0.0.1:9180"

// ConsoleVars are the console's environment variables, for its usage text.
var ConsoleVars = []config.Var{
	{Name: "CONSOLE_ADDR", Default: ConsoleAddrDefault, Meaning: "address the console's pages and /api/v1 listen on"},
	{Name: "CONSOLE_USER", Meaning: "basic-auth user for browsers (with CONSOLE_PASSWORD)"},
	{Name: "CONSOLE_PASSWORD", Meaning: "basic-auth password, at least 8 characters"},
	{Name: "CONSOLE_PASSWORD_FILE", Meaning: "file holding the password, instead of CONSOLE_PASSWORD"},
	{Name: "CONSOLE_BEARER_TOKEN", Meaning: "bearer token for API clients, at least 16 characters"},
	{Name: "CONSOLE_BEARER_TOKEN_FILE", Meaning: "file holding the token, instead of CONSOLE_BEARER_TOKEN"},
	{Name: notifier.EnvRulesFile, Meaning: "the notifier's rules file, for its CLV definition; unset uses the default rules"},
}

// ConsoleConfig is the console service's configuration.
type ConsoleConfig struct {
	Addr    string
	Console console.Config
	// RulesFile is the notifier's rules file (CLV definition); empty: the default rules.
	RulesFile string
}

// ConsoleConfigFromEnv reads and validates the CONSOLE_* variables.
func ConsoleConfigFromEnv(env config.Env) (ConsoleConfig, error) {
	c := ConsoleConfig{Addr: env("CONSOLE_ADDR"), RulesFile: env(notifier.EnvRulesFile)}
	if c.Addr == "" {
		c.Addr = ConsoleAddrDefault
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return c, fmt.Errorf("CONSOLE_ADDR: %w", err)
	}
	var err error
	if c.Console.BearerToken, err = ops.LoadToken(env("CONSOLE_BEARER_TOKEN"), env("CONSOLE_BEARER_TOKEN_FILE")); err != nil {
		return c, fmt.Errorf("CONSOLE_BEARER_TOKEN: %w", err)
	}
	c.Console.User = env("CONSOLE_USER")
	if c.Console.Password, err = secret(env("CONSOLE_PASSWORD"), env("CONSOLE_PASSWORD_FILE")); err != nil {
		return c, fmt.Errorf("CONSOLE_PASSWORD: %w", err)
	}
	return c, c.Console.Validate()
}

// secret is a value set directly or in a file (surrounding white space dropped); not both.
func secret(value, path string) (string, error) {
	if path == "" {
		return value, nil
	}
	if value != "" {
		return "", errors.New("set the value or a file holding it, not both")
	}
	return ops.LoadSecretFile(path)
}

// RunConsole serves the console on cfg.Addr until ctx ends. ready, when not nil, receives the
// address it listens on.
func RunConsole(ctx context.Context, rt *Runtime, cfg ConsoleConfig, ready func(addr string)) error {
	rules := notifier.DefaultRules()
	if cfg.RulesFile != "" {
		r, err := notifier.LoadRules(cfg.RulesFile, rt.Policy)
		if err != nil {
			return fmt.Errorf("%s: %w", notifier.EnvRulesFile, err)
		}
		rules = r
	}
	store, err := state.New(ctx, rt.Redis, rt.Keys, nil)
	if err != nil {
		return err
	}
	marks, err := rt.Watermarks(ctx)
	if err != nil {
		return err
	}
	src := &consoleSource{rt: rt, store: store, marks: marks, rules: rules}
	srv, err := console.New(cfg.Console, src, rt.Policy, rt.Log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("console: listening on %s: %w", cfg.Addr, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
	rt.Log.Info("console listening", zap.String("url", "http://"+ln.Addr().String()+"/"))
	if ready != nil {
		ready(ln.Addr().String())
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(shut)
		return nil
	}
}

// consoleSource reads what the console shows from the namespace and the output topics.
type consoleSource struct {
	rt    *Runtime
	store *state.Store
	marks *watermark.Tracker
	rules *notifier.Rules
}

func (s *consoleSource) Namespace() string { return s.rt.Keys.Namespace() }

func (s *consoleSource) KPIs(ctx context.Context) (pipeline.KPISnapshot, error) {
	return pipeline.ReadKPIs(ctx, s.store, s.marks, s.rt.Policy)
}

func (s *consoleSource) Uplift(ctx context.Context) (kpi.UpliftReport, error) {
	c, err := notifier.ReadUplift(ctx, s.rt.Redis, s.rt.Deployment, s.rt.Keys)
	if err != nil {
		return kpi.UpliftReport{}, err
	}
	return kpi.Uplift(c, notifier.UpliftKinds()), nil
}

func (s *consoleSource) Customer(ctx context.Context, id string) (console.Customer, error) {
	cur, err := s.store.Current(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		return console.Customer{}, console.ErrNotFound
	}
	if err != nil {
		return console.Customer{}, err
	}
	if _, quarantined := cur.Tombstone(); quarantined {
		return console.Customer{}, errors.New("the customer is quarantined: its stored state could not be read (loyaltyctl quarantine show)")
	}
	p, err := namespace.PolicyInForce(ctx, s.rt.Redis, s.rt.Keys, s.rt.Policy)
	if err != nil {
		return console.Customer{}, err
	}
	view, err := profile.Build(cur, p, s.rules.CLV)
	if err != nil {
		return console.Customer{}, err
	}
	view.Namespace = s.rt.Keys.Namespace()
	if d, ok, err := s.store.Deadline(ctx, id); err != nil {
		return console.Customer{}, err
	} else if ok {
		view.NextDeadline = &d
	}
	c := console.Customer{Profile: view, Transitions: []pipeline.Transition{}}
	entries, err := s.store.Transitions(ctx, id)
	if err != nil {
		return console.Customer{}, err
	}
	for _, e := range entries {
		t, err := pipeline.ParseTransition(id, e)
		if err != nil {
			return console.Customer{}, err
		}
		c.Transitions = append(c.Transitions, t)
	}
	if c.Actions, err = notifier.History(ctx, s.rt.Redis, s.rt.Keys, s.rt.Deployment, id, 20); err != nil {
		return console.Customer{}, err
	}
	return c, nil
}

// Recent reads the last n records of each partition of the churn-risk and actions topics and
// returns the newest n churn alerts (rises in risk) and n decisions.
func (s *consoleSource) Recent(ctx context.Context, n int) (console.Recent, error) {
	out := console.Recent{ChurnAlerts: []event.ChurnRiskChanged{}, Actions: []event.ActionDecided{}}
	var mu sync.Mutex
	err := s.tail(ctx, s.rt.Topic(event.TopicChurnRisk), n, func(e event.Event) {
		if c, ok := e.(event.ChurnRiskChanged); ok && !c.Replay && churnRank(c.ToLevel) > churnRank(c.FromLevel) {
			mu.Lock()
			out.ChurnAlerts = append(out.ChurnAlerts, c)
			mu.Unlock()
		}
	})
	if err != nil {
		return out, err
	}
	if err := s.tail(ctx, s.rt.Topic(event.TopicActions), n, func(e event.Event) {
		if a, ok := e.(event.ActionDecided); ok {
			mu.Lock()
			out.Actions = append(out.Actions, a)
			mu.Unlock()
		}
	}); err != nil {
		return out, err
	}
	sort.SliceStable(out.ChurnAlerts, func(i, j int) bool { return out.ChurnAlerts[i].OccurredAt.After(out.ChurnAlerts[j].OccurredAt) })
	sort.SliceStable(out.Actions, func(i, j int) bool { return out.Actions[i].DecidedAt.After(out.Actions[j].DecidedAt) })
	out.ChurnAlerts = out.ChurnAlerts[:min(n, len(out.ChurnAlerts))]
	out.Actions = out.Actions[:min(n, len(out.Actions))]
	return out, nil
}

func churnRank(l event.ChurnLevel) int {
	return map[event.ChurnLevel]int{event.ChurnLevel("LOW"): 0, event.ChurnLevel("MEDIUM"): 1, event.ChurnLevel("HIGH"): 2}[l]
}

// tail decodes the last n records of every partition of topic.
func (s *consoleSource) tail(ctx context.Context, topic string, n int, each func(event.Event)) error {
	ends, err := s.rt.Admin.EndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	starts, err := s.rt.Admin.OffsetsForTime(ctx, topic, time.Time{}) // each partition's first offset
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for p, end := range ends {
		from := max(end-int64(n), starts[p])
		if from >= end {
			continue
		}
		msgs := make(chan stream.Message, n)
		errc := make(chan error, 1)
		go func() { errc <- s.rt.Admin.ReadRange(ctx, topic, p, from, end, msgs); close(msgs) }()
		for m := range msgs {
			e, err := s.rt.Codec.Decode(ctx, m.Value)
			if err != nil {
				continue // not ours to judge here: the topic's consumers dead-letter it
			}
			each(e)
		}
		if err := <-errc; err != nil {
			return fmt.Errorf("reading the tail of %s/%d: %w", topic, p, err)
		}
	}
	return nil
}
