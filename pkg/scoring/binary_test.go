package scoring

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func mustBinary(tb tb, s State) []byte {
	b, err := s.AppendBinary(nil)
	if err != nil {
		tb.Fatalf("AppendBinary: %v", err)
	}
	return b
}

// The binary encoding round-trips every state the core produces, and agrees with the text
// fields: a state migrated from its hash (UnmarshalFields, then AppendBinary) is the state the
// hash held.
func TestPropertyBinaryStateRoundTripsAndMatchesTheFields(t *testing.T) {
	p := DefaultPolicy()
	rapid.Check(t, func(t *rapid.T) {
		events := withOffsets(genHistory(t, p))
		var s State
		for _, e := range events {
			s, _ = mustApply(t, s, e, p)
			if rapid.Bool().Draw(t, "evaluate") {
				s, _ = Close(s, e.OccurredAt.Add(time.Duration(rapid.IntRange(0, 90).Draw(t, "days"))*24*time.Hour), p)
			}
			enc := mustBinary(t, s)
			var got State
			if err := got.UnmarshalBinary(enc); err != nil {
				t.Fatalf("UnmarshalBinary: %v\nstate %+v", err, s)
			}
			if !reflect.DeepEqual(normalize(got), normalize(s)) {
				t.Fatalf("binary round trip lost data:\nwant %+v\ngot  %+v", s, got)
			}
			fromFields, err := UnmarshalFields(s.MarshalFields())
			if err != nil {
				t.Fatal(err)
			}
			if again := mustBinary(t, fromFields); !bytes.Equal(again, enc) {
				t.Fatalf("the state read from its fields encodes differently:\n%x\n%x", again, enc)
			}
		}
	})
}

// The binary encoding takes well under two thirds of the text fields' bytes, before the
// hash's per-field overhead the single value also saves. Most of what is left is the
// remembered event ids (9 bytes each, five here) and the window.
func TestTypicalCustomerBinaryIsCompact(t *testing.T) {
	s := typicalCustomer(t, DefaultPolicy())
	s.Offsets = map[string]int64{"loyalty.purchases.v1#3": 181_233, "loyalty.logins.v1#3": 912_004, "loyalty.feedback.v1#3": 7_112}
	enc := mustBinary(t, s)
	fields := FieldsSize(s.MarshalFields())
	t.Logf("typical customer: %d bytes binary, %d bytes of text fields", len(enc), fields)
	if len(enc)*5 > fields*3 {
		t.Fatalf("binary %d bytes is more than 60%% of the fields' %d", len(enc), fields)
	}
	if len(enc) > 210 {
		t.Fatalf("binary %d bytes, budget 210", len(enc))
	}
}

func TestZeroStateEncodesAsNothing(t *testing.T) {
	if enc := mustBinary(t, State{}); len(enc) != 0 {
		t.Fatalf("zero state encodes as %x", enc)
	}
	s := State{CustomerID: "x"}
	if err := s.UnmarshalBinary(nil); err != nil || !reflect.DeepEqual(s, State{}) {
		t.Fatalf("empty value decodes as %+v, %v", s, err)
	}
}

func TestUnmarshalBinaryRejectsCorruptState(t *testing.T) {
	good := typicalCustomer(t, DefaultPolicy())
	good.Offsets = map[string]int64{"loyalty.purchases.v1.x#0": 5, "other#1": 9}
	enc := mustBinary(t, good)
	for name, data := range map[string][]byte{
		"other format":  append([]byte{2}, enc[1:]...),
		"truncated":     enc[:len(enc)-1],
		"trailing byte": append(append([]byte(nil), enc...), 0),
		"empty id":      {binaryFormat, 0, 0, 0, 0, 0, 0, 0},
		"unknown flag":  {binaryFormat, 1, 'c', 0x80, 0x80, 0x04, 0, 0, 0, 0, 0},
		"flag, no data": {binaryFormat, 1, 'c', secAgedNet, 0, 0, 0, 0, 0, 0},
	} {
		var s State
		err := s.UnmarshalBinary(data)
		if !errors.Is(err, ErrCorruptState) {
			t.Errorf("%s: got %v, want ErrCorruptState", name, err)
		}
		if !reflect.DeepEqual(s, State{}) {
			t.Errorf("%s: the failed decode changed the state", name)
		}
	}
	var s State
	if err := s.UnmarshalBinary(enc); err != nil || !reflect.DeepEqual(normalize(s), normalize(good)) {
		t.Fatalf("the good encoding: %v", err)
	}
}

// FuzzUnmarshalBinary is the compact state decoder's fuzz target: whatever a customer's value
// holds, UnmarshalBinary returns a state or an error wrapping ErrCorruptState and never
// panics; and a state it accepts survives an encode/decode round trip unchanged, so what the
// store writes back is what it read.
func FuzzUnmarshalBinary(f *testing.F) {
	p := DefaultPolicy()
	typical := typicalCustomer(f, p)
	typical.Offsets = map[string]int64{"loyalty.purchases.v1.s#0": 4, "loyalty.logins.v1.s#0": 77, "x": 1}
	seed, err := typical.AppendBinary(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{binaryFormat, 1, 'c', 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s State
		if err := s.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error %v does not wrap ErrCorruptState", err)
			}
			return
		}
		again, err := s.AppendBinary(nil)
		if err != nil {
			t.Fatalf("a state the decoder accepted does not encode: %v", err)
		}
		var back State
		if err := back.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(back), normalize(s)) {
			t.Fatalf("round trip changed the state:\n got %+v\nwant %+v", back, s)
		}
	})
}
