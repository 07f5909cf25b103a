package loyaltyctl

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func init() {
	Register(Command{Name: "replay", Summary: "replay the input topics over a time range into a fresh namespace (--from T --namespace NS)", Run: runReplay})
	Register(Command{Name: "diff", Summary: "compare a replay namespace's state and shadow outputs with live (--namespace NS [--json])", Run: runDiff})
	Register(Command{Name: "promote", Summary: "make a finished replay namespace live (--namespace NS)", Run: runPromote})
	Register(Command{Name: "drop", Summary: "delete a namespace that is not live (--namespace NS)", Run: runDrop})
	Register(Command{Name: "reset-offsets", Summary: "move a stopped consumer group to a time or the beginning (--group G --to-time T|--to-earliest)", Run: runResetOffsets})
}

// parseTime accepts RFC 3339 or YYYY-MM-DD (UTC midnight).
func parseTime(flagName, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, Usagef("%s %q: want RFC 3339 (2011-01-31T00:00:00Z) or YYYY-MM-DD", flagName, v)
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "start of the event range (RFC 3339 or YYYY-MM-DD); records from this Kafka timestamp on")
	to := fs.String("to", "", "end of the range (exclusive); default: everything up to now")
	ns := fs.String("namespace", "", "fresh Redis namespace to build (letters, digits, - and _)")
	policy := fs.String("policy", "", "policy YAML to replay with (default: live's)")
	outputs := fs.String("outputs", replay.OutputsShadow, "shadow (topics <topic>.replay.<namespace>) or none")
	if err := fs.Parse(args); err != nil {
		return Usagef("%v", err)
	}
	fromT, err := parseTime("--from", *from)
	if err != nil {
		return err
	}
	if *from == "" {
		return Usagef("--from: required (use 2000-01-01 for everything)")
	}
	toT, err := parseTime("--to", *to)
	if err != nil {
		return err
	}
	cfg := replay.Config{Namespace: *ns, From: fromT, To: toT, Outputs: *outputs, Progress: stderr}
	if *policy != "" {
		if cfg.PolicyYAML, err = os.ReadFile(*policy); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return Usagef("%v", err)
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	sum, err := replay.Run(ctx, env.cfg, cfg, env.log)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d events; run the same command again to resume: %w", sum.Events, err)
		}
		return err
	}
	fmt.Fprintf(stdout, "replayed %d events into %s in %s (%.0f events/s, %d rejected)%s\n", sum.Events, sum.Namespace,
		sum.Elapsed.Round(time.Millisecond), sum.PerSecond, sum.Rejected, map[bool]string{true: ", resumed", false: ""}[sum.Resumed])
	return nil
}

// runtimes builds the live runtime (following promotion) and, when ns is set, the runtime of ns.
func runtimes(ctx context.Context, env *environment, ns string) (live, other *wiring.Runtime, err error) {
	live, err = wiring.NewRuntime(ctx, env.cfg, env.log, wiring.Options{FollowActive: true})
	if err != nil {
		return nil, nil, err
	}
	if ns == "" {
		return live, nil, nil
	}
	cfg := env.cfg
	cfg.Namespace = ns
	other, err = wiring.NewRuntime(ctx, cfg, env.log, wiring.Options{})
	if err != nil {
		live.Close()
		return nil, nil, err
	}
	return live, other, nil
}

func runDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("namespace", "", "replay namespace to compare with live")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	sample := fs.Int("sample", 10, "how many differing customers to show")
	outputs := fs.Bool("outputs", true, "also compare derived event ids on live and shadow topics")
	if err := fs.Parse(args); err != nil {
		return Usagef("%v", err)
	}
	if *ns == "" {
		return Usagef("--namespace: required")
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	live, rep, err := runtimes(ctx, env, *ns)
	if err != nil {
		return err
	}
	defer live.Close()
	defer rep.Close()
	meta, ok, err := replay.LoadMetadata(ctx, rep.Redis, rep)
	if err != nil {
		return err
	}
	d, err := replay.Compare(ctx, live, rep, *sample, *outputs && ok && meta.Outputs == replay.OutputsShadow)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	}
	return d.WriteTable(stdout)
}

// withNamespace parses a command whose one required flag is --namespace and runs f with the
// live runtime and the runtime of that namespace.
func withNamespace(ctx context.Context, name, usage string, args []string, stderr io.Writer,
	f func(env *environment, live, other *wiring.Runtime) error) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("namespace", "", usage)
	if err := fs.Parse(args); err != nil {
		return Usagef("%v", err)
	}
	if *ns == "" {
		return Usagef("--namespace: required")
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	live, other, err := runtimes(ctx, env, *ns)
	if err != nil {
		return err
	}
	defer live.Close()
	defer other.Close()
	return f(env, live, other)
}

func runPromote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return withNamespace(ctx, "promote", "finished replay namespace to make live", args, stderr, func(env *environment, _, rep *wiring.Runtime) error {
		previous, err := replay.Promote(ctx, rep, env.cfg.Namespace)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "namespace %s is live (was %s). Running services restart on it within seconds (exit code %d, restarted by their supervisor); %s is kept until `loyaltyctl drop --namespace %s`.\n",
			rep.Keys.Namespace(), previous, namespace.ExitPromoted, previous, previous)
		return nil
	})
}

func runDrop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return withNamespace(ctx, "drop", "namespace to delete", args, stderr, func(env *environment, _, other *wiring.Runtime) error {
		n, err := replay.Drop(ctx, other, env.cfg.Namespace)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dropped namespace %s (%d keys)\n", other.Keys.Namespace(), n)
		return nil
	})
}

func runResetOffsets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reset-offsets", flag.ContinueOnError)
	fs.SetOutput(stderr)
	group := fs.String("group", "", "consumer group (its members must be stopped)")
	toTime := fs.String("to-time", "", "first record at or after this time (RFC 3339 or YYYY-MM-DD)")
	earliest := fs.Bool("to-earliest", false, "the beginning of each partition")
	topics := fs.String("topics", strings.Join(event.InputTopics(), ","), "comma-separated topics of the group (names without LOYALTY_TOPIC_SUFFIX, which is appended)")
	if err := fs.Parse(args); err != nil {
		return Usagef("%v", err)
	}
	if *group == "" || (*toTime == "") == !*earliest {
		return Usagef("usage: loyaltyctl reset-offsets --group G --to-time T|--to-earliest [--topics T1,T2]")
	}
	at, err := parseTime("--to-time", *toTime)
	if err != nil {
		return err
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	for _, logical := range strings.Split(*topics, ",") {
		topic := strings.TrimSpace(logical) + env.cfg.TopicSuffix
		offs, err := stream.OffsetsForTime(ctx, env.cfg.KafkaBrokers, env.cfg.KafkaSecurity, topic, at)
		if err != nil {
			return err
		}
		if err := stream.CommitGroupOffsets(ctx, env.cfg.KafkaBrokers, env.cfg.KafkaSecurity, *group, topic, offs); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s → %v\n", *group, topic, offs)
	}
	return nil
}
