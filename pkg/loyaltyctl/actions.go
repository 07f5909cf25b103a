package loyaltyctl

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
)

func init() {
	Register(Command{Name: "actions", Summary: "list a customer's recent notifier decisions, newest first (customer ID)", Run: runActions})
}

func runActions(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("actions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("namespace", "", "key namespace (default LOYALTY_NAMESPACE or live)")
	limit := fs.Int("n", 20, "most entries to show (the notifier keeps the latest "+fmt.Sprint(notifier.HistoryCap)+")")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if err := fs.Parse(args); err != nil {
		return Usagef("%v", err)
	}
	if fs.NArg() != 1 || *limit < 1 {
		return Usagef("usage: loyaltyctl actions [--namespace NS] [-n N] [--json] ID")
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	if *ns != "" {
		env.cfg.Namespace = *ns
	}
	keys, err := keyspace.New(env.cfg.Namespace, env.cfg.Shards)
	if err != nil {
		return err
	}
	rdb, err := env.redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	entries, err := notifier.History(ctx, rdb, keys, fs.Arg(0), *limit)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return fmt.Errorf("no decisions recorded for customer %q in namespace %s", fs.Arg(0), keys.Namespace())
	}
	if *asJSON {
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
