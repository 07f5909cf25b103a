package scoring

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

// encodeFieldsForFuzz flattens a stored hash into the fuzzer's string: "k=v" lines in key
// order.
func encodeFieldsForFuzz(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + m[k] + "\n")
	}
	return b.String()
}

// FuzzUnmarshalFields is the stored-state decoder's fuzz target: whatever a customer's hash
// holds (a bug, a manual edit, a bit flip, a value of another version), UnmarshalFields returns
// a state or an error and never panics; and a state it accepts survives an encode/decode round
// trip unchanged, so what the store writes back is what it read.
func FuzzUnmarshalFields(f *testing.F) {
	p := DefaultPolicy()
	f.Add(encodeFieldsForFuzz(typicalCustomer(f, p).MarshalFields()))
	f.Add(encodeFieldsForFuzz(State{}.MarshalFields()))
	f.Add("v=1\nid=c-1\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		m := map[string]string{}
		for _, line := range strings.Split(raw, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				m[k] = v
			}
		}
		s, err := UnmarshalFields(m)
		if err != nil {
			return
		}
		again, err := UnmarshalFields(s.MarshalFields())
		if err != nil {
			t.Fatalf("a state the decoder accepted does not decode after encoding: %v\nfields %v", err, m)
		}
		if !reflect.DeepEqual(normalized(again), normalized(s)) {
			t.Fatalf("round trip changed the state:\n got %+v\nwant %+v", again, s)
		}
	})
}

// normalized is s with its encoding-neutral differences (nil versus empty) removed.
func normalized(s State) State {
	back, _ := UnmarshalFields(s.MarshalFields())
	return back
}
