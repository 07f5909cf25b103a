package loyaltyctl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/txnsummary"
)

func modelCommand(out *cmdline.Output) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "fit and score the BG/NBD + Gamma-Gamma models on a transactions file or the purchases topic (model fit|score)",
		Args:  cmdline.NoSubcommand,
		RunE:  cmdline.MissingSubcommand,
	}
	cmd.AddCommand(modelFitCommand(out), modelScoreCommand(out))
	return cmd
}

// FitResult is the JSON printed by `model fit` and read by `model score
// --params`.
type FitResult struct {
	Customers  int          `json:"customers"`
	BGNBD      BGNBDJSON    `json:"bgnbd"`
	GammaGamma GammaGammaJS `json:"gammagamma"`
}

// BGNBDJSON is the BG/NBD part of FitResult.
type BGNBDJSON struct {
	btyd.BGNBD
	LogLik float64 `json:"loglik"`
}

// GammaGammaJS is the Gamma-Gamma part of FitResult.
type GammaGammaJS struct {
	btyd.GammaGamma
	LogLik    float64 `json:"loglik"`
	Customers int     `json:"customers"`
}

type inputFlags struct {
	input, format, calEnd, unit, since string
	fromTopic                          bool
	penalizer                          float64
	// policyPenalizer is the policy's churn.refit.penalizer, read with --from-topic.
	policyPenalizer float64
}

func (f *inputFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.input, "input", "", "transactions file (required unless --from-topic)")
	fs.StringVar(&f.format, "format", "", "input layout: cdnow or csv (required with --input)")
	fs.BoolVar(&f.fromTopic, "from-topic", false, "read the transactions from the namespace's purchases topic (KAFKA_BROKERS, amounts in minor units of the policy's currency)")
	fs.StringVar(&f.since, "since", "", "with --from-topic: the first day of event time to read, YYYY-MM-DD (default: all)")
	fs.StringVar(&f.calEnd, "calibration-end", "", "last day of the calibration period, YYYY-MM-DD (required)")
	fs.StringVar(&f.unit, "time-unit", "week", "time unit of the model: week or day")
	fs.Float64Var(&f.penalizer, "penalizer", -1, "L2 penalty on the BG/NBD log-parameters (default: 0, or with --from-topic the policy's churn.refit.penalizer, which reproduces the pipeline's fit)")
}

// bgnbdPenalizer is the penalizer the fit uses.
func (f *inputFlags) bgnbdPenalizer() (float64, error) {
	switch {
	case f.penalizer >= 0 && f.penalizer <= 1:
		return f.penalizer, nil
	case f.penalizer != -1:
		return 0, Usagef("--penalizer must be between 0 and 1")
	case f.fromTopic:
		return f.policyPenalizer, nil
	}
	return 0, nil
}

// load reads and summarizes the input.
func (f *inputFlags) load(ctx context.Context, stderr io.Writer) ([]txnsummary.Customer, txnsummary.TimeUnit, error) {
	if f.calEnd == "" || f.fromTopic == (f.input != "") || (f.input != "") != (f.format != "") {
		return nil, "", Usagef("--calibration-end is required, with either --input and --format or --from-topic")
	}
	if f.since != "" && !f.fromTopic {
		return nil, "", Usagef("--since goes with --from-topic")
	}
	unit, err := txnsummary.ParseTimeUnit(f.unit)
	if err != nil {
		return nil, "", Usagef("--time-unit: %v", err)
	}
	end, err := time.Parse(time.DateOnly, f.calEnd)
	if err != nil {
		return nil, "", Usagef("--calibration-end %q: want YYYY-MM-DD", f.calEnd)
	}
	if f.fromTopic {
		return f.loadTopic(ctx, txnsummary.DayOf(end), unit, stderr)
	}
	format, err := txnsummary.ParseFormat(f.format)
	if err != nil {
		return nil, "", Usagef("--format: %v", err)
	}
	file, err := os.Open(f.input)
	if err != nil {
		return nil, "", fmt.Errorf("opening input: %w", err)
	}
	defer file.Close()
	txns, err := txnsummary.Read(bufio.NewReaderSize(file, 1<<16), format)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", f.input, err)
	}
	cs, err := txnsummary.Summarize(txns, txnsummary.DayOf(end), unit)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", f.input, err)
	}
	if len(cs) == 0 {
		return nil, "", fmt.Errorf("%s: no customer made a purchase by %s", f.input, f.calEnd)
	}
	return cs, unit, nil
}

// loadTopic reads and summarizes the purchases topic up to the calibration end.
func (f *inputFlags) loadTopic(ctx context.Context, end txnsummary.Day, unit txnsummary.TimeUnit, stderr io.Writer) ([]txnsummary.Customer, txnsummary.TimeUnit, error) {
	var since txnsummary.Day
	if f.since != "" {
		t, err := time.Parse(time.DateOnly, f.since)
		if err != nil {
			return nil, "", Usagef("--since %q: want YYYY-MM-DD", f.since)
		}
		if since = txnsummary.DayOf(t); since > end {
			return nil, "", Usagef("--since %s is after --calibration-end %s", f.since, f.calEnd)
		}
	}
	env, err := loadEnvironment()
	if err != nil {
		return nil, "", err
	}
	policy := scoring.DefaultPolicy()
	if env.cfg.PolicyFile != "" {
		if policy, err = scoring.LoadPolicy(env.cfg.PolicyFile); err != nil {
			return nil, "", err
		}
	}
	f.policyPenalizer = policy.Churn.Refit.Penalizer
	txns, read, err := topicTransactions(ctx, env, policy, since, end)
	if err != nil {
		return nil, "", err
	}
	fmt.Fprintf(stderr, "purchases topic: %d records, %d used; skipped %d invalid, %d duplicates, %d in another currency than %s, %d outside the days\n",
		read.Records, read.Used, read.Invalid, read.Duplicates, read.OtherCurrency, policy.Currency, read.OutOfRange)
	cs, err := txnsummary.SummarizeStream(txns, end, unit)
	if err != nil {
		return nil, "", err
	}
	if len(cs) == 0 {
		return nil, "", fmt.Errorf("the purchases topic has no purchase by %s", f.calEnd)
	}
	return cs, unit, nil
}

func fit(cs []txnsummary.Customer, penalizer float64) (FitResult, error) {
	ss := txnsummary.Summaries(cs)
	bg, err := btyd.FitBGNBDPenalized(ss, penalizer)
	if err != nil {
		return FitResult{}, err
	}
	gg, err := btyd.FitGammaGamma(ss)
	if err != nil {
		return FitResult{}, err
	}
	return FitResult{
		Customers:  len(cs),
		BGNBD:      BGNBDJSON{BGNBD: bg.Params, LogLik: bg.LogLik},
		GammaGamma: GammaGammaJS{GammaGamma: gg.Params, LogLik: gg.LogLik, Customers: gg.Customers},
	}, nil
}

func modelFitCommand(out *cmdline.Output) *cobra.Command {
	var in inputFlags
	cmd := &cobra.Command{
		Use:   "fit",
		Short: "fit the models and print their parameters (-o json: the file model score --params reads)",
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runModelFit(cmd.Context(), in, out, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	in.register(cmd.Flags())
	return cmd
}

func runModelFit(ctx context.Context, in inputFlags, out *cmdline.Output, stdout, stderr io.Writer) error {
	cs, _, err := in.load(ctx, stderr)
	if err != nil {
		return err
	}
	penalizer, err := in.bgnbdPenalizer()
	if err != nil {
		return err
	}
	res, err := fit(cs, penalizer)
	if err != nil {
		return err
	}
	if !out.JSON() {
		return res.writeText(stdout)
	}
	js, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encoding result: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", js)
	return err
}

func (r FitResult) writeText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "customers:    %d\nBG/NBD:       r=%.4f alpha=%.4f a=%.4f b=%.4f (log-likelihood %.2f)\n"+
		"Gamma-Gamma:  p=%.4f q=%.4f gamma=%.4f (log-likelihood %.2f, %d repeat customers)\n",
		r.Customers, r.BGNBD.R, r.BGNBD.Alpha, r.BGNBD.A, r.BGNBD.B, r.BGNBD.LogLik,
		r.GammaGamma.P, r.GammaGamma.Q, r.GammaGamma.Gamma, r.GammaGamma.LogLik, r.GammaGamma.Customers)
	return err
}

// scoreOptions are the flags of `model score` beyond the input's.
type scoreOptions struct {
	horizon, discount float64
	params            string
}

func modelScoreCommand(out *cmdline.Output) *cobra.Command {
	var in inputFlags
	var o scoreOptions
	cmd := &cobra.Command{
		Use:   "score",
		Short: "score every customer: P(alive), expected purchases and spend, CLV (CSV, or JSON lines with -o json)",
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runModelScore(cmd.Context(), in, o, out, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	in.register(fs)
	fs.Float64Var(&o.horizon, "horizon", 0, "horizon in time units for expected purchases and CLV (required, > 0)")
	fs.StringVar(&o.params, "params", "", "JSON parameters from `model fit -o json` (default: fit them on the input)")
	fs.Float64Var(&o.discount, "annual-discount", 0.10, "annual discount rate for CLV")
	return cmd
}

// ScoreRow is one customer's scores, a line of `model score -o json`.
type ScoreRow struct {
	CustomerID        string  `json:"customer_id"`
	X                 float64 `json:"x"`
	TX                float64 `json:"t_x"`
	T                 float64 `json:"T"`
	Monetary          float64 `json:"monetary"`
	PAlive            float64 `json:"p_alive"`
	ExpectedPurchases float64 `json:"expected_purchases"`
	ExpectedSpend     float64 `json:"expected_spend"`
	CLV               float64 `json:"clv"`
}

func runModelScore(ctx context.Context, in inputFlags, o scoreOptions, out *cmdline.Output, stdout, stderr io.Writer) error {
	if !(o.horizon > 0) || math.IsInf(o.horizon, 0) {
		return Usagef("--horizon must be a number > 0")
	}
	if !(o.discount >= 0) || o.discount > 10 {
		return Usagef("--annual-discount must be between 0 and 10")
	}
	cs, unit, err := in.load(ctx, stderr)
	if err != nil {
		return err
	}
	var res FitResult
	if o.params != "" {
		if res, err = readParams(o.params); err != nil {
			return err
		}
	} else {
		penalizer, err := in.bgnbdPenalizer()
		if err != nil {
			return err
		}
		if res, err = fit(cs, penalizer); err != nil {
			return err
		}
	}
	rate := btyd.PerUnitRate(o.discount, unit.PerYear())
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	if !out.JSON() {
		fmt.Fprintln(w, "customer_id,x,t_x,T,monetary,p_alive,expected_purchases,expected_spend,clv")
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
	for _, c := range cs {
		r := ScoreRow{CustomerID: c.ID, X: c.X, TX: c.TX, T: c.T, Monetary: c.Monetary, PAlive: res.BGNBD.PAlive(c.Summary),
			ExpectedPurchases: res.BGNBD.ExpectedPurchases(c.Summary, o.horizon), ExpectedSpend: res.GammaGamma.ExpectedSpend(c.Summary),
			CLV: btyd.CLV(res.BGNBD.BGNBD, res.GammaGamma.GammaGamma, c.Summary, o.horizon, rate)}
		if out.JSON() {
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("writing scores: %w", err)
			}
			continue
		}
		fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s,%s,%s,%s\n", csvField(r.CustomerID), num(r.X), num(r.TX), num(r.T), num(r.Monetary),
			num(r.PAlive), num(r.ExpectedPurchases), num(r.ExpectedSpend), num(r.CLV))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing scores: %w", err)
	}
	return nil
}

func readParams(path string) (FitResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return FitResult{}, fmt.Errorf("reading --params: %w", err)
	}
	var res FitResult
	if err := json.Unmarshal(data, &res); err != nil {
		return FitResult{}, fmt.Errorf("parsing --params %s: %w", path, err)
	}
	if err := res.BGNBD.Validate(); err != nil {
		return FitResult{}, fmt.Errorf("--params %s: %w", path, err)
	}
	if err := res.GammaGamma.Validate(); err != nil {
		return FitResult{}, fmt.Errorf("--params %s: %w", path, err)
	}
	if res.GammaGamma.Q <= 1 {
		return FitResult{}, fmt.Errorf("--params %s: gammagamma.q must be > 1 for a finite expected spend", path)
	}
	return res, nil
}

// csvField quotes a customer id when CSV needs it.
func csvField(s string) string {
	for _, c := range s {
		if c == ',' || c == '"' || c == '\n' || c == '\r' {
			q := []byte{'"'}
			for _, b := range []byte(s) {
				if b == '"' {
					q = append(q, '"')
				}
				q = append(q, b)
			}
			return string(append(q, '"'))
		}
	}
	return s
}
