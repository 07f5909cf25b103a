package scoring

import (
	"errors"
	"testing"
	"time"
)

// typicalCustomer is a year of an ordinary customer: a purchase about every
// three weeks, logins twice a week, one NPS answer, across all three topics.
func typicalCustomer(tb tb, p *Policy) State {
	var g evGen
	var s State
	for d := 0; d < 365; d++ {
		if d%21 == 0 {
			s, _ = mustApply(tb, s, g.purchase(day(d), 4500+int64(d), "o"), p)
		}
		if d%3 == 0 {
			s, _ = mustApply(tb, s, g.login(day(d).Add(time.Hour)), p)
		}
	}
	s, _ = mustApply(tb, s, g.feedback(day(300), FeedbackNPS, 8), p)
	return s
}

// typicalBudget is the field bytes a typical customer may take: 400, plus the remembered
// event ids' share beyond the 45 bytes of the former 32-bit ring (this customer has five ids
// within the dedupe horizon, 124 bytes of 128-bit digests and days; see docs/scoring.md).
const typicalBudget = 420

func TestTypicalCustomerFitsTheSizeBudget(t *testing.T) {
	s := typicalCustomer(t, DefaultPolicy())
	m := s.MarshalFields()
	size := FieldsSize(m)
	t.Logf("typical customer: %d fields, %d bytes: %v", len(m), size, m)
	if size > typicalBudget {
		t.Fatalf("typical customer takes %d bytes, budget %d", size, typicalBudget)
	}
	for k, v := range m {
		if len(v) > maxFieldLen {
			t.Fatalf("field %s is %d bytes", k, len(v))
		}
	}
}

func TestUnmarshalFieldsRejectsCorruptState(t *testing.T) {
	good := typicalCustomer(t, DefaultPolicy()).MarshalFields()
	for name, mutate := range map[string]func(map[string]string){
		"an unknown field":         func(m map[string]string) { m["zz"] = "1" },
		"another format version":   func(m map[string]string) { m["v"] = "9" },
		"a malformed number":       func(m map[string]string) { m["ck"] = "!!" },
		"a truncated window":       func(m map[string]string) { m["w0"] = m["w0"][:3] },
		"a window chunk gap":       func(m map[string]string) { m["w5"] = "AA" },
		"an out-of-range segment":  func(m map[string]string) { m["s"] = "z.1.1" },
		"a malformed login bitmap": func(m map[string]string) { m["lg"] = "abc" },
	} {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		mutate(m)
		if _, err := UnmarshalFields(m); !errors.Is(err, ErrCorruptState) {
			t.Errorf("%s: got %v, want ErrCorruptState", name, err)
		}
	}
	if s, err := UnmarshalFields(nil); err != nil || s.started() {
		t.Fatalf("empty fields: %v %+v, want the zero state", err, s)
	}
}

func TestEventIDIsDeterministicAndDistinct(t *testing.T) {
	at := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	a := EventID("c1", "tier", "UP:GOLD", at)
	if a != EventID("c1", "tier", "UP:GOLD", at) || len(a) != 64 {
		t.Fatalf("EventID not deterministic 64-hex: %s", a)
	}
	for _, b := range []string{
		EventID("c2", "tier", "UP:GOLD", at), EventID("c1", "churn", "UP:GOLD", at),
		EventID("c1", "tier", "UP:SILVER", at), EventID("c1", "tier", "UP:GOLD", at.Add(time.Millisecond)),
		EventID("c1t", "ier", "UP:GOLD", at),
	} {
		if a == b {
			t.Fatalf("distinct inputs share the id %s", a)
		}
	}
}
