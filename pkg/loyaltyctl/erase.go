package loyaltyctl

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"

	"github.com/loyalty-scoring/loyalty/pkg/erasure"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func init() {
	Register(Command{Name: "erase", Summary: "GDPR erasure: remove a customer everywhere and keep them out of replays (erase ID)", Run: runErase})
}

func runErase(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("erase", flag.ContinueOnError)
	fs.SetOutput(stderr)
	by := fs.String("requested-by", os.Getenv("USER"), "who asked (operator or ticket reference), recorded in the erasure event")
	if err := fs.Parse(args); err != nil {
		return Usagef("%v", err)
	}
	if fs.NArg() != 1 {
		return Usagef("usage: loyaltyctl erase [--requested-by WHO] ID")
	}
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
	res, err := svc.Erase(ctx, fs.Arg(0), *by, erasureKeys...)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// erasureKeys are the other components whose per-customer data erasure must remove.
var erasureKeys = []erasure.Eraser{notifier.EraseCustomer}
