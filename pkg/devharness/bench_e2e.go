package devharness

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/e2e"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/ops"
	"github.com/loyalty-scoring/loyalty/pkg/pipeline"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/relay"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// BenchReport is the result of one end-to-end benchmark run (the JSON form).
type BenchReport struct {
	Events    int     `json:"events"`
	Customers int     `json:"customers"`
	Namespace string  `json:"namespace"`
	Suffix    string  `json:"topic_suffix"`
	Rate      float64 `json:"produce_rate_limit"`
	Kafka     string  `json:"kafka"`
	// Compression is the codec of every batch the services and the generator produce
	// (KAFKA_COMPRESSION).
	Compression string `json:"compression"`
	// ServiceMemoryLimit is each service's GOMEMLIMIT in bytes (--service-memory-limit; 0: none).
	ServiceMemoryLimit int64  `json:"service_memory_limit,omitempty"`
	Redis              string `json:"redis"`
	CPUs               int    `json:"cpus"`
	// ProduceSeconds is how long producing the input took; ProduceEventsPerSec its rate.
	ProduceSeconds      float64 `json:"produce_seconds"`
	ProduceEventsPerSec float64 `json:"produce_events_per_sec"`
	// ConsumedSeconds is from the first produce until every input record was committed by
	// its consumer group; EventsPerSec = Events / ConsumedSeconds (sustained, end to end).
	ConsumedSeconds float64 `json:"consumed_seconds"`
	EventsPerSec    float64 `json:"events_per_sec"`
	// DrainedSeconds is until the outbox was empty and no deadline was due.
	DrainedSeconds float64 `json:"drained_seconds"`
	Derived        int     `json:"derived_events"`
	// Latency is from the produce time of the input record named in a derived event's
	// source to the moment the benchmark consumed the derived event (sweeper events, which
	// no record triggers, are not counted). Live runs also report LatencySteady: the events
	// produced after the same 10 s warm-up as the watermark lag, and before any outage.
	Latency       Latency  `json:"latency"`
	LatencySteady *Latency `json:"latency_steady,omitempty"`
	// BytesPerCustomer is the mean MEMORY USAGE of sampled customers' state keys (key
	// included); CompactEncoded the share of them stored as one compact value.
	BytesPerCustomer float64 `json:"redis_bytes_per_customer"`
	// TransitionBytesPerCustomer is the mean MEMORY USAGE of the same customers' transition
	// lists (0 for a customer without one): the console's recent changes, stored beside the
	// state and as much part of a customer's cost.
	TransitionBytesPerCustomer float64 `json:"redis_transition_bytes_per_customer"`
	BytesSampled               int     `json:"redis_customers_sampled"`
	CompactEncoded             float64 `json:"redis_compact_share"`
	// StoreWrites and StoreConflicts are summed over every service's /metrics;
	// ConflictRate = conflicts / (writes + conflicts), the share of write attempts retried.
	StoreWrites    float64 `json:"store_writes"`
	StoreConflicts float64 `json:"store_conflicts"`
	ConflictRate   float64 `json:"store_conflict_rate"`
	// WritesByService is each service's share of StoreWrites; SweeperEvaluations the
	// customers the sweeper evaluated at their deadlines (loyalty_sweeper_evaluations_total).
	WritesByService    map[string]float64 `json:"store_writes_by_service"`
	SweeperEvaluations float64            `json:"sweeper_evaluations"`
	// ConflictsByService is each service's share of StoreConflicts: a consumer retries its
	// conflicts, the sweeper leaves them due for its next pass.
	ConflictsByService map[string]float64 `json:"store_conflicts_by_service"`
	// Live runs only (--live): event time is the produce time, and the sweeper's
	// loyalty_watermark_lag_seconds is sampled every half second while producing.
	// WatermarkLag* are over the steady state (after a 10 s warm-up, before any outage). With
	// traffic on every partition the watermark is the oldest partition's newest applied event
	// time; only an idle partition counts as its heartbeat less the allowed lateness.
	Live                bool    `json:"live,omitempty"`
	WatermarkLagSamples int     `json:"watermark_lag_samples,omitempty"`
	WatermarkLagP50     float64 `json:"watermark_lag_p50_seconds,omitempty"`
	WatermarkLagP99     float64 `json:"watermark_lag_p99_seconds,omitempty"`
	WatermarkLagMax     float64 `json:"watermark_lag_max_seconds,omitempty"`
	// With --outage: the service stopped for OutageSeconds (--outage-at into the run),
	// the largest lag meanwhile, and how long after its restart the watermark was back within
	// 5 s (plus the steady-state median) of the newest event produced by then
	// (RecoverySeconds; -1 if it never was before every record was consumed).
	OutageService   string  `json:"outage_service,omitempty"`
	OutageSeconds   float64 `json:"outage_seconds,omitempty"`
	OutageLagMax    float64 `json:"outage_watermark_lag_max_seconds,omitempty"`
	RecoverySeconds float64 `json:"recovery_seconds,omitempty"`
	// CPU is each process's CPU time from the first produce until the pipeline drained (the
	// broker and Redis when they run on this machine, found by their listening ports; the
	// benchmark process as the generator, which also collects the derived events), largest
	// first, with µs per input event. MachineCPUSeconds is the whole machine's busy time over
	// the same span (every process, the benchmark included), MachineBusyShare its share of
	// all CPUs' time.
	CPU                   []ProcessCPU `json:"cpu"`
	MachineCPUSeconds     float64      `json:"machine_cpu_seconds"`
	MachineMicrosPerEvent float64      `json:"machine_cpu_us_per_event"`
	MachineBusyShare      float64      `json:"machine_busy_share"`
	// SteadyBusyShare (live runs) is the machine's busy share from the end of the warm-up to
	// the last produce: the load of the steady rate alone, as LatencySteady is its latency.
	SteadyBusyShare float64 `json:"steady_busy_share,omitempty"`
	// KafkaRequests is what each process asked of the broker, whose cost is mostly per
	// request: the services' loyalty_kafka_* counters over their life, and the generator's
	// producer. The observer that reads the derived events is not counted.
	KafkaRequests []KafkaRequests `json:"kafka_requests"`
	// RedisCommands is what Redis executed over the same span (INFO commandstats), the most
	// time first; a script's time includes the commands it called (redisstats.go).
	RedisCommands []RedisCommand `json:"redis_commands"`
	// Naive is the naive baseline measured after the pipeline, on the same input events and
	// machine (naive.go); nil with --naive-duration 0.
	Naive *NaiveResult `json:"naive,omitempty"`
}

// KafkaRequests are one process's requests to the broker.
type KafkaRequests struct {
	Process string  `json:"process"`
	Fetch   float64 `json:"fetch_requests"`
	Produce float64 `json:"produce_requests"`
}

// benchOptions are the flags of `loyalty-dev bench-e2e`.
type benchOptions struct {
	events, days int
	// runs is how many times the benchmark runs, one after another (BenchSeries from 2 on).
	runs      int
	writeJSON string
	binDir    string
	timeout   time.Duration
	rate      float64
	keep      bool
	output    cmdline.Output
	// live stamps each event with its produce time; outage stops outageService meanwhile.
	live          bool
	outage        time.Duration
	outageAt      time.Duration
	outageService string
	// naive bounds the naive baseline's run (0: no baseline).
	naive time.Duration
	// profile is the directory for the services' CPU and allocation profiles ("": none);
	// profileFor the CPU profiles' length.
	profile    string
	profileFor time.Duration
	// serviceMemory is the soft memory limit of each service process, in bytes (GOMEMLIMIT;
	// 0: none), as gcsettings sets from a container's limit.
	serviceMemory int64
}

func benchE2ECommand() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench-e2e",
		Short: "end-to-end benchmark: produce N events into Kafka with the services running; report events/s, latency, bytes/customer, conflicts",
		Long: `Starts the services from prebuilt binaries (--bin, written by ` + "`make build`" + `) against the Kafka and
Redis of the environment (KAFKA_BROKERS, REDIS_ADDR), in a fresh namespace and topic suffix,
produces --events input events and reports throughput, latency, Redis bytes per customer and
store conflicts: a table, or JSON with --output json.`,
		Args: cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchE2E(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.events, "events", 1_000_000, "input events to produce (about; a realistic mix of purchases, refunds, logins, feedback)")
	fs.IntVar(&o.days, "days", 365, "days of history the events span")
	fs.IntVar(&o.runs, "runs", 1, "run the benchmark this many times, one after another, each in a fresh namespace and topics; from 2 on, a summary of the runs' medians and ranges follows their reports (the JSON: the runs and the summary)")
	fs.StringVar(&o.writeJSON, "write-json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.binDir, "bin", "./bin", "directory with the prebuilt service binaries (make build)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on a run after this long")
	fs.Float64Var(&o.rate, "rate", 0, "produce at most this many events/s (0: as fast as possible, a backlog; below the sustained throughput, the latency is the pipeline's own)")
	fs.BoolVar(&o.live, "live", false, "live traffic: each event's time is its produce time (needs --rate); reports the watermark lag")
	fs.DurationVar(&o.outage, "outage", 0, "with --live: stop --outage-service this long, a third of the way into the run, and report the recovery")
	fs.StringVar(&o.outageService, "outage-service", "logins", "the service --outage stops")
	fs.DurationVar(&o.outageAt, "outage-at", 0, "when into the run --outage begins (0: a third of the way)")
	fs.DurationVar(&o.naive, "naive-duration", 2*time.Minute, "after the pipeline, run the naive kafka-go/go-redis baseline on the same events for at most this long (0: none); needs a plaintext broker")
	fs.StringVar(&o.profile, "profile", "", "write each service's CPU profile (the first --profile-seconds of the run), heap profile (as the CPU profile ends) and allocation profile (at the run's end) into this directory; the services run with PPROF=true")
	fs.DurationVar(&o.profileFor, "profile-seconds", 30*time.Second, "length of the CPU profiles of --profile")
	fs.Var(&byteSize{&o.serviceMemory}, "service-memory-limit", "hold each service's Go heap under this size (GOMEMLIMIT, such as 460MiB: what MEMORY_LIMIT_RATIO 0.9 makes of a 512 MiB container); the generator is not limited")
	fs.BoolVar(&o.keep, "keep", false, "keep the benchmark's Redis namespace and Kafka topics (default: delete its keys and topics at the end)")
	fs.VarP(&o.output, "output", "o", "output format: text (a table) or json")
	return cmd
}

func runBenchE2E(ctx context.Context, o benchOptions, stdout, stderr io.Writer) error {
	if o.events < 1 || o.days < 1 || o.rate < 0 {
		return cmdline.Usagef("--events and --days must be positive, --rate not negative")
	}
	if o.runs < 1 || o.runs > 100 {
		return cmdline.Usagef("--runs %d: want 1..100", o.runs)
	}
	if (o.live && o.rate == 0) || (o.outage > 0 && !o.live) || o.outage < 0 || o.outageAt < 0 {
		return cmdline.Usagef("--live needs --rate, and --outage (positive) needs --live")
	}
	if o.outage > 0 && !slices.Contains(e2e.Services(), o.outageService) {
		return cmdline.Usagef("--outage-service: unknown service %q (one of %v)", o.outageService, e2e.Services())
	}
	bins, err := serviceBinaries(o.binDir)
	if err != nil {
		return err
	}
	env, err := cmdline.LoadEnvironment("loyalty-dev")
	if err != nil {
		return err
	}
	b := &bench{env: env, log: stderr}
	var reps []BenchReport
	for i := range o.runs {
		ro := o
		if o.runs > 1 {
			b.say("run %d of %d", i+1, o.runs)
			if o.profile != "" {
				ro.profile = filepath.Join(o.profile, fmt.Sprintf("run-%d", i+1))
			}
		}
		runCtx, cancel := context.WithTimeout(ctx, o.timeout)
		rep, err := b.run(runCtx, ro, bins)
		cancel()
		if err != nil {
			if o.runs > 1 {
				return fmt.Errorf("run %d of %d: %w", i+1, o.runs, err)
			}
			return err
		}
		reps = append(reps, rep)
		if !o.output.JSON() {
			if o.runs > 1 {
				fmt.Fprintf(stdout, "run %d of %d\n", i+1, o.runs)
			}
			printBenchTable(stdout, rep)
			if o.runs > 1 {
				fmt.Fprintln(stdout)
			}
		}
	}
	var report any = reps[0]
	if o.runs > 1 {
		series := BenchSeries{Runs: reps, Summary: summarize(reps)}
		report = series
		if !o.output.JSON() {
			printBenchSummary(stdout, series.Summary)
		}
	}
	js, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if o.output.JSON() {
		fmt.Fprintf(stdout, "%s\n", js)
	}
	if o.writeJSON != "" {
		if err := os.WriteFile(o.writeJSON, append(js, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
	}
	return nil
}

// serviceBinaries finds every service binary of the benchmark in dir.
func serviceBinaries(dir string) (map[string]string, error) {
	bins := map[string]string{}
	for _, s := range e2e.Services() {
		path := filepath.Join(dir, s)
		if info, err := os.Stat(path); err != nil || info.IsDir() {
			return nil, fmt.Errorf("no %s binary in %s (run make build first, or pass --bin): %w", s, dir, errNoBinary)
		}
		bins[s] = path
	}
	return bins, nil
}

var errNoBinary = errors.New("service binary missing")

type bench struct {
	env *cmdline.Environment
	log io.Writer
}

func (b *bench) say(format string, args ...any) {
	fmt.Fprintf(b.log, "bench-e2e: "+format+"\n", args...)
}

func randomName(prefix string) string {
	buf := make([]byte, 4)
	_, _ = rand.Read(buf)
	return prefix + hex.EncodeToString(buf)
}

func (b *bench) run(ctx context.Context, o benchOptions, bins map[string]string) (BenchReport, error) {
	n, days, rate, keep := o.events, o.days, o.rate, o.keep
	cfg := b.env.Cfg
	rep := BenchReport{Rate: rate, Namespace: randomName("bench-"), Suffix: "." + randomName("bench-"),
		Kafka: strings.Join(cfg.KafkaBrokers, ","), Compression: cfg.KafkaCompression.String(),
		ServiceMemoryLimit: o.serviceMemory, Redis: strings.Join(cfg.Redis.Addrs, ","), CPUs: runtime.NumCPU()}
	codec, err := b.env.Codec(ctx)
	if err != nil {
		return rep, err
	}
	rdb, err := b.env.Redis(ctx)
	if err != nil {
		return rep, err
	}
	defer rdb.Close()
	admin, err := b.env.Admin()
	if err != nil {
		return rep, err
	}
	defer admin.Close()
	keys, err := keyspace.New(rep.Namespace, cfg.Shards)
	if err != nil {
		return rep, err
	}

	// The input, generated and encoded before any clock starts.
	rep.Customers = e2e.CustomersFor(n, days)
	b.say("generating %d customers over %d days", rep.Customers, days)
	history := e2e.History(e2e.HistoryConfig{Customers: rep.Customers, Days: days, End: time.Now().Add(-time.Minute), Seed: 1, Prefix: "b"})
	rep.Events = len(history)
	// Live: event i happens at its scheduled produce time, start + i/rate, so the pipeline
	// sees a steady stream of current events (the history's order, compressed into the run).
	start := time.Now().Add(liveStartAllowance)
	if o.live {
		rep.Live = true
		for i := range history {
			history[i] = e2e.WithTime(history[i], start.Add(time.Duration(float64(i)/rate*float64(time.Second))))
		}
	}
	topicOf := map[string]string{"Purchase": event.TopicPurchases, "Login": event.TopicLogins, "Feedback": event.TopicFeedback}
	recs := make([]stream.Record, len(history))
	for i, in := range history {
		v, err := codec.Encode(in)
		if err != nil {
			return rep, err
		}
		recs[i] = stream.Record{Topic: topicOf[in.Schema()] + rep.Suffix, Key: []byte(in.Customer()), Value: v}
	}

	var specs []stream.TopicSpec
	for _, st := range event.Streams() {
		specs = append(specs, cfg.TopicSpec(st.Topic+rep.Suffix, st.Role))
	}
	if err := admin.EnsureTopics(ctx, specs...); err != nil {
		return rep, err
	}

	// The services, as processes of their own.
	logDir, err := os.MkdirTemp("", "bench-e2e-logs-")
	if err != nil {
		return rep, err
	}
	cluster := &e2e.Cluster{Brokers: cfg.KafkaBrokers, Redis: cfg.Redis.Addrs[0], Namespace: rep.Namespace, Suffix: rep.Suffix,
		Bins: bins, LogDir: logDir}
	cluster.Env = map[string]string{}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return rep, err
		}
		cluster.Env["PPROF"] = "true"
	}
	if o.serviceMemory > 0 {
		cluster.Env["GOMEMLIMIT"] = strconv.FormatInt(o.serviceMemory, 10)
	}
	defer func() {
		if err := cluster.Stop(40 * time.Second); err != nil {
			b.say("stopping services: %v (logs in %s)", err, logDir)
		}
		if !keep {
			deleteNamespace(context.WithoutCancel(ctx), rdb, keys)
			// Every run's topics hold its events: left on a developer's broker they add up to
			// gigabytes (and to a broker start that times out).
			if _, err := admin.DeleteTopicsContaining(context.WithoutCancel(ctx), rep.Suffix); err != nil {
				b.say("deleting the benchmark's topics *%s*: %v", rep.Suffix, err)
			}
		}
	}()
	procs, err := cluster.StartAll(ctx, e2e.Services()...)
	if err != nil {
		return rep, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	b.say("services running (namespace %s, topic suffix %s, logs in %s)", rep.Namespace, rep.Suffix, logDir)
	observer := &e2e.Observer{Admin: admin, Redis: rdb, Keys: keys, Suffix: rep.Suffix}

	// Derived events are read from the output topics' current ends as they appear.
	inputFrom, err := e2e.Positions(ctx, admin, observer.InputTopic("purchases"), observer.InputTopic("logins"), observer.InputTopic("feedback"))
	if err != nil {
		return rep, err
	}
	outFrom, err := e2e.Positions(ctx, admin, observer.OutputTopics()...)
	if err != nil {
		return rep, err
	}
	collectCtx, stopCollect := context.WithCancel(ctx)
	defer stopCollect()
	seen := newArrivals()
	for topic, offs := range outFrom {
		for p, from := range offs {
			go seen.collect(collectCtx, admin, codec, topic, p, from)
		}
	}

	if !o.live {
		start = time.Now()
	} else if wait := time.Until(start); wait > 0 {
		time.Sleep(wait)
	} else {
		b.say("the services took %s longer to start than allowed: the first events are that late", -wait)
	}
	var lagDone func() []lagSample
	if o.live {
		lagDone = sampleLag(ctx, procs["sweeper"].HTTPAddr, b.env.Cfg.OpsToken)
	}
	var outage *outageRun
	if o.outage > 0 {
		at := o.outageAt
		if at == 0 {
			at = time.Duration(float64(len(recs)) / rate / 3 * float64(time.Second))
		}
		outage = b.startOutage(ctx, cluster, procs, o.outageService, start.Add(at), o.outage)
	}
	meter, err := startCPU(b.pids(procs))
	if err != nil {
		return rep, err
	}
	redisBefore, err := readCommandStats(ctx, rdb)
	if err != nil {
		return rep, err
	}
	var profiles sync.WaitGroup
	if o.profile != "" {
		for name, p := range procs {
			profiles.Add(1)
			go func() {
				defer profiles.Done()
				url := fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(o.profileFor.Seconds())))
				if err := b.saveProfile(ctx, p.HTTPAddr, url, filepath.Join(o.profile, name+".cpu.pprof")); err != nil {
					b.say("CPU profile of %s: %v", name, err)
				}
				// The memory in use as the CPU profile ends: in a backlog, what the consumers
				// hold while they are busiest (the allocation profile at the end sees them idle).
				if err := b.saveProfile(ctx, p.HTTPAddr, "/debug/pprof/heap", filepath.Join(o.profile, name+".heap.pprof")); err != nil {
					b.say("heap profile of %s: %v", name, err)
				}
			}()
		}
	}
	b.say("producing %d events", len(recs))
	warmedUp := make(chan [2]float64, 1) // the machine's busy and total CPU seconds after the warm-up
	if o.live {
		stopWarmUp := time.AfterFunc(time.Until(start.Add(liveWarmUp)), func() {
			if busy, total, err := machineCPUSeconds(); err == nil {
				warmedUp <- [2]float64{busy, total}
			}
		})
		defer stopWarmUp.Stop()
	}
	producer, err := b.env.Producer()
	if err != nil {
		return rep, err
	}
	chunkSize := 5000
	if rate > 0 {
		chunkSize = max(1, int(rate/20)) // 20 chunks a second
	}
	for i := 0; i < len(recs); i += chunkSize {
		if rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
		chunk := recs[i:min(i+chunkSize, len(recs))]
		now := time.Now()
		for j := range chunk {
			chunk[j].Time = now
		}
		if err := producer.Produce(ctx, chunk...); err != nil {
			_ = producer.Close()
			return rep, err
		}
	}
	generatorRequests := KafkaRequests{Process: "generator (bench-e2e)"}
	generatorRequests.Produce, err = producedRequests(producer)
	_ = producer.Close()
	if err != nil {
		return rep, err
	}
	rep.ProduceSeconds = time.Since(start).Seconds()
	select {
	case at := <-warmedUp:
		if busy, total, err := machineCPUSeconds(); err == nil {
			rep.SteadyBusyShare = busyShare(at[0], at[1], busy, total)
		}
	default: // not live, or the production ended within the warm-up
	}
	rep.ProduceEventsPerSec = float64(rep.Events) / rep.ProduceSeconds
	if outage != nil {
		if err := outage.wait(); err != nil {
			return rep, err
		}
		procs[o.outageService] = outage.restarted
	}

	b.say("produced in %.1fs; waiting for the pipeline", rep.ProduceSeconds)

	alive := func() error {
		for name, p := range procs {
			if done, err := p.Exited(); done {
				return fmt.Errorf("service %s exited: %w (log %s)", name, err, p.LogPath)
			}
		}
		return nil
	}
	for last := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		if err := alive(); err != nil {
			return rep, err
		}
		pr, err := observer.Progress(ctx, time.Now())
		if err != nil {
			return rep, err
		}
		if pr.Lag == 0 {
			rep.ConsumedSeconds = time.Since(start).Seconds()
			break
		}
		if time.Since(last) > 10*time.Second {
			b.say("%s", pr)
			last = time.Now()
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	rep.EventsPerSec = float64(rep.Events) / rep.ConsumedSeconds
	if lagDone != nil {
		// Sampled until every input record is consumed, so a recovery that outlasts the
		// production is measured too.
		time.Sleep(2 * time.Second)
		rep.summarizeLag(lagDone(), start, start.Add(time.Duration(rep.ProduceSeconds*float64(time.Second))), outage)
	}
	if err := observer.WaitDone(ctx, 10*time.Minute, alive); err != nil {
		return rep, err
	}
	rep.DrainedSeconds = time.Since(start).Seconds()
	if rep.CPU, rep.MachineCPUSeconds, rep.MachineBusyShare, err = meter.report(rep.Events); err != nil {
		return rep, err
	}
	rep.MachineMicrosPerEvent = rep.MachineCPUSeconds * 1e6 / float64(rep.Events)
	redisAfter, err := readCommandStats(ctx, rdb)
	if err != nil {
		return rep, err
	}
	rep.RedisCommands = redisAfter.since(redisBefore, rep.Events)
	outTo, err := e2e.Positions(ctx, admin, observer.OutputTopics()...)
	if err != nil {
		return rep, err
	}
	if err := seen.waitFor(ctx, outFrom, outTo); err != nil {
		return rep, err
	}
	stopCollect()
	if o.profile != "" {
		profiles.Wait()
		for name, p := range procs {
			if err := b.saveProfile(ctx, p.HTTPAddr, "/debug/pprof/allocs", filepath.Join(o.profile, name+".allocs.pprof")); err != nil {
				return rep, fmt.Errorf("allocation profile of %s: %w", name, err)
			}
		}
		b.say("profiles in %s (go tool pprof -top %s)", o.profile, filepath.Join(o.profile, "purchases.cpu.pprof"))
	}

	// Metrics before the services stop.
	rep.WritesByService, rep.ConflictsByService = map[string]float64{}, map[string]float64{}
	for name, p := range procs {
		m, err := scrape(ctx, p.HTTPAddr, b.env.Cfg.OpsToken)
		if err != nil {
			return rep, err
		}
		w := m["loyalty_store_writes_total"]
		if w > 0 {
			rep.WritesByService[name] = w
		}
		rep.StoreWrites += w
		if c := m["loyalty_store_conflicts_total"]; c > 0 {
			rep.ConflictsByService[name] = c
			rep.StoreConflicts += c
		}
		rep.SweeperEvaluations += m[pipeline.MetricSweeperEvaluations]
		rep.KafkaRequests = append(rep.KafkaRequests, KafkaRequests{Process: name,
			Fetch: m["loyalty_kafka_fetch_requests_total"], Produce: m["loyalty_kafka_produce_requests_total"]})
	}
	rep.KafkaRequests = append(rep.KafkaRequests, generatorRequests)
	slices.SortFunc(rep.KafkaRequests, func(a, b KafkaRequests) int {
		return cmp.Compare(b.Fetch+b.Produce, a.Fetch+a.Produce)
	})
	if rep.StoreWrites+rep.StoreConflicts > 0 {
		rep.ConflictRate = rep.StoreConflicts / (rep.StoreWrites + rep.StoreConflicts)
	}

	b.say("reading input timestamps for the latency")
	inputTo, err := e2e.Positions(ctx, admin, observer.InputTopic("purchases"), observer.InputTopic("logins"), observer.InputTopic("feedback"))
	if err != nil {
		return rep, err
	}
	produced, err := produceTimes(ctx, admin, inputFrom, inputTo)
	if err != nil {
		return rep, err
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var samples []latencySample
	for _, a := range seen.all() {
		rep.Derived++
		if t, ok := produced[srcKey{a.src.Topic, int(a.src.Partition), a.src.Offset}]; ok {
			sample := latencySample{produced: t, total: ms(a.at.Sub(t)), delivered: ms(a.at.Sub(a.stamped))}
			if !a.written.IsZero() {
				sample.split, sample.written, sample.relayed = true, ms(a.written.Sub(t)), ms(a.stamped.Sub(a.written))
			}
			samples = append(samples, sample)
		}
	}
	if len(samples) > 0 {
		rep.Latency = summarizeLatency(samples)
	}
	if steady := steadySamples(samples, start, outage); o.live && len(steady) > 0 {
		l := summarizeLatency(steady)
		rep.LatencySteady = &l
	}
	rep.BytesPerCustomer, rep.TransitionBytesPerCustomer, rep.BytesSampled, rep.CompactEncoded, err = memoryPerCustomer(ctx, rdb, keys, 2000)
	if err != nil || o.naive <= 0 {
		return rep, err
	}
	rep.Naive, err = b.naiveBaseline(ctx, o, rep, rdb, admin, codec)
	return rep, err
}

// naiveBaseline runs the naive baseline on the benchmark's input topics, with the services
// idle, and measures it like the pipeline.
func (b *bench) naiveBaseline(ctx context.Context, o benchOptions, rep BenchReport, rdb redisconn.Client, admin *stream.Admin,
	c *codec.Codec) (*NaiveResult, error) {
	cfg := b.env.Cfg
	if cfg.KafkaSecurity != (stream.Security{}) {
		return nil, errors.New("the naive baseline speaks plaintext Kafka only: run with --naive-duration 0 against a secured broker")
	}
	policy := scoring.DefaultPolicy()
	if cfg.PolicyFile != "" {
		var err error
		if policy, err = scoring.LoadPolicy(cfg.PolicyFile); err != nil {
			return nil, err
		}
	}
	out := "loyalty.naive-derived" + rep.Suffix
	if err := admin.EnsureTopics(ctx, cfg.TopicSpec(out, event.RoleDerived)); err != nil {
		return nil, err
	}
	n := &naiveRun{brokers: cfg.KafkaBrokers, rdb: rdb, codec: c, policy: policy, suffix: rep.Suffix,
		prefix: "naive:" + rep.Namespace + ":", outTopic: out, scorer: pipeline.NewScorer(policy, c, false)}
	defer n.deleteKeys(context.WithoutCancel(ctx))
	pids := b.pids(nil)
	meter, err := startCPU(pids)
	if err != nil {
		return nil, err
	}
	b.say("naive baseline: at most %s on the same %d events", o.naive, rep.Events)
	applied, derived, elapsed, err := n.run(ctx, rep.Events, o.naive)
	if err != nil {
		return nil, err
	}
	res := &NaiveResult{Events: applied, Seconds: elapsed.Seconds(), Derived: derived}
	if applied == 0 {
		return nil, errors.New("the naive baseline applied no event")
	}
	res.EventsPerSec = float64(applied) / res.Seconds
	var busy float64
	if res.CPU, busy, _, err = meter.report(int(applied)); err != nil {
		return nil, err
	}
	res.MachineMicrosPerEvent = busy * 1e6 / float64(applied)
	res.Speedup = rep.EventsPerSec / res.EventsPerSec
	return res, nil
}

// saveProfile fetches a pprof profile from a service's ops address into file.
func (b *bench) saveProfile(ctx context.Context, addr, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	ops.SetToken(req, b.env.Cfg.OpsToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, res.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// pids names the processes whose CPU time the benchmark measures: the services, the broker
// and Redis (when they listen on this machine), and the benchmark itself as the generator.
func (b *bench) pids(procs map[string]*e2e.Process) map[string]int {
	out := map[string]int{"generator (bench-e2e)": os.Getpid()}
	for name, p := range procs {
		out[name] = p.Pid()
	}
	portOf := func(addr string) int {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(port)
		return n
	}
	if len(b.env.Cfg.KafkaBrokers) > 0 {
		if pid := listenerPid(portOf(b.env.Cfg.KafkaBrokers[0])); pid != 0 {
			out["kafka broker"] = pid
		} else {
			b.say("the Kafka broker %s is not a process of this machine: its CPU time is not measured", b.env.Cfg.KafkaBrokers[0])
		}
	}
	if len(b.env.Cfg.Redis.Addrs) > 0 {
		if pid := listenerPid(portOf(b.env.Cfg.Redis.Addrs[0])); pid != 0 {
			out["redis"] = pid
		} else {
			b.say("Redis %s is not a process of this machine: its CPU time is not measured", b.env.Cfg.Redis.Addrs[0])
		}
	}
	return out
}

func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Latency is the produce→consumed latency of derived events, in ms, and its parts.
type Latency struct {
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	// DeliveredP50Ms and DeliveredP99Ms are the part from the derived record's Kafka
	// timestamp, which the relay's producer stamps when it sends the batch, to the
	// benchmark's consumer (the producer's request, the broker, the fetch).
	DeliveredP50Ms float64 `json:"delivered_p50_ms"`
	DeliveredP99Ms float64 `json:"delivered_p99_ms"`
	// Split says the other parts are known: every derived record named its outbox entry.
	// Written* is the part from the input record's produce to the append of the outbox entry
	// the derived event was published from (the entry id's milliseconds, Redis's clock, from
	// the relay's outbox_entry header): the Kafka fetch, the consumer's batching, the
	// computation and the write. Relayed* is the part from that append to the Kafka
	// timestamp: the entry's wait in the outbox and the relay's read.
	Split        bool    `json:"split"`
	WrittenP50Ms float64 `json:"written_p50_ms,omitempty"`
	WrittenP99Ms float64 `json:"written_p99_ms,omitempty"`
	RelayedP50Ms float64 `json:"relayed_p50_ms,omitempty"`
	RelayedP99Ms float64 `json:"relayed_p99_ms,omitempty"`
	// Tail* are the medians of the three parts among the derived events whose total
	// latency is at or above the p99: where the tail's time went.
	TailWrittenMs   float64 `json:"tail_written_ms,omitempty"`
	TailRelayedMs   float64 `json:"tail_relayed_ms,omitempty"`
	TailDeliveredMs float64 `json:"tail_delivered_ms,omitempty"`
}

// latencySample is one derived event's produce→consumed latency and its parts, in ms; split
// when its record named its outbox entry (a relay of an earlier release does not), so that
// written and relayed are known.
type latencySample struct {
	produced                           time.Time
	total, written, relayed, delivered float64
	split                              bool
}

// summarizeLatency returns the quantiles and parts of the samples (at least one).
func summarizeLatency(samples []latencySample) Latency {
	part := func(of []latencySample, f func(latencySample) float64) []float64 {
		v := make([]float64, len(of))
		for i, s := range of {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v
	}
	l := Latency{Samples: len(samples)}
	total := part(samples, func(s latencySample) float64 { return s.total })
	l.P50Ms, l.P99Ms, l.MaxMs = quantile(total, 0.50), quantile(total, 0.99), total[len(total)-1]
	delivered := part(samples, func(s latencySample) float64 { return s.delivered })
	l.DeliveredP50Ms, l.DeliveredP99Ms = quantile(delivered, 0.50), quantile(delivered, 0.99)
	var tail []latencySample
	for _, s := range samples {
		if !s.split {
			return l // no split where a record did not name its entry: the parts would mislead
		}
		if s.total >= l.P99Ms {
			tail = append(tail, s)
		}
	}
	written := part(samples, func(s latencySample) float64 { return s.written })
	relayed := part(samples, func(s latencySample) float64 { return s.relayed })
	l.Split = true
	l.WrittenP50Ms, l.WrittenP99Ms = quantile(written, 0.50), quantile(written, 0.99)
	l.RelayedP50Ms, l.RelayedP99Ms = quantile(relayed, 0.50), quantile(relayed, 0.99)
	l.TailWrittenMs = quantile(part(tail, func(s latencySample) float64 { return s.written }), 0.50)
	l.TailRelayedMs = quantile(part(tail, func(s latencySample) float64 { return s.relayed }), 0.50)
	l.TailDeliveredMs = quantile(part(tail, func(s latencySample) float64 { return s.delivered }), 0.50)
	return l
}

// steadySamples are the samples of inputs produced after the warm-up from start and, with an
// outage, before it began.
func steadySamples(samples []latencySample, start time.Time, outage *outageRun) []latencySample {
	var steady []latencySample
	for _, s := range samples {
		if steadyState(s.produced, start, outage) {
			steady = append(steady, s)
		}
	}
	return steady
}

// latencyRows prints a latency summary under title, its parts indented by indent.
func latencyRows(row func(name, value string), title, indent string, l Latency) {
	row(title, fmt.Sprintf("p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d events)", l.P50Ms, l.P99Ms, l.MaxMs, l.Samples))
	if l.Samples == 0 {
		return
	}
	if l.Split {
		row(indent+"  of which written", fmt.Sprintf("p50 %.0f ms, p99 %.0f ms (produce → the outbox entry's append: fetch, batching, computation, write)",
			l.WrittenP50Ms, l.WrittenP99Ms))
		row(indent+"  of which relayed", fmt.Sprintf("p50 %.0f ms, p99 %.0f ms (the append → the derived record's timestamp, stamped by the relay's producer as it sends)",
			l.RelayedP50Ms, l.RelayedP99Ms))
	}
	row(indent+"  of which Kafka delivery", fmt.Sprintf("p50 %.0f ms, p99 %.0f ms (the derived record's timestamp → consumed)", l.DeliveredP50Ms, l.DeliveredP99Ms))
	if l.Split {
		row(indent+"  the slowest 1%", fmt.Sprintf("written %.0f ms, relayed %.0f ms, delivered %.0f ms (medians among the events at or above the p99)",
			l.TailWrittenMs, l.TailRelayedMs, l.TailDeliveredMs))
	}
}

type srcKey struct {
	topic     string
	partition int
	offset    int64
}

type arrival struct {
	at      time.Time
	stamped time.Time // the derived record's Kafka timestamp
	written time.Time // the append of the outbox entry it was published from
	src     event.Source
}

// arrivals records when each derived event was consumed, per output partition.
type arrivals struct {
	mu   sync.Mutex
	list []arrival
	next map[string]map[int]int64 // topic -> partition -> next offset
	errs []error
}

func newArrivals() *arrivals { return &arrivals{next: map[string]map[int]int64{}} }

func (a *arrivals) collect(ctx context.Context, admin *stream.Admin, c interface {
	Decode(context.Context, []byte) (event.Event, error)
}, topic string, partition int, from int64) {
	ch := make(chan stream.Message, 256)
	go func() {
		defer close(ch)
		if err := admin.ReadRange(ctx, topic, partition, from, math.MaxInt64, ch); err != nil && ctx.Err() == nil {
			a.mu.Lock()
			a.errs = append(a.errs, err)
			a.mu.Unlock()
		}
	}()
	for m := range ch {
		at := time.Now()
		ev, err := c.Decode(ctx, m.Value)
		a.mu.Lock()
		if err == nil {
			_, _, src := e2e.Identify(ev)
			written, _ := relay.OutboxEntryTime(m.Headers)
			a.list = append(a.list, arrival{at: at, stamped: m.Time, written: written, src: src})
		}
		if a.next[topic] == nil {
			a.next[topic] = map[int]int64{}
		}
		a.next[topic][partition] = m.Offset + 1
		a.mu.Unlock()
	}
}

// waitFor waits until every partition was read up to to.
func (a *arrivals) waitFor(ctx context.Context, from, to map[string]stream.Offsets) error {
	for {
		a.mu.Lock()
		done, err := true, errors.Join(a.errs...)
		for topic, offs := range to {
			for p, end := range offs {
				if end > from[topic][p] && a.next[topic][p] < end {
					done = false
				}
			}
		}
		a.mu.Unlock()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *arrivals) all() []arrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.list)
}

// produceTimes reads the input records' Kafka timestamps (set by the benchmark's producer
// when it handed each chunk over) by topic, partition and offset.
func produceTimes(ctx context.Context, admin *stream.Admin, from, to map[string]stream.Offsets) (map[srcKey]time.Time, error) {
	out := map[srcKey]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for topic, offs := range to {
		for p, end := range offs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch := make(chan stream.Message, 1024)
				go func() {
					defer close(ch)
					if err := admin.ReadRange(ctx, topic, p, from[topic][p], end, ch); err != nil {
						errs <- err
					}
				}()
				for m := range ch {
					mu.Lock()
					out[srcKey{topic, p, m.Offset}] = m.Time
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return out, <-errs
}

// scrape reads a service's /metrics, with the ops bearer token when one is configured: every
// sample, summed over label sets, by name.
func scrape(ctx context.Context, addr, opsToken string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	ops.SetToken(req, opsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", addr, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 {
			name = line[:i]
			rest = line[strings.LastIndexByte(line, '}')+1:]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil || strings.HasPrefix(name, "#") {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// memoryPerCustomer samples up to n customers: the mean MEMORY USAGE of their state keys and
// of their transition lists, and the share of states stored as compact values (strings; the
// rest are hashes: the former layout, or tombstones).
func memoryPerCustomer(ctx context.Context, rdb redisconn.Client, keys keyspace.Keyspace, n int) (state, transitions float64, sampled int, compactShare float64, err error) {
	var compact int
	var stateTotal, txTotal int64
	var cursor uint64
	for sampled < n {
		batch, next, err := rdb.Scan(ctx, cursor, keys.Prefix()+"c:*", 500).Result()
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("scanning customers: %w", err)
		}
		for _, k := range batch {
			if sampled >= n {
				break
			}
			size, err := rdb.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				return 0, 0, 0, 0, fmt.Errorf("MEMORY USAGE: %w", err)
			}
			if typ, _ := rdb.Type(ctx, k).Result(); typ == "string" {
				compact++
			}
			tx, err := rdb.MemoryUsage(ctx, keys.Transitions(keys.CustomerOfKey(k)), 0).Result()
			if err != nil && !redisconn.IsNil(err) {
				return 0, 0, 0, 0, fmt.Errorf("MEMORY USAGE of a transition list: %w", err)
			}
			stateTotal += size
			txTotal += tx
			sampled++
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if sampled == 0 {
		return 0, 0, 0, 0, errors.New("no customer state found")
	}
	return float64(stateTotal) / float64(sampled), float64(txTotal) / float64(sampled), sampled, float64(compact) / float64(sampled), nil
}

// deleteNamespace removes every key of the benchmark's namespace.
func deleteNamespace(ctx context.Context, rdb redisconn.Client, keys keyspace.Keyspace) {
	var cursor uint64
	for {
		batch, next, err := rdb.Scan(ctx, cursor, keys.Prefix()+"*", 2000).Result()
		if err != nil {
			return
		}
		if len(batch) > 0 {
			_ = rdb.Unlink(ctx, batch...).Err()
		}
		if cursor = next; cursor == 0 {
			return
		}
	}
}

func printBenchTable(w io.Writer, r BenchReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	// cpuRows is a process's row and those of its kinds of threads.
	cpuRows := func(p ProcessCPU) {
		rss := ""
		if p.PeakRSSBytes > 0 {
			rss = fmt.Sprintf(", peak RSS %.0f MB", float64(p.PeakRSSBytes)/(1<<20))
		}
		row("  "+p.Name, fmt.Sprintf("%.1f µs/event (%.1f CPU-s%s)", p.MicrosPerEvent, p.Seconds, rss))
		for _, t := range p.Threads {
			row("    of which "+t.Kind, fmt.Sprintf("%.1f µs/event (%.1f CPU-s)", t.MicrosPerEvent, t.Seconds))
		}
	}
	row("input events", fmt.Sprintf("%d (%d customers)", r.Events, r.Customers))
	row("produce", fmt.Sprintf("%.1f s (%.0f events/s)", r.ProduceSeconds, r.ProduceEventsPerSec))
	row("sustained throughput", fmt.Sprintf("%.0f events/s (all input consumed after %.1f s)", r.EventsPerSec, r.ConsumedSeconds))
	row("drained", fmt.Sprintf("%.1f s (outbox empty, nothing due)", r.DrainedSeconds))
	row("derived events", fmt.Sprintf("%d (%d with an input record as source)", r.Derived, r.Latency.Samples))
	latencyRows(row, "produce→derived latency", "", r.Latency)
	if r.LatencySteady != nil {
		latencyRows(row, fmt.Sprintf("  steady (after %s)", liveWarmUp), "  ", *r.LatencySteady)
	}
	row("redis bytes/customer", fmt.Sprintf("%.0f state + %.0f transition list = %.0f (MEMORY USAGE, %d sampled, %.0f%% compact values)",
		r.BytesPerCustomer, r.TransitionBytesPerCustomer, r.BytesPerCustomer+r.TransitionBytesPerCustomer, r.BytesSampled, 100*r.CompactEncoded))
	conflicts := ""
	if len(r.ConflictsByService) > 0 {
		names := slices.Sorted(maps.Keys(r.ConflictsByService))
		parts := make([]string, 0, len(names))
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s %.0f", n, r.ConflictsByService[n]))
		}
		conflicts = "; " + strings.Join(parts, ", ")
	}
	row("store conflict rate", fmt.Sprintf("%.2f%% (%.0f conflicts, %.0f writes%s)", 100*r.ConflictRate, r.StoreConflicts, r.StoreWrites, conflicts))
	if len(r.WritesByService) > 0 {
		names := slices.Sorted(maps.Keys(r.WritesByService))
		parts := make([]string, 0, len(names))
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s %.0f", n, r.WritesByService[n]))
		}
		row("store writes by service", strings.Join(parts, ", ")+fmt.Sprintf("; sweeper evaluations %.0f (%.1f per customer)",
			r.SweeperEvaluations, r.SweeperEvaluations/float64(max(r.Customers, 1))))
	}
	if r.Live {
		row("watermark lag (live)", fmt.Sprintf("p50 %.1f s, p99 %.1f s, max %.1f s (%d samples)",
			r.WatermarkLagP50, r.WatermarkLagP99, r.WatermarkLagMax, r.WatermarkLagSamples))
	}
	if r.OutageService != "" {
		row("outage", fmt.Sprintf("%s stopped %.0f s: lag up to %.0f s; back within 5 s of the median %.1f s after the restart",
			r.OutageService, r.OutageSeconds, r.OutageLagMax, r.RecoverySeconds))
	}
	if len(r.KafkaRequests) > 0 {
		var fetch, produce float64
		for _, k := range r.KafkaRequests {
			fetch, produce = fetch+k.Fetch, produce+k.Produce
		}
		perK := func(n float64) float64 { return 1000 * n / float64(max(r.Events, 1)) }
		row("kafka requests", fmt.Sprintf("%.1f fetch and %.1f produce requests per 1000 input events (%.0f and %.0f)",
			perK(fetch), perK(produce), fetch, produce))
		for _, k := range r.KafkaRequests {
			row("  "+k.Process, fmt.Sprintf("fetch %.1f, produce %.1f", perK(k.Fetch), perK(k.Produce)))
		}
	}
	if len(r.CPU) > 0 {
		row("CPU per input event", fmt.Sprintf("%.0f µs for the machine (%.1f CPU-s, %.0f%% of %d CPUs busy)", r.MachineMicrosPerEvent,
			r.MachineCPUSeconds, 100*r.MachineBusyShare, r.CPUs))
		if r.SteadyBusyShare > 0 {
			row(fmt.Sprintf("  steady (after %s)", liveWarmUp), fmt.Sprintf("%.0f%% of %d CPUs busy until the last produce", 100*r.SteadyBusyShare, r.CPUs))
		}
		for _, p := range r.CPU {
			if p.Seconds < 0 {
				row("  "+p.Name, "exited during the run: not measured")
				continue
			}
			cpuRows(p)
		}
	}
	for i, c := range r.RedisCommands {
		if i == 0 {
			row("redis commands", "µs executing and calls per input event (a script's time includes its commands)")
		}
		if i == 10 {
			break
		}
		row("  "+c.Name, fmt.Sprintf("%.2f µs/event, %.3f calls/event (%d calls)", c.UsecPerEvent, c.CallsPerEvent, c.Calls))
	}
	if n := r.Naive; n != nil {
		row("naive baseline", fmt.Sprintf("%.0f events/s (%d events in %.1f s; %d derived): the pipeline is %.1f× faster", n.EventsPerSec,
			n.Events, n.Seconds, n.Derived, n.Speedup))
		row("  CPU per event", fmt.Sprintf("%.0f µs for the machine", n.MachineMicrosPerEvent))
		for _, p := range n.CPU {
			if p.Seconds >= 0 {
				cpuRows(p)
			}
		}
	}
	limit := ""
	if r.ServiceMemoryLimit > 0 {
		limit = fmt.Sprintf(", services' GOMEMLIMIT %d MiB", r.ServiceMemoryLimit>>20)
	}
	row("setup", fmt.Sprintf("kafka %s (%s batches), redis %s, %d CPUs%s", r.Kafka, r.Compression, r.Redis, r.CPUs, limit))
	_ = tw.Flush()
}

// producedRequests is how many produce requests p sent (its loyalty_kafka_produce_requests_total).
func producedRequests(p *stream.Producer) (float64, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(p.Requests()); err != nil {
		return 0, fmt.Errorf("the generator's produce requests: %w", err)
	}
	families, err := reg.Gather()
	if err != nil {
		return 0, fmt.Errorf("the generator's produce requests: %w", err)
	}
	for _, f := range families {
		if f.GetName() == "loyalty_kafka_produce_requests_total" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue(), nil
		}
	}
	return 0, errors.New("the generator's producer reports no produce requests")
}
