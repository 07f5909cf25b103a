package txnsummary

import (
	"errors"
	"strings"
	"testing"
)

func TestReadersReportBadRowsWithLineNumbers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format Format
		input  string
		want   []string
	}{
		{"a cdnow row with a bad date names its line", FormatCDNOW,
			"00004 0001 19970101  2   29.33\r\n00004 0001 1997013x  2   29.73\r\n", []string{"line 2: date"}},
		{"a cdnow row with too few fields names its line", FormatCDNOW,
			"\n00004 0001 19970101 2\n", []string{"line 2: want 5 fields"}},
		{"a negative cdnow amount is rejected", FormatCDNOW, "1 2 19970101 1 -3\n", []string{"line 1: dollars"}},
		{"a csv without the header is rejected", FormatCSV, "a,2024-01-01,1\n", []string{"line 1: header"}},
		{"every bad csv row is reported", FormatCSV,
			"customer_id,occurred_at,amount\nc1,2024-01-01,10\nc1,yesterday,1\n,2024-01-02,1\nc2,2024-01-02,ten\nc3,2024-01-02\n",
			[]string{"line 3: occurred_at", "line 4: customer_id is empty", "line 5: amount", "line 6: want 3 fields"}},
		{"empty csv input is rejected", FormatCSV, "", []string{"empty input"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tc.input), tc.format)
			if err == nil {
				t.Fatal("bad input accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLineErrorsAreTyped(t *testing.T) {
	_, err := ReadCDNOW(strings.NewReader("x\n"))
	var le *LineError
	if !errors.As(err, &le) || le.Line != 1 {
		t.Fatalf("want a *LineError for line 1, got %v", err)
	}
}

func TestSummarizeFollowsTheCDNOWConventions(t *testing.T) {
	in := "" +
		"1 0001 19970101 2 29.33\r\n" +
		"1 0001 19970118 2 29.73\r\n" +
		"1 0001 19970118 1 10.00\r\n" + // same day: merged into one purchase of 39.73
		"1 0001 19970802 1 14.96\r\n" +
		"1 0001 19971212 2 26.48\r\n" + // after calibration end: ignored
		"2 0002 19970301 1 5.00\r\n" +
		"3 0003 19971001 1 5.00\r\n" // first purchase after calibration end: not a customer yet
	txns, err := ReadCDNOW(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Summarize(txns, mustDay(t, "1997-09-30"), UnitWeek)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("got %d customers, want 2: %+v", len(cs), cs)
	}
	c := cs[0]
	if c.ID != "0001" || c.X != 2 || !near(c.TX, 213.0/7) || !near(c.T, 272.0/7) || !near(c.Monetary, (39.73+14.96)/2) {
		t.Errorf("customer 0001 = %+v, want x=2 t_x=213/7 T=272/7 monetary=27.345", c)
	}
	if d := cs[1]; d.ID != "0002" || d.X != 0 || d.TX != 0 || d.Monetary != 0 || !near(d.T, 213.0/7) {
		t.Errorf("customer 0002 = %+v, want x=0 t_x=0 monetary=0 T=213/7", d)
	}
}

func TestSummarizeNetsRefunds(t *testing.T) {
	in := "customer_id,occurred_at,amount\n" +
		"c,2024-01-01T10:00:00Z,100\n" +
		"c,2024-01-10,50\n" +
		"c,2024-01-10T18:00:00+00:00,-20\n" + // same-day partial refund
		"c,2024-01-20,-10\n" + // refund-only day: reduces repeat spend, not a purchase
		"c,2024-01-30,30\n"
	txns, err := ReadCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Summarize(txns, mustDay(t, "2024-01-31"), UnitDay)
	if err != nil {
		t.Fatal(err)
	}
	c := cs[0]
	if c.X != 2 || c.TX != 29 || c.T != 30 || !near(c.Monetary, (30+30-10)/2.0) {
		t.Fatalf("got %+v, want x=2 t_x=29 T=30 monetary=25", c)
	}
}

func TestSummarizeRejectsARefundBeforeAnyPurchase(t *testing.T) {
	txns, err := ReadCSV(strings.NewReader("customer_id,occurred_at,amount\nc,2024-01-01,-5\nc,2024-01-02,5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Summarize(txns, mustDay(t, "2024-02-01"), UnitDay); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("want an error naming line 2, got %v", err)
	}
}

func FuzzReaders(f *testing.F) {
	f.Add("00004 0001 19970101  2   29.33\r\n00004 0001 19970118  2   29.73\r\n", false)
	f.Add("customer_id,occurred_at,amount\nc1,2024-01-01T10:00:00Z,12.5\nc1,2024-01-02,-3\n", true)
	f.Add("customer_id,occurred_at,amount\n\"a,b\",2024-01-01,1\n", true)
	f.Fuzz(func(t *testing.T, in string, csvFormat bool) {
		format := FormatCDNOW
		if csvFormat {
			format = FormatCSV
		}
		txns, err := Read(strings.NewReader(in), format)
		if err != nil {
			if txns != nil {
				t.Fatalf("error %v returned with %d transactions", err, len(txns))
			}
			return
		}
		for _, tx := range txns {
			if tx.CustomerID == "" || tx.Line < 1 || tx.Amount != tx.Amount {
				t.Fatalf("accepted an invalid transaction %+v", tx)
			}
			if format == FormatCDNOW && tx.Amount < 0 {
				t.Fatalf("cdnow accepted a negative amount %+v", tx)
			}
		}
		cs, err := Summarize(txns, Day(20000), UnitWeek)
		if err != nil {
			return
		}
		for _, c := range cs {
			if err := c.Validate(); err != nil {
				t.Fatalf("summary %+v is invalid: %v", c, err)
			}
		}
	})
}

func mustDay(t *testing.T, s string) Day {
	t.Helper()
	d, err := parseTime(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func near(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }
