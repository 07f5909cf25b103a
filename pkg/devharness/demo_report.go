package devharness

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

var (
	tierOrder    = []event.Tier{event.TierBronze, event.TierSilver, event.TierGold, event.TierPlatinum}
	churnOrder   = []event.ChurnLevel{event.ChurnLow, event.ChurnMedium, event.ChurnHigh}
	dirOrder     = []event.TierDirection{event.DirectionUp, event.DirectionDown, event.DirectionWarning}
	actionOrder  = []event.ActionKind{event.ActionCare, event.ActionWinBack, event.ActionVIPWelcome, event.ActionDowngradeWarning}
	outcomeOrder = []event.ActionOutcome{event.OutcomeSent, event.OutcomeSuppressed, event.OutcomeHeldOut, event.OutcomeFailed,
		event.OutcomeDeadLettered}
)

// sum adds up counts.
func sum[K comparable](counts map[K]int64) int64 {
	var n int64
	for _, v := range counts {
		n += v
	}
	return n
}

const indent = "        "

// progress writes the live report to stderr: redrawn in place on a terminal, one line per
// interval (and a line per new churn alert) otherwise.
type progress struct {
	w                  io.Writer
	tty                bool
	started            time.Time
	histStart, histEnd time.Time
	drawn              int // lines drawn last time (terminal)
	prevAt             time.Time
	prevSent, prevDone int64
	shownAlert         int64
}

func newProgress(w io.Writer, started, histStart, histEnd time.Time) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, started: started, histStart: histStart, histEnd: histEnd, prevAt: started, shownAlert: -1}
}

func (p *progress) report(ps producerStats, done int64, applied time.Time, t tallySnapshot) {
	now := time.Now()
	dt := now.Sub(p.prevAt).Seconds()
	sentRate, doneRate := float64(ps.Total-p.prevSent)/dt, float64(done-p.prevDone)/dt
	p.prevAt, p.prevSent, p.prevDone = now, ps.Total, done

	history := "starting"
	switch {
	case ps.Done && done >= ps.Total:
		history = "history applied; the sweeper follows the wall clock"
	case !ps.Frontier.IsZero():
		span := p.histEnd.Sub(p.histStart).Seconds()
		history = fmt.Sprintf("event time: produced %s, applied %s (%.0f%% of the history)", ps.Frontier.UTC().Format(time.DateOnly),
			applied.UTC().Format(time.DateOnly), 100*applied.Sub(p.histStart).Seconds()/span)
	}
	tier, churn, segment := t.Derived()
	rates := fmt.Sprintf("[%5s] produced %s (%s/s)  processed %s (%s/s)", now.Sub(p.started).Round(time.Second),
		thousands(ps.Total), thousands(int64(sentRate)), thousands(done), thousands(int64(doneRate)))
	levels := fmt.Sprintf("tiers %s | churn %s", joinCounts(tierOrder, t.Tiers), joinCounts(churnOrder, t.Churn))
	derived := fmt.Sprintf("derived: tier %s, churn %s, segment %s | actions %s | dead-lettered %s", thousands(tier), thousands(churn),
		thousands(segment), thousands(sum(t.Actions)), thousands(t.DeadLetters))

	if p.tty {
		// Short lines, cut to the terminal's width: a wrapped line would throw the redraw off.
		width := 100
		if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 20 {
			width = n
		}
		lines := []string{rates, indent + history, indent + levels, indent + derived, indent + "recent churn alerts:"}
		if len(t.Alerts) == 0 {
			lines = append(lines, indent+"  (none yet)")
		}
		for i := len(t.Alerts) - 1; i >= 0; i-- {
			lines = append(lines, indent+"  "+t.Alerts[i].String())
		}
		var b strings.Builder
		if p.drawn > 0 {
			fmt.Fprintf(&b, "\x1b[%dA\x1b[J", p.drawn)
		}
		for _, l := range lines {
			if r := []rune(l); len(r) >= width {
				l = string(r[:width-2]) + "…"
			}
			b.WriteString(l)
			b.WriteString("\n")
		}
		p.drawn = len(lines)
		fmt.Fprint(p.w, b.String())
		return
	}
	status := rates + "  " + history
	levels = indent + levels + " | " + derived
	fmt.Fprintln(p.w, status)
	fmt.Fprintln(p.w, levels)
	shown := 0
	for _, a := range t.Alerts {
		if a.Seq > p.shownAlert && shown < 3 {
			fmt.Fprintln(p.w, "        churn alert: "+a.String())
			shown++
		}
	}
	if n := len(t.Alerts); n > 0 {
		p.shownAlert = t.Alerts[n-1].Seq
	}
}

// finish separates the live report from what follows.
func (p *progress) finish() {
	if p.drawn > 0 || !p.tty {
		fmt.Fprintln(p.w)
	}
}

func (a churnAlert) String() string {
	return fmt.Sprintf("%s %s %s→%s (score %.2f): %s", a.At.UTC().Format(time.DateOnly), a.Customer, a.From, a.To, a.Score,
		strings.Join(a.Reasons, "; "))
}

// demoSummary is what `loyalty-dev demo` prints when it stops.
type demoSummary struct {
	Customers int
	Months    int
	Seed      uint64
	Redis     string
	Elapsed   time.Duration
	Produced  producerStats
	Processed int64
	// AppliedAfter is how long after the start the whole history had been applied; 0 when it
	// had not.
	AppliedAfter time.Duration
	tallySnapshot
}

func newSummary(o demoOptions, redis string, elapsed time.Duration, ps producerStats, processed int64, appliedAfter time.Duration, t tallySnapshot) *demoSummary {
	return &demoSummary{Customers: o.Customers, Months: o.Months, Seed: o.Seed, Redis: redis, Elapsed: elapsed, Produced: ps,
		Processed: processed, AppliedAfter: appliedAfter, tallySnapshot: t}
}

func (s *demoSummary) print(w io.Writer) {
	line := func(name, format string, args ...any) {
		fmt.Fprintf(w, "  %-20s%s\n", name+":", fmt.Sprintf(format, args...))
	}
	fmt.Fprintln(w, "loyalty-dev demo summary")
	line("elapsed", "%s", s.Elapsed.Round(100*time.Millisecond))
	line("redis", "%s", s.Redis)
	line("customers", "%s (seed %d, %d months of history)", thousands(int64(s.Customers)), s.Seed, s.Months)
	var kinds []string
	for _, k := range inputSchemas {
		kinds = append(kinds, k+" "+thousands(s.Produced.BySchema[k]))
	}
	complete := "the whole history"
	if !s.Produced.Done {
		complete = "stopped part-way through the history"
	}
	line("events produced", "%s (%s); %s", thousands(s.Produced.Total), strings.Join(kinds, ", "), complete)
	line("events processed", "%s", thousands(s.Processed))
	secs := s.Elapsed.Seconds()
	if s.AppliedAfter > 0 {
		line("throughput", "%s events/s while applying the history (all of it in %s); %s events/s over the whole run",
			thousands(int64(float64(s.Processed)/s.AppliedAfter.Seconds())), s.AppliedAfter.Round(100*time.Millisecond),
			thousands(int64(float64(s.Processed)/secs)))
	} else {
		line("throughput", "%s events/s processed, %s events/s produced", thousands(int64(float64(s.Processed)/secs)),
			thousands(int64(float64(s.Produced.Total)/secs)))
	}
	tier, churn, segment := s.Derived()
	line("derived events", "%s", thousands(tier+churn+segment))
	line("tier changes", "%s (%s)", thousands(tier), joinCounts(dirOrder, s.TierChanges))
	var to []string
	for _, l := range churnOrder {
		to = append(to, "to "+string(l)+" "+thousands(s.ChurnChanges[l]))
	}
	line("churn-risk changes", "%s (%s)", thousands(churn), strings.Join(to, ", "))
	line("segment changes", "%s", thousands(segment))
	line("tiers", "%s", joinCounts(tierOrder, s.Tiers))
	line("churn levels", "%s", joinCounts(churnOrder, s.Churn))
	segs := make([]string, 0, len(s.Segments))
	for seg := range s.Segments {
		segs = append(segs, seg)
	}
	slices.SortFunc(segs, func(a, b string) int {
		if s.Segments[a] != s.Segments[b] {
			return int(s.Segments[b] - s.Segments[a])
		}
		return strings.Compare(a, b)
	})
	if len(segs) == 0 {
		line("segments", "none yet")
	} else {
		line("segments", "%s", joinCounts(segs, s.Segments))
	}
	line("actions decided", "%s (%s)", thousands(sum(s.Actions)), joinCounts(actionOrder, s.Actions))
	line("action outcomes", "%s", joinCounts(outcomeOrder, s.Outcomes))
	line("dead-lettered", "%s", thousands(s.DeadLetters))
}

// joinCounts formats counts in the given key order: "GOLD 12, PLATINUM 3".
func joinCounts[K ~string](order []K, counts map[K]int64) string {
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = string(k) + " " + thousands(counts[k])
	}
	return strings.Join(parts, ", ")
}

// thousands formats n with thousands separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
