package loyaltyctl

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/erasure"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func eraseCommand(out *cmdline.Output) *cobra.Command {
	var by string
	cmd := &cobra.Command{
		Use:   "erase ID",
		Short: "GDPR erasure: remove a customer everywhere and keep them out of replays",
		Args:  cmdline.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runErase(cmd.Context(), args[0], by, out, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&by, "requested-by", os.Getenv("USER"), "who asked (operator or ticket reference), recorded in the erasure event")
	return cmd
}

func runErase(ctx context.Context, id, by string, out *cmdline.Output, stdout io.Writer) error {
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	rt, err := wiring.NewRuntime(ctx, env.cfg, env.log, wiring.Options{FollowActive: true})
	if err != nil {
		return err
	}
	defer rt.Close()
	svc, err := erasure.New(erasure.Config{Deployment: rt.Config.Deployment, Shards: rt.Keys.Shards(),
		Topic: rt.Topic(event.TopicErasures)}, rt.Redis, rt.Codec, rt.Producer)
	if err != nil {
		return err
	}
	res, err := svc.Erase(ctx, id, by, notifier.EraseCustomer) // and the notifier's per-customer keys
	if err != nil {
		return err
	}
	if out.JSON() {
		return cmdline.WriteJSON(stdout, res)
	}
	_, err = fmt.Fprintf(stdout, "erased customer %s: %d keys removed in %d namespaces; the erasure is recorded (requested by %s)\n",
		id, res.Removed, res.Namespaces, by)
	return err
}
