// Package txnsummary reads raw transaction logs (the CDNOW sample layout or a
// simple CSV) and condenses them into the per-customer calibration summaries
// (x, t_x, T, mean repeat spend) that the btyd models are fitted on.
//
// The conventions are those the published CDNOW parameters depend on: the
// purchases of one customer on one calendar day are merged into one, time is
// measured continuously from each customer's first purchase day (days, or
// days/7 for weeks), and frequency and monetary value count repeat purchases
// only. Readers never guess: a malformed row is an error that names its line.
package txnsummary

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/btyd"
)

// Format names an input layout.
type Format string

// The supported input layouts.
const (
	// FormatCDNOW is the whitespace-separated CDNOW sample layout
	// "master_id sample_id yyyymmdd number_of_cds dollars"; sample_id is
	// the customer id.
	FormatCDNOW Format = "cdnow"
	// FormatCSV is "customer_id,occurred_at,amount" with a header row;
	// occurred_at is RFC 3339 or YYYY-MM-DD and a negative amount is a
	// refund.
	FormatCSV Format = "csv"
)

// ParseFormat validates a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatCDNOW, FormatCSV:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (want cdnow or csv)", s)
}

// Transaction is one purchase (Amount >= 0) or refund (Amount < 0) on a
// calendar day. Line is the input line it came from, for error messages.
type Transaction struct {
	CustomerID string
	Day        Day
	Amount     float64
	Line       int
}

// Day is a calendar date counted in days since 1970-01-01.
type Day int32

// DayOf is the calendar date of t in t's own location.
func DayOf(t time.Time) Day {
	y, m, d := t.Date()
	return Day(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// Time is midnight UTC at the start of the day.
func (d Day) Time() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

// String formats the day as YYYY-MM-DD.
func (d Day) String() string { return d.Time().Format(time.DateOnly) }

// LineError is a problem with one input line.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// maxReported bounds how many bad lines one error lists.
const maxReported = 20

type lineErrors struct {
	errs  []error
	total int
}

func (l *lineErrors) add(line int, err error) {
	l.total++
	if len(l.errs) < maxReported {
		l.errs = append(l.errs, &LineError{Line: line, Err: err})
	}
}

func (l *lineErrors) err() error {
	if l.total == 0 {
		return nil
	}
	if l.total > len(l.errs) {
		l.errs = append(l.errs, fmt.Errorf("... and %d more bad lines", l.total-len(l.errs)))
	}
	return errors.Join(l.errs...)
}

// Read reads transactions in the given format.
func Read(r io.Reader, f Format) ([]Transaction, error) {
	switch f {
	case FormatCDNOW:
		return ReadCDNOW(r)
	case FormatCSV:
		return ReadCSV(r)
	}
	return nil, fmt.Errorf("reading transactions: unknown format %q", f)
}

// ReadCDNOW reads the CDNOW sample layout. Blank lines are ignored; every
// other line must have five fields with a valid date and a non-negative
// dollar amount.
func ReadCDNOW(r io.Reader) ([]Transaction, error) {
	var (
		out  []Transaction
		bad  lineErrors
		line int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 5 {
			bad.add(line, fmt.Errorf("want 5 fields (master_id sample_id yyyymmdd number_of_cds dollars), got %d", len(f)))
			continue
		}
		t, err := time.Parse("20060102", f[2])
		if err != nil {
			bad.add(line, fmt.Errorf("date %q: want yyyymmdd", f[2]))
			continue
		}
		if n, err := strconv.Atoi(f[3]); err != nil || n < 0 {
			bad.add(line, fmt.Errorf("number_of_cds %q: want a non-negative integer", f[3]))
			continue
		}
		amt, err := parseAmount(f[4])
		if err != nil {
			bad.add(line, err)
			continue
		}
		if amt < 0 {
			bad.add(line, fmt.Errorf("dollars %q: must not be negative", f[4]))
			continue
		}
		out = append(out, Transaction{CustomerID: f[1], Day: DayOf(t), Amount: amt, Line: line})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading cdnow input: %w", err)
	}
	if err := bad.err(); err != nil {
		return nil, fmt.Errorf("reading cdnow input: %w", err)
	}
	return out, nil
}

// ReadCSV reads "customer_id,occurred_at,amount" with that header.
func ReadCSV(r io.Reader) ([]Transaction, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var (
		out []Transaction
		bad lineErrors
	)
	header := true
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad.add(pe.Line, pe.Err)
				if len(bad.errs) >= maxReported {
					break
				}
				continue
			}
			return nil, fmt.Errorf("reading csv input: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if header {
			header = false
			if len(rec) != 3 || strings.TrimSpace(strings.TrimPrefix(rec[0], "\ufeff")) != "customer_id" ||
				strings.TrimSpace(rec[1]) != "occurred_at" || strings.TrimSpace(rec[2]) != "amount" {
				return nil, fmt.Errorf("reading csv input: %w", &LineError{Line: line,
					Err: fmt.Errorf("header must be customer_id,occurred_at,amount, got %q", strings.Join(rec, ","))})
			}
			continue
		}
		if len(rec) != 3 {
			bad.add(line, fmt.Errorf("want 3 fields (customer_id,occurred_at,amount), got %d", len(rec)))
			continue
		}
		id := strings.TrimSpace(rec[0])
		if id == "" {
			bad.add(line, errors.New("customer_id is empty"))
			continue
		}
		day, err := parseTime(strings.TrimSpace(rec[1]))
		if err != nil {
			bad.add(line, err)
			continue
		}
		amt, err := parseAmount(strings.TrimSpace(rec[2]))
		if err != nil {
			bad.add(line, err)
			continue
		}
		out = append(out, Transaction{CustomerID: id, Day: day, Amount: amt, Line: line})
	}
	if header {
		return nil, errors.New("reading csv input: empty input (want a customer_id,occurred_at,amount header)")
	}
	if err := bad.err(); err != nil {
		return nil, fmt.Errorf("reading csv input: %w", err)
	}
	return out, nil
}

func parseTime(s string) (Day, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return DayOf(t), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return DayOf(t), nil
	}
	return 0, fmt.Errorf("occurred_at %q: want RFC 3339 or YYYY-MM-DD", s)
}

func parseAmount(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e12 {
		return 0, fmt.Errorf("amount %q: want a decimal number", s)
	}
	return v, nil
}

// TimeUnit is the unit summaries are expressed in.
type TimeUnit string

// The supported time units.
const (
	UnitWeek TimeUnit = "week"
	UnitDay  TimeUnit = "day"
)

// ParseTimeUnit validates a time unit name.
func ParseTimeUnit(s string) (TimeUnit, error) {
	switch u := TimeUnit(s); u {
	case UnitWeek, UnitDay:
		return u, nil
	}
	return "", fmt.Errorf("unknown time unit %q (want week or day)", s)
}

// Days is the length of the unit in days.
func (u TimeUnit) Days() float64 {
	if u == UnitWeek {
		return 7
	}
	return 1
}

// PerYear is how many units make a year.
func (u TimeUnit) PerYear() float64 { return 365.25 / u.Days() }

// Customer is one customer's calibration summary.
type Customer struct {
	ID string
	btyd.Summary
}

// Summarize condenses transactions up to and including calibrationEnd into
// one summary per customer who made a purchase by then, sorted by customer
// id. Same-day transactions are merged; a day is a purchase day when it has
// at least one non-negative amount. Refunds net against their day; a
// refund-only day after the first purchase reduces the customer's repeat
// spend, and a refund before any purchase is an error. Monetary is the mean
// net value of the repeat purchase days, floored at 0.
func Summarize(txns []Transaction, calibrationEnd Day, unit TimeUnit) ([]Customer, error) {
	return summarize(txns, calibrationEnd, unit, false)
}

// SummarizeStream is Summarize for transactions read from an event stream, which starts
// part-way through a shop's history: a refund before the customer's first purchase refunds a
// purchase the stream never saw, so it is skipped rather than an error (the pipeline's own
// model summaries skip it the same way).
func SummarizeStream(txns []Transaction, calibrationEnd Day, unit TimeUnit) ([]Customer, error) {
	return summarize(txns, calibrationEnd, unit, true)
}

func summarize(txns []Transaction, calibrationEnd Day, unit TimeUnit, skipEarlyRefunds bool) ([]Customer, error) {
	type dayAgg struct {
		net      float64
		purchase bool
		line     int
	}
	byCust := map[string]map[Day]*dayAgg{}
	for _, t := range txns {
		if t.Day > calibrationEnd {
			continue
		}
		days := byCust[t.CustomerID]
		if days == nil {
			days = map[Day]*dayAgg{}
			byCust[t.CustomerID] = days
		}
		d := days[t.Day]
		if d == nil {
			d = &dayAgg{line: t.Line}
			days[t.Day] = d
		}
		d.net += t.Amount
		d.purchase = d.purchase || t.Amount >= 0
	}
	ids := make([]string, 0, len(byCust))
	for id := range byCust {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]Customer, 0, len(ids))
	var bad lineErrors
	for _, id := range ids {
		days := byCust[id]
		keys := make([]Day, 0, len(days))
		for d := range days {
			keys = append(keys, d)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		first, last := Day(-1), Day(-1)
		var x, total float64
		for _, d := range keys {
			a := days[d]
			if first < 0 {
				if !a.purchase && skipEarlyRefunds {
					continue
				}
				if !a.purchase {
					bad.add(a.line, fmt.Errorf("customer %q: refund on %s before any purchase", id, d))
					break
				}
				first = d
				continue
			}
			total += a.net
			if a.purchase {
				x++
				last = d
			}
		}
		if first < 0 {
			continue
		}
		c := Customer{ID: id}
		c.X = x
		c.T = float64(calibrationEnd-first) / unit.Days()
		if x > 0 {
			c.TX = float64(last-first) / unit.Days()
			c.Monetary = math.Max(0, total/x)
		}
		out = append(out, c)
	}
	if err := bad.err(); err != nil {
		return nil, fmt.Errorf("summarizing transactions: %w", err)
	}
	return out, nil
}

// Summaries returns just the model summaries of cs, in order.
func Summaries(cs []Customer) []btyd.Summary {
	out := make([]btyd.Summary, len(cs))
	for i, c := range cs {
		out[i] = c.Summary
	}
	return out
}
