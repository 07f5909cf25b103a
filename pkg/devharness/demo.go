package devharness

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/console"
	"github.com/loyalty-scoring/loyalty/pkg/embedded"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/ops"
	"github.com/loyalty-scoring/loyalty/pkg/supervise"
	"github.com/loyalty-scoring/loyalty/pkg/synth"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

const demoHelp = `Runs the whole pipeline in this process: an in-process Kafka-protocol broker, redis-server (or
an in-process Redis when it is not installed), the purchases, logins and feedback consumers, the
outbox relay, the inactivity sweeper and the notifier (delivering to the log). It produces months of generated customer history, shows
progress on stderr every second, and prints a summary on stdout when it stops: after --for, or
on Ctrl-C.`

// demoOptions are the demo's settings; the flags of `loyalty-dev demo`.
type demoOptions struct {
	For       time.Duration // 0: until ctx ends (Ctrl-C)
	Customers int
	Months    int
	Rate      float64 // events per second; 0: as fast as the pipeline takes them
	Seed      uint64
	DataDir   string
	Redis     string // auto, redis-server or miniredis
	HTTP      string // ops server address; "off" disables it
	// Console is the loyalty console's address; "" or "off" disables it.
	Console string
	// Progress is the interval of the progress report.
	Progress time.Duration
	// Lead bounds how far, in event time, the producer runs ahead of the applied history.
	Lead time.Duration
	// StopAfterApplied, when positive, stops the demo this long after the whole history has
	// been applied (For still caps the run). Tests use it to finish as soon as they can.
	StopAfterApplied time.Duration
}

func (o demoOptions) validate() error {
	switch {
	case o.For < 0:
		return cmdline.Usagef("--for: must not be negative")
	case o.Customers < 1 || o.Customers > 1_000_000:
		return cmdline.Usagef("--customers: %d is not in 1..1000000", o.Customers)
	case o.Months < 1 || o.Months > 60:
		return cmdline.Usagef("--months: %d is not in 1..60", o.Months)
	case o.Rate < 0:
		return cmdline.Usagef("--rate: must not be negative")
	case o.Redis != "auto" && o.Redis != "redis-server" && o.Redis != "miniredis":
		return cmdline.Usagef("--redis: %q is not auto, redis-server or miniredis", o.Redis)
	case o.Progress <= 0:
		return cmdline.Usagef("progress interval: must be positive")
	}
	return nil
}

func demoCommand() *cobra.Command {
	o := demoOptions{Progress: time.Second}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "run the whole pipeline in-process on generated customers (no Kafka or Redis needed)",
		Long:  demoHelp,
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			sum, err := runDemoPipeline(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			sum.print(cmd.OutOrStdout())
			return nil
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&o.For, "for", 0, "stop after this long and print the summary (default: run until Ctrl-C)")
	fs.IntVar(&o.Customers, "customers", 5000, "number of generated customers")
	fs.IntVar(&o.Months, "months", 12, "months of history, ending now")
	fs.Float64Var(&o.Rate, "rate", 0, "events produced per second (0: as fast as possible)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the generated population")
	fs.StringVar(&o.DataDir, "data-dir", defaultDemoDir(), "directory for the broker's log and Redis's files (the broker's log is cleared at start)")
	fs.StringVar(&o.Redis, "redis", "auto", "auto (redis-server when on the PATH, else in-process), redis-server or miniredis")
	fs.DurationVar(&o.Lead, "lead", 72*time.Hour, "how far in event time the producer may run ahead of the consumers (0: no limit)")
	fs.StringVar(&o.HTTP, "http", "127.0.0.1:0", "address of the /metrics, /healthz and /readyz server, or off")
	fs.StringVar(&o.Console, "console", "127.0.0.1:0", "address of the loyalty console (user demo, a password printed at start), or off")
	return cmd
}

// defaultDemoDir is under the user's cache directory, or .run/demo when there is none.
func defaultDemoDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "loyalty-demo")
	}
	return filepath.Join(".run", "demo")
}

// demoMarker marks a data directory as the demo's, so that clearing its broker log at start can
// never delete somebody else's files.
const demoMarker = ".loyalty-demo"

// prepareDataDir creates dir and returns its empty kafka subdirectory. The broker's log is
// cleared at every start: Redis does not persist between runs, so offsets committed by a
// previous run would skip its history.
func prepareDataDir(dir string) (kafkaDir string, err error) {
	kafkaDir = filepath.Join(dir, "kafka")
	if _, err := os.Stat(kafkaDir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return "", fmt.Errorf("refusing to clear %s: %s was not created by the demo (choose another --data-dir)", kafkaDir, dir)
		}
		if err := os.RemoveAll(kafkaDir); err != nil {
			return "", fmt.Errorf("clearing the broker log: %w", err)
		}
	}
	if err := os.MkdirAll(kafkaDir, 0o755); err != nil {
		return "", fmt.Errorf("creating the data directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, demoMarker), []byte("created by loyaltyctl demo; its kafka/ is cleared at every start\n"), 0o644); err != nil {
		return "", fmt.Errorf("marking the data directory: %w", err)
	}
	return kafkaDir, nil
}

// demoRedis is the Redis-protocol server the demo runs on.
type demoRedis struct {
	addr string
	kind string // redis-server or miniredis
	stop func()
}

// startDemoRedis starts the server mode asks for: auto is redis-server when it is on the PATH
// and miniredis otherwise.
func startDemoRedis(ctx context.Context, mode, dir string) (*demoRedis, error) {
	if mode == "miniredis" {
		m, err := miniredis.Run()
		if err != nil {
			return nil, fmt.Errorf("starting in-process redis: %w", err)
		}
		return &demoRedis{addr: m.Addr(), kind: "miniredis", stop: m.Close}, nil
	}
	start := embedded.StartRedis
	if mode == "redis-server" {
		start = embedded.StartRedisServer
	}
	r, err := start(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("starting redis: %w", err)
	}
	return &demoRedis{addr: r.Addr, kind: r.Kind, stop: func() { _ = r.Close() }}, nil
}

const (
	demoNamespace  = "demo"
	demoPartitions = 3
	// demoBatch is the most records per produce call at full speed: large enough to keep the
	// broker busy, small enough that the sweeper's clock advances smoothly.
	demoBatch = 2000
)

// runDemoPipeline runs the demo until o.For has passed or ctx ends, and returns its summary.
func runDemoPipeline(ctx context.Context, o demoOptions, stderr io.Writer) (*demoSummary, error) {
	started := time.Now()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	if o.For > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(runCtx, started.Add(o.For))
		defer cancel()
	}

	kafkaDir, err := prepareDataDir(o.DataDir)
	if err != nil {
		return nil, err
	}
	kafka, err := embedded.StartKafka(kafkaDir, demoPartitions)
	if err != nil {
		return nil, err
	}
	defer kafka.Close()
	rdb, err := startDemoRedis(ctx, o.Redis, filepath.Join(o.DataDir, "redis"))
	if err != nil {
		return nil, err
	}
	defer rdb.stop()
	kind := map[string]string{"redis-server": "redis-server (child process)", "miniredis": "miniredis (in-process; redis-server is not on the PATH)"}[rdb.kind]
	if o.Redis == "miniredis" {
		kind = "miniredis (in-process, as --redis asks)"
	}
	fmt.Fprintf(stderr, "demo: kafka  kfake (in-process) on %s, log in %s\n", strings.Join(kafka.Brokers(), ","), kafkaDir)
	fmt.Fprintf(stderr, "demo: redis  %s on %s\n", kind, rdb.addr)

	cfg, err := config.Load(func(k string) string {
		return map[string]string{"KAFKA_BROKERS": strings.Join(kafka.Brokers(), ","), "REDIS_ADDR": rdb.addr,
			"LOYALTY_NAMESPACE": demoNamespace, "HTTP_ADDR": "off", "KAFKA_PARTITIONS": strconv.Itoa(demoPartitions),
			"LOYALTY_SHARDS": "16", "BATCH_LINGER": "5ms", "LOG_LEVEL": "warn"}[k]
	}, "")
	if err != nil {
		return nil, fmt.Errorf("configuring the pipeline: %w", err)
	}
	log, err := cfg.Logger("demo")
	if err != nil {
		return nil, err
	}
	defer func() { _ = log.Sync() }()
	rt, err := wiring.NewRuntime(runCtx, cfg, log, wiring.Options{})
	if err != nil {
		return nil, fmt.Errorf("starting the pipeline runtime: %w", err)
	}
	defer rt.Close()
	if o.HTTP != "off" {
		addr, stopHTTP, err := serveOps(rt.Ops, o.HTTP, log)
		if err != nil {
			return nil, err
		}
		defer stopHTTP()
		fmt.Fprintf(stderr, "demo: metrics http://%s/metrics\n", addr)
	}

	// The history ends at the start of today (UTC): recent enough to be "now" for the sweeper,
	// and every run of the same seed on the same day replays exactly the same events.
	end := time.Now().UTC().Truncate(24 * time.Hour)
	gen, err := synth.New(synth.Config{Customers: o.Customers, Months: o.Months, End: end, Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	historyStart := end.AddDate(0, -o.Months, 0)
	fmt.Fprintf(stderr, "demo: %d customers, %d months of history (%s to %s), seed %d\n", o.Customers, o.Months,
		historyStart.UTC().Format(time.DateOnly), end.UTC().Format(time.DateOnly), o.Seed)

	inputs := []string{rt.Topic(event.TopicPurchases), rt.Topic(event.TopicLogins), rt.Topic(event.TopicFeedback)}
	clock := newEventClock(historyStart, func() map[string]float64 { return recordsIn(rt.Ops.Registry) })
	// Caught-up consumers count as the event clock, not the wall clock. The watermark counts a
	// caught-up input partition as its consumer's heartbeat, by default the wall clock, which
	// is right when events arrive live. The demo replays months of history in seconds, and its
	// consumers are often caught up with a producer that is still months in the past; with the
	// wall clock the sweeper would evaluate every customer "today" before most of their
	// history arrived. The event clock instead says how far the applied history reaches, and
	// becomes the wall clock once all of it is applied.
	rt.Clock = clock.Now
	tally := newTally(o.Customers)

	// The collector reads the derived events (and dead letters) the relay publishes.
	collect, err := newCollector(rt.Config.KafkaBrokers, rt.Topic, rt.Codec, tally, log)
	if err != nil {
		return nil, err
	}
	collectCtx, stopCollect := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCollect()
	collectDone := make(chan error, 1)
	go func() { collectDone <- collect.Run(collectCtx) }()

	// Every service of the pipeline, in this process. They stop when the demo does, after the
	// producer, so that they drain what was produced.
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServices()
	// One supervisor for the services (pkg/supervise, as in every service binary): when one
	// fails, the others stop. An error a task returns once the services are being stopped is
	// part of the shutdown, not a failure.
	var services supervise.Group
	named := func(name string, run supervise.Task) supervise.Task {
		return func(ctx context.Context) error {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}
	}
	for _, in := range event.InputStreams() {
		services.Add(named(in.Service, func(ctx context.Context) error {
			return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: in.Service, Topics: []string{in.Topic}})
		}))
	}
	services.Add(
		named("relay", func(ctx context.Context) error { return wiring.RunRelay(ctx, rt, nil) }),
		named("sweeper", func(ctx context.Context) error { return wiring.RunSweeperWith(ctx, rt, nil) }),
		named("notifier", func(ctx context.Context) error {
			return wiring.RunNotifier(ctx, rt, notifier.Config{Channels: notifier.LogChannels()})
		}))
	if o.Console != "" && o.Console != "off" {
		password, err := demoPassword()
		if err != nil {
			return nil, err
		}
		cfg := wiring.ConsoleConfig{Addr: o.Console, Console: console.Config{User: "demo", Password: password}}
		services.Add(named("console", func(ctx context.Context) error {
			return wiring.RunConsole(ctx, rt, cfg, func(addr string) {
				fmt.Fprintf(stderr, "demo: console http://%s/ (user demo, password %s)\n", addr, password)
			})
		}))
	}
	servicesDone := make(chan error, 1)
	go func() { servicesDone <- services.Run(svcCtx) }()

	prod := &producer{out: rt.Producer, codec: rt.Codec, gen: gen, clock: clock, rate: o.Rate, lead: o.Lead, topics: map[string]string{
		"Purchase": inputs[0], "Login": inputs[1], "Feedback": inputs[2]}}
	prodDone := make(chan error, 1)
	go func() { prodDone <- prod.run(runCtx) }()

	progress := newProgress(stderr, started, historyStart, end)
	ticker := time.NewTicker(o.Progress)
	defer ticker.Stop()
	var runErr error
	produced := prodDone // nil once the producer has finished
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case err := <-servicesDone:
			servicesDone = nil
			runErr = cmp.Or(err, errors.New("the services stopped before the run ended"))
			break loop
		case err := <-produced:
			produced = nil
			if err != nil {
				runErr = err
				break loop
			}
		case <-ticker.C:
			progress.report(prod.snapshot(), processed(recordsIn(rt.Ops.Registry), inputs), clock.Reached(), tally.snapshot())
			if after := clock.appliedAfter(started); o.StopAfterApplied > 0 && after > 0 && time.Since(started) >= after+o.StopAfterApplied {
				break loop
			}
		}
	}

	// Graceful stop: the producer first, then the services (each consumer drains its batch, the
	// relay its last publish), then the collector once the output has gone quiet.
	stopRun()
	if produced != nil {
		if err := <-produced; err != nil && runErr == nil {
			runErr = err
		}
	}
	stopServices()
	if servicesDone != nil {
		if err := <-servicesDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	tally.waitQuiet(500*time.Millisecond, 5*time.Second)
	stopCollect()
	if err := <-collectDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("collecting derived events: %w", err)
	}
	progress.finish()
	if runErr != nil {
		return nil, runErr
	}
	return newSummary(o, rdb.kind, time.Since(started), prod.snapshot(), processed(recordsIn(rt.Ops.Registry), inputs), clock.appliedAfter(started), tally.snapshot()), nil
}

// serveOps serves the ops server's endpoints on addr and returns the bound address.
func serveOps(srvOps *ops.Server, addr string, log *zap.Logger) (string, func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: srvOps.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("serving metrics", zap.Error(err))
		}
	}()
	return l.Addr().String(), func() { _ = srv.Close() }, nil
}

// demoPassword is a fresh random password for the demo's console.
func demoPassword() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making the console password: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
