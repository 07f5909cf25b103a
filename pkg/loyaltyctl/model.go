package loyaltyctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
	"github.com/loyalty-scoring/loyalty/pkg/txnsummary"
)

func init() {
	Register(Command{Name: "model", Summary: "fit and score the BG/NBD + Gamma-Gamma models (model fit|score)", Run: runModel})
}

func runModel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return Usagef("usage: loyaltyctl model fit|score [flags]")
	}
	switch args[0] {
	case "fit":
		return runModelFit(args[1:], stdout, stderr)
	case "score":
		return runModelScore(args[1:], stdout, stderr)
	}
	return Usagef("unknown model subcommand %q (want fit or score)", args[0])
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
	input, format, calEnd, unit string
}

func (f *inputFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.input, "input", "", "transactions file (required)")
	fs.StringVar(&f.format, "format", "", "input layout: cdnow or csv (required)")
	fs.StringVar(&f.calEnd, "calibration-end", "", "last day of the calibration period, YYYY-MM-DD (required)")
	fs.StringVar(&f.unit, "time-unit", "week", "time unit of the model: week or day")
}

// load reads and summarizes the input.
func (f *inputFlags) load() ([]txnsummary.Customer, txnsummary.TimeUnit, error) {
	if f.input == "" || f.format == "" || f.calEnd == "" {
		return nil, "", Usagef("--input, --format and --calibration-end are required")
	}
	format, err := txnsummary.ParseFormat(f.format)
	if err != nil {
		return nil, "", Usagef("--format: %v", err)
	}
	unit, err := txnsummary.ParseTimeUnit(f.unit)
	if err != nil {
		return nil, "", Usagef("--time-unit: %v", err)
	}
	end, err := time.Parse(time.DateOnly, f.calEnd)
	if err != nil {
		return nil, "", Usagef("--calibration-end %q: want YYYY-MM-DD", f.calEnd)
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

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("loyaltyctl model "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Usagef("%v", err)
		}
		return Usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected arguments %q", fs.Args())
	}
	return nil
}

func fit(cs []txnsummary.Customer) (FitResult, error) {
	ss := txnsummary.Summaries(cs)
	bg, err := btyd.FitBGNBD(ss)
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

func runModelFit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fit", stderr)
	var in inputFlags
	in.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cs, _, err := in.load()
	if err != nil {
		return err
	}
	res, err := fit(cs)
	if err != nil {
		return err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encoding result: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}

func runModelScore(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("score", stderr)
	var in inputFlags
	in.register(fs)
	horizon := fs.Float64("horizon", 0, "horizon in time units for expected purchases and CLV (required, > 0)")
	params := fs.String("params", "", "JSON parameters from `model fit` (default: fit them on the input)")
	discount := fs.Float64("annual-discount", 0.10, "annual discount rate for CLV")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !(*horizon > 0) || math.IsInf(*horizon, 0) {
		return Usagef("--horizon must be a number > 0")
	}
	if !(*discount >= 0) || *discount > 10 {
		return Usagef("--annual-discount must be between 0 and 10")
	}
	cs, unit, err := in.load()
	if err != nil {
		return err
	}
	var res FitResult
	if *params != "" {
		if res, err = readParams(*params); err != nil {
			return err
		}
	} else if res, err = fit(cs); err != nil {
		return err
	}
	rate := btyd.PerUnitRate(*discount, unit.PerYear())
	w := bufio.NewWriter(stdout)
	fmt.Fprintln(w, "customer_id,x,t_x,T,monetary,p_alive,expected_purchases,expected_spend,clv")
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
	for _, c := range cs {
		ep := res.BGNBD.ExpectedPurchases(c.Summary, *horizon)
		es := res.GammaGamma.ExpectedSpend(c.Summary)
		clv := btyd.CLV(res.BGNBD.BGNBD, res.GammaGamma.GammaGamma, c.Summary, *horizon, rate)
		fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s,%s,%s,%s\n", csvField(c.ID), num(c.X), num(c.TX), num(c.T), num(c.Monetary),
			num(res.BGNBD.PAlive(c.Summary)), num(ep), num(es), num(clv))
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
