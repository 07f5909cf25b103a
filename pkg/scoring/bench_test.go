package scoring

import (
	"testing"
	"time"
)

func BenchmarkApply(b *testing.B) {
	p := DefaultPolicy()
	s := typicalCustomer(b, p)
	next := msTime(s.ClockMs)
	var g evGen
	g.n = 1 << 20
	b.Run("purchase", func(b *testing.B) {
		e := g.purchase(next.Add(time.Minute), 4200, "bench")
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Apply(s, e, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("login", func(b *testing.B) {
		e := g.login(next.Add(time.Minute))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Apply(s, e, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("login_next_day", func(b *testing.B) {
		// Closes a day, so one end-of-day evaluation runs.
		e := g.login(next.Add(26 * time.Hour))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Apply(s, e, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		e := g.login(next.Add(time.Minute))
		s2, _ := mustApply(b, s, e, p)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Apply(s2, e, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEvaluate times the passage of event time: Evaluate (every day up to the
// watermark) and Sweep (the sweeper's computation: through each deadline reached, then the
// next deadline).
func BenchmarkEvaluate(b *testing.B) {
	p := DefaultPolicy()
	s := typicalCustomer(b, p)
	now := msTime(s.ClockMs)
	evaluate := func(at time.Time) { Close(s, at, p) }
	sweep := func(at time.Time) { Sweep(s, at, p) }
	for _, f := range []struct {
		name string
		run  func(time.Time)
	}{{"evaluate", evaluate}, {"sweep", sweep}} {
		for _, c := range []struct {
			name string
			at   time.Time
		}{{"one_day", now.Add(24 * time.Hour)}, {"thirty_days", now.Add(30 * 24 * time.Hour)}} {
			b.Run(f.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f.run(c.at)
				}
			})
		}
	}
}

func BenchmarkNextDeadline(b *testing.B) {
	p := DefaultPolicy()
	s := typicalCustomer(b, p)
	b.ReportAllocs()
	for b.Loop() {
		NextDeadline(s, p)
	}
}

func BenchmarkMarshalFields(b *testing.B) {
	s := typicalCustomer(b, DefaultPolicy())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalFields(s.MarshalFields()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNextDeadlineDormant is the worst case: a customer whose scores no
// longer change, so the whole look-ahead horizon is simulated.
func BenchmarkNextDeadlineDormant(b *testing.B) {
	p := DefaultPolicy()
	var g evGen
	s, _ := mustApply(b, State{}, g.purchase(day(0), 100, "a"), p)
	s, _ = Close(s, day(800), p)
	b.ReportAllocs()
	for b.Loop() {
		NextDeadline(s, p)
	}
}

// busyCustomer is a typical customer who remembers the most ids a topic keeps
// (dedupe.max_ids_per_topic, 64 logins within the horizon).
func busyCustomer(b *testing.B, p *Policy) State {
	s := typicalCustomer(b, p)
	at := msTime(s.ClockMs)
	var g evGen
	g.n = 1 << 20 // offsets past the typical customer's
	for i := range 80 {
		s, _ = mustApply(b, s, g.login(at.Add(time.Duration(i)*time.Hour)), p)
	}
	if n := len(s.Seen[seenLogins]); n != p.Dedupe.MaxIDsPerTopic {
		b.Fatalf("the customer remembers %d login ids, want %d", n, p.Dedupe.MaxIDsPerTopic)
	}
	return s
}

// BenchmarkAppendBinary encodes a busy customer (busyCustomer): what every write stores.
func BenchmarkAppendBinary(b *testing.B) {
	s := busyCustomer(b, DefaultPolicy())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AppendBinary(nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalBinary decodes a busy customer (busyCustomer): what every write of a busy
// customer reads first.
func BenchmarkUnmarshalBinary(b *testing.B) {
	s := busyCustomer(b, DefaultPolicy())
	data, err := s.AppendBinary(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var d State
		if err := d.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}
