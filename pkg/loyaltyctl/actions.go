package loyaltyctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
)

func actionsCommand(out *cmdline.Output) *cobra.Command {
	var ns string
	var limit int
	cmd := &cobra.Command{
		Use:   "actions ID",
		Short: "list a customer's recent notifier decisions, newest first (a table, or JSON lines with -o json)",
		Args:  cmdline.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return Usagef("-n: %d is not a positive number of entries", limit)
			}
			return runActions(cmd.Context(), args[0], limit, out.JSON(), cmd.OutOrStdout())
		},
	}
	// Decisions belong to the deployment (LOYALTY_DEPLOYMENT), so they survive a promote.
	cmd.Flags().StringVar(&ns, "namespace", "", "ignored: decisions belong to the deployment, not to a namespace")
	_ = cmd.Flags().MarkDeprecated("namespace", "decisions belong to the deployment (LOYALTY_DEPLOYMENT); the flag is ignored")
	cmd.Flags().IntVarP(&limit, "n", "n", 20, "most entries to show (the notifier keeps the latest "+fmt.Sprint(notifier.HistoryCap)+")")
	out.AddJSONAlias(cmd)
	return cmd
}

func runActions(ctx context.Context, id string, limit int, asJSON bool, stdout io.Writer) error {
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	keys, err := keyspace.New(env.cfg.Namespace, env.cfg.Shards)
	if err != nil {
		return err
	}
	d, err := keyspace.NewDeployment(env.cfg.Deployment)
	if err != nil {
		return err
	}
	rdb, err := env.redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	entries, err := notifier.History(ctx, rdb, keys, d, id, limit)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return fmt.Errorf("no decisions recorded for customer %q in deployment %s", id, d.Name())
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DECIDED AT\tKIND\tOUTCOME\tREASON\tATTEMPTS\tCHANNEL\tACTION ID\tTRIGGER EVENT ID")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.DecidedAt, e.Kind, e.Outcome, e.Reason, e.Attempts, e.Channel, e.ActionID, e.TriggerEventID)
	}
	return tw.Flush()
}
