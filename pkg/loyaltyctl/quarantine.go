package loyaltyctl

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func quarantineCommand(out *cmdline.Output) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "customers whose stored state could not be read: list, show the kept copy, release",
		Long: `A customer whose stored state cannot be read is quarantined instead of stalling its partition:
the stored value is kept under its own key, the customer's records go to the dead-letter topic
(codes corrupt_state, then quarantined) and the rest of the pipeline goes on. Release starts the
customer afresh; replay its records (from the dead-letter topic, or a replay of the input
topics into a new namespace) to rebuild its history.

Release after a replay of the customer (--from-replay NS): replay the input topics into a new
namespace (loyaltyctl replay --from 2000-01-01 --namespace NS --outputs none), then release the
customer with --from-replay NS. Its replayed state replaces the tombstone, brought up to date
with its records that arrived after the replay (they were turned away while it was
quarantined); their derived events are published, those of the replayed history are not. The
services keep running; one replay serves every quarantined customer.`,
		Args: cmdline.Args(cobra.NoArgs),
	}
	cmd.PersistentFlags().StringVar(&ns, "namespace", "", "key namespace (default LOYALTY_NAMESPACE or live)")
	list := &cobra.Command{
		Use:   "list",
		Short: "list the quarantined customers with the reason and time",
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNamespaceKeys(cmd.Context(), ns, func(_ *environment, rdb redisconn.Client, keys keyspace.Keyspace) error {
				qs, err := state.ListQuarantined(cmd.Context(), rdb, keys)
				if err != nil {
					return err
				}
				if out.JSON() {
					return cmdline.WriteJSON(cmd.OutOrStdout(), qs)
				}
				return writeQuarantined(cmd.OutOrStdout(), keys.Namespace(), qs)
			})
		},
	}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "print what was stored for a quarantined customer",
		Args:  cmdline.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNamespaceKeys(cmd.Context(), ns, func(_ *environment, rdb redisconn.Client, keys keyspace.Keyspace) error {
				kept, err := state.QuarantinedCopy(cmd.Context(), rdb, keys, args[0])
				if err != nil {
					return err
				}
				if kept == nil {
					return fmt.Errorf("%w: %s", state.ErrNotQuarantined, args[0])
				}
				return cmdline.WriteJSON(cmd.OutOrStdout(), kept)
			})
		},
	}
	var fromReplay string
	release := &cobra.Command{
		Use:   "release ID [--from-replay NS]",
		Short: "end a customer's quarantine: afresh, or with its state from a replay namespace",
		Args:  cmdline.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromReplay != "" {
				return rebuildFromReplay(cmd, out, ns, fromReplay, args[0])
			}
			return withNamespaceKeys(cmd.Context(), ns, func(_ *environment, rdb redisconn.Client, keys keyspace.Keyspace) error {
				if err := state.ReleaseQuarantined(cmd.Context(), rdb, keys, args[0]); err != nil {
					return err
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "released %s in namespace %s: its next record starts it afresh\n", args[0], keys.Namespace())
				return err
			})
		},
	}
	release.Flags().StringVar(&fromReplay, "from-replay", "", "a finished replay namespace (loyaltyctl replay) to take the customer's state from")
	cmd.AddCommand(list, show, release)
	return cmd
}

// rebuildFromReplay releases customer id with its state from the replay namespace replayNS.
func rebuildFromReplay(cmd *cobra.Command, out *cmdline.Output, ns, replayNS, id string) error {
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	if ns != "" {
		env.cfg.Namespace = ns
	}
	// The live namespace: the one named, or the promoted one.
	sum, err := wiring.RebuildQuarantined(cmd.Context(), env.cfg, ns == "", replayNS, id, env.log)
	if err != nil {
		return err
	}
	if out.JSON() {
		return cmdline.WriteJSON(cmd.OutOrStdout(), sum)
	}
	from := "its state from the replay"
	if !sum.Replayed {
		from = "no state in the replay (its records all came later)"
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "released %s with %s in %s, then %d later records applied (%d refused), %d derived events published\n",
		id, from, replayNS, sum.Applied, sum.Rejected, sum.Derived)
	return err
}

// withNamespaceKeys runs f with the environment, a Redis client and the keys of the namespace
// ns (default: the configured one).
func withNamespaceKeys(ctx context.Context, ns string, f func(*environment, redisconn.Client, keyspace.Keyspace) error) error {
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	if ns != "" {
		env.cfg.Namespace = ns
	}
	rdb, err := env.redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	keys, err := keyspace.New(env.cfg.Namespace, env.cfg.Shards)
	if err != nil {
		return err
	}
	return f(env, rdb, keys)
}

func writeQuarantined(w io.Writer, ns string, qs []state.Quarantined) error {
	if len(qs) == 0 {
		_, err := fmt.Fprintf(w, "no customer is quarantined in namespace %s\n", ns)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CUSTOMER\tSINCE\tREASON\n")
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", q.Customer, q.At.Format(time.RFC3339), q.Reason)
	}
	return tw.Flush()
}
