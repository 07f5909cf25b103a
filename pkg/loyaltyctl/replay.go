package loyaltyctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

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

// replayOptions are the flags of replay.
type replayOptions struct {
	from, to, ns, policy, outputs string
}

func replayCommand(out *cmdline.Output) *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay --from T --namespace NS",
		Short: "replay the input topics over a time range into a fresh namespace",
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReplay(cmd.Context(), o, out, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.from, "from", "", "start of the event range (RFC 3339 or YYYY-MM-DD); records from this Kafka timestamp on (fails, naming the partition and its earliest retained time, when records from it were deleted)")
	fs.StringVar(&o.to, "to", "", "end of the range (exclusive); default: everything up to now")
	fs.StringVar(&o.ns, "namespace", "", "fresh Redis namespace to build (letters, digits, - and _)")
	fs.StringVar(&o.policy, "policy", "", "policy YAML to replay with (default: live's)")
	fs.StringVar(&o.outputs, "outputs", replay.OutputsShadow, "shadow (topics <topic>.replay.<namespace>) or none")
	return cmd
}

func runReplay(ctx context.Context, o replayOptions, out *cmdline.Output, stdout, stderr io.Writer) error {
	fromT, err := parseTime("--from", o.from)
	if err != nil {
		return err
	}
	if o.from == "" {
		return Usagef("--from: required (use 2000-01-01 for everything)")
	}
	toT, err := parseTime("--to", o.to)
	if err != nil {
		return err
	}
	cfg := replay.Config{Namespace: o.ns, From: fromT, To: toT, Outputs: o.outputs, Progress: stderr}
	if o.policy != "" {
		if cfg.PolicyYAML, err = os.ReadFile(o.policy); err != nil {
			return fmt.Errorf("reading --policy: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Usagef("%v", err)
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	sum, err := wiring.Replay(ctx, env.cfg, cfg, env.log)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d events; run the same command again to resume: %w", sum.Events, err)
		}
		return err
	}
	if out.JSON() {
		return cmdline.WriteJSON(stdout, sum)
	}
	fmt.Fprintf(stdout, "replayed %d events into %s in %s (%.0f events/s, %d rejected)%s\n", sum.Events, sum.Namespace,
		sum.Elapsed.Round(time.Millisecond), sum.PerSecond, sum.Rejected, map[bool]string{true: ", resumed", false: ""}[sum.Resumed])
	return sum.WriteBreakdown(stdout)
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
	other, err = wiring.NewRuntime(ctx, cfg, env.log, wiring.Options{Admin: live.Admin})
	if err != nil {
		live.Close()
		return nil, nil, err
	}
	return live, other, nil
}

// diffOptions are the flags of diff.
type diffOptions struct {
	ns      string
	sample  int
	outputs bool
}

func diffCommand(out *cmdline.Output) *cobra.Command {
	var o diffOptions
	cmd := &cobra.Command{
		Use:   "diff --namespace NS",
		Short: "compare a replay namespace's state and shadow outputs with live (a table, or JSON with -o json)",
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDiff(cmd.Context(), o, out, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.ns, "namespace", "", "replay namespace to compare with live")
	fs.IntVar(&o.sample, "sample", 10, "how many differing customers to show")
	fs.BoolVar(&o.outputs, "outputs", true, "also compare derived event ids on live and shadow topics")
	out.AddJSONAlias(cmd)
	return cmd
}

func runDiff(ctx context.Context, o diffOptions, out *cmdline.Output, stdout io.Writer) error {
	ns, sample, outputs := &o.ns, &o.sample, &o.outputs // the names the body had before cobra
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
	meta, ok, err := replay.LoadMetadata(ctx, rep.ReplayNamespace())
	if err != nil {
		return err
	}
	var shadow *replay.Outputs
	if *outputs && ok && meta.Outputs == replay.OutputsShadow {
		shadow = live.ReplayOutputs()
	}
	d, err := replay.Compare(ctx, live.ReplayScores(), rep.ReplayScores(), *sample, shadow)
	if err != nil {
		return err
	}
	if out.JSON() {
		return cmdline.WriteJSON(stdout, d)
	}
	return d.WriteTable(stdout)
}

// namespaceCommand is a command whose one required flag is --namespace (described by usage);
// run gets the namespace.
func namespaceCommand(name, short, usage string, run func(ctx context.Context, ns string, stdout io.Writer) error) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   name + " --namespace NS",
		Short: short,
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), ns, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&ns, "namespace", "", usage)
	return cmd
}

// withNamespace runs f with the live runtime and the runtime of the namespace ns.
func withNamespace(ctx context.Context, ns string, f func(env *environment, live, other *wiring.Runtime) error) error {
	if ns == "" {
		return Usagef("--namespace: required")
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	live, other, err := runtimes(ctx, env, ns)
	if err != nil {
		return err
	}
	defer live.Close()
	defer other.Close()
	return f(env, live, other)
}

// NamespaceChange is what promote and drop print with -o json.
type NamespaceChange struct {
	Namespace string `json:"namespace"`
	// Previous is the namespace that was live before a promotion.
	Previous string `json:"previous,omitempty"`
	// KeysDeleted is how many keys a drop deleted.
	KeysDeleted int64 `json:"keys_deleted,omitempty"`
	// TopicsDeleted are the shadow topics a drop deleted (replay.DropOutputs).
	TopicsDeleted []string `json:"topics_deleted,omitempty"`
}

func promoteCommand(out *cmdline.Output) *cobra.Command {
	var catchUp time.Duration
	cmd := namespaceCommand("promote", "make a finished replay namespace live", "finished replay namespace to make live",
		func(ctx context.Context, ns string, stdout io.Writer) error {
			return runPromote(ctx, ns, catchUp, out, stdout)
		})
	cmd.Flags().DurationVar(&catchUp, "catch-up-timeout", 5*time.Minute,
		"wait up to this long for the live consumers to process every record the replay applied, so their derived events are published live (0: do not wait; those events stay on the shadow topics)")
	return cmd
}

func dropCommand(out *cmdline.Output) *cobra.Command {
	var keepTopics bool
	cmd := namespaceCommand("drop", "delete a namespace that is not live, with its replay's shadow topics and consumer group", "namespace to delete",
		func(ctx context.Context, ns string, stdout io.Writer) error {
			return runDrop(ctx, ns, keepTopics, out, stdout)
		})
	cmd.Flags().BoolVar(&keepTopics, "keep-topics", false,
		"keep the replay's shadow topics (<topic>.replay.<namespace>) and its consumer group; delete only the Redis keys")
	return cmd
}

func runPromote(ctx context.Context, ns string, catchUp time.Duration, out *cmdline.Output, stdout io.Writer) error {
	if catchUp < 0 {
		return Usagef("--catch-up-timeout %s: must not be negative", catchUp)
	}
	return withNamespace(ctx, ns, func(env *environment, _, rep *wiring.Runtime) error {
		previous, err := replay.Promote(ctx, rep.ReplayNamespace(), rep.Deployment, rep.Admin, replay.Topics{Suffix: rep.TopicSuffix}, env.cfg.Namespace, catchUp)
		if err != nil {
			return err
		}
		if out.JSON() {
			return cmdline.WriteJSON(stdout, NamespaceChange{Namespace: rep.Keys.Namespace(), Previous: previous})
		}
		fmt.Fprintf(stdout, "namespace %s is live (was %s). Running services restart on it within seconds (exit code %d, restarted by their supervisor); %s is kept until `loyaltyctl drop --namespace %s`.\n",
			rep.Keys.Namespace(), previous, namespace.ExitPromoted, previous, previous)
		return nil
	})
}

func runDrop(ctx context.Context, ns string, keepTopics bool, out *cmdline.Output, stdout io.Writer) error {
	return withNamespace(ctx, ns, func(env *environment, _, other *wiring.Runtime) error {
		n, err := replay.Drop(ctx, other.ReplayNamespace(), other.Deployment, env.cfg.Namespace)
		if err != nil {
			return err
		}
		var topics []string
		if !keepTopics {
			if topics, err = replay.DropOutputs(ctx, other.Admin, replay.Topics{Suffix: other.TopicSuffix}, ns); err != nil {
				return fmt.Errorf("namespace %s dropped (%d keys), but not its Kafka outputs (run drop again to retry): %w", ns, n, err)
			}
		}
		if out.JSON() {
			return cmdline.WriteJSON(stdout, NamespaceChange{Namespace: other.Keys.Namespace(), KeysDeleted: int64(n), TopicsDeleted: topics})
		}
		fmt.Fprintf(stdout, "dropped namespace %s (%d keys", other.Keys.Namespace(), n)
		if !keepTopics {
			fmt.Fprintf(stdout, ", %d shadow topics, consumer group %s", len(topics), replay.Group(ns))
		}
		fmt.Fprintln(stdout, ")")
		return nil
	})
}

// resetOffsetsOptions are the flags of reset-offsets.
type resetOffsetsOptions struct {
	group, toTime, topics string
	earliest              bool
}

// OffsetsReset is one topic's new offsets, a line of reset-offsets -o json.
type OffsetsReset struct {
	Group   string         `json:"group"`
	Topic   string         `json:"topic"`
	Offsets stream.Offsets `json:"offsets"`
}

func resetOffsetsCommand(out *cmdline.Output) *cobra.Command {
	var o resetOffsetsOptions
	cmd := &cobra.Command{
		Use:   "reset-offsets --group G --to-time T|--to-earliest",
		Short: "move a stopped consumer group to a time or the beginning",
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runResetOffsets(cmd.Context(), o, out, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.group, "group", "", "consumer group (its members must be stopped)")
	fs.StringVar(&o.toTime, "to-time", "", "first record at or after this time (RFC 3339 or YYYY-MM-DD)")
	fs.BoolVar(&o.earliest, "to-earliest", false, "the beginning of each partition")
	fs.StringVar(&o.topics, "topics", strings.Join(event.InputTopics(), ","), "comma-separated topics of the group (names without LOYALTY_TOPIC_SUFFIX, which is appended)")
	return cmd
}

func runResetOffsets(ctx context.Context, o resetOffsetsOptions, out *cmdline.Output, stdout io.Writer) error {
	group, toTime, earliest, topics := &o.group, &o.toTime, &o.earliest, &o.topics // the names the body had before cobra
	enc := json.NewEncoder(stdout)
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
	admin, err := env.admin()
	if err != nil {
		return err
	}
	defer admin.Close()
	for _, logical := range strings.Split(*topics, ",") {
		topic := strings.TrimSpace(logical) + env.cfg.TopicSuffix
		offs, err := admin.OffsetsForTime(ctx, topic, at)
		if err != nil {
			return err
		}
		if err := admin.CommitGroupOffsets(ctx, *group, topic, offs); err != nil {
			return err
		}
		if out.JSON() {
			if err := enc.Encode(OffsetsReset{Group: *group, Topic: topic, Offsets: offs}); err != nil {
				return fmt.Errorf("writing offsets: %w", err)
			}
			continue
		}
		fmt.Fprintf(stdout, "%s %s → %v\n", *group, topic, offs)
	}
	return nil
}
