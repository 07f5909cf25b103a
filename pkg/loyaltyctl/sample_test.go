package loyaltyctl

import (
	"os"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

// The README's produce example uses testdata/sample/*.jsonl: every line must be a valid
// event of its topic, so the example produces instead of reporting bad lines.
func TestSampleInputFilesAreValid(t *testing.T) {
	validator, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for name, topic := range map[string]string{"purchases": event.TopicPurchases, "logins": event.TopicLogins, "feedback": event.TopicFeedback} {
		f, err := os.Open(testinfra.DataFile(t, "sample/"+name+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		inputs, bad, err := ParseInputLines(f, topic, validator, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		_ = f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, b := range bad {
			t.Errorf("testdata/sample/%s.jsonl:%d: %v", name, b.Line, b.Err)
		}
		if len(inputs) < 5 {
			t.Errorf("testdata/sample/%s.jsonl has %d events, want a useful sample (≥ 5)", name, len(inputs))
		}
	}
}
