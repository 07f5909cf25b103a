package loyaltyctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/profile"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

// CustomerView is what `loyaltyctl customer` prints: the customer's profile.
type CustomerView = profile.View

func customerCommand(out *cmdline.Output) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "customer ID",
		Short: "print a customer's state, scores, tier, churn level and next deadline",
		Args:  cmdline.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCustomer(cmd.Context(), args[0], ns, out, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&ns, "namespace", "", "key namespace (default LOYALTY_NAMESPACE or live)")
	return cmd
}

func runCustomer(ctx context.Context, id, ns string, out *cmdline.Output, stdout io.Writer) error {
	return withNamespaceKeys(ctx, ns, func(env *environment, rdb redisconn.Client, keys keyspace.Keyspace) error {
		return printCustomer(ctx, env, rdb, keys, id, out, stdout)
	})
}

func printCustomer(ctx context.Context, env *environment, rdb redisconn.Client, keys keyspace.Keyspace, id string, out *cmdline.Output, stdout io.Writer) error {
	store, err := state.New(ctx, rdb, keys, nil)
	if err != nil {
		return err
	}
	cur, err := store.Current(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("customer %q has no state in namespace %s", id, keys.Namespace())
	}
	if err != nil {
		return err
	}
	policy := scoring.DefaultPolicy()
	if env.cfg.PolicyFile != "" {
		if policy, err = scoring.LoadPolicy(env.cfg.PolicyFile); err != nil {
			return err
		}
	}
	rules, err := notifierRules(policy)
	if err != nil {
		return err
	}
	// Explained with the churn model and cut points the services score with now.
	if policy, err = namespace.PolicyInForce(ctx, rdb, keys, policy); err != nil {
		return err
	}
	view, err := profile.Build(cur, policy, rules.CLV)
	if err != nil {
		return err
	}
	view.Namespace = keys.Namespace()
	if d, ok, err := store.Deadline(ctx, id); err != nil {
		return err
	} else if ok {
		view.NextDeadline = &d
	}
	if out.JSON() {
		return cmdline.WriteJSON(stdout, view)
	}
	return view.WriteText(stdout)
}

// notifierRules are the notifier's rules (NOTIFIER_RULES_FILE, else the defaults): the CLV
// definition the profile shares with the notifier.
func notifierRules(policy *scoring.Policy) (*notifier.Rules, error) {
	if path := os.Getenv(notifier.EnvRulesFile); path != "" {
		r, err := notifier.LoadRules(path, policy)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", notifier.EnvRulesFile, err)
		}
		return r, nil
	}
	return notifier.DefaultRules(), nil
}
