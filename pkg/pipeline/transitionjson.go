package pipeline

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// marshalTransition is json.Marshal(t), byte for byte, without reflection: a sweep writes a
// transition entry for every change it derives, and encoding/json cost about as much as
// compressing the entry. Values it does not handle itself (strings needing escapes, floats
// that encoding/json writes in exponent form or refuses, times outside years 0-9999) make it
// hand the whole entry to encoding/json, so the bytes never differ.
func marshalTransition(t *Transition) ([]byte, error) {
	return appendTransitionTo(make([]byte, 0, 512), t)
}

// appendTransitionTo appends the JSON of t to b (marshalTransition into a buffer of the
// caller's).
func appendTransitionTo(b []byte, t *Transition) ([]byte, error) {
	if out, ok := appendTransitionJSON(b, t); ok {
		return out, nil
	}
	js, err := json.Marshal(t)
	return append(b, js...), err
}

func appendTransitionJSON(b []byte, t *Transition) ([]byte, bool) {
	if y := t.At.Year(); y < 0 || y > 9999 {
		return nil, false
	}
	ok := true
	str := func(key, v string) {
		b = append(b, key...)
		b, ok = appendJSONString(b, v, ok)
	}
	b = append(b, `{"at":"`...)
	b = t.At.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	str(`,"kind":`, t.Kind)
	str(`,"from":`, t.From)
	str(`,"to":`, t.To)
	str(`,"event_id":`, t.EventID)
	if t.Direction != "" {
		str(`,"direction":`, t.Direction)
	}
	if t.Score != nil {
		b = append(b, `,"score":`...)
		b, ok = appendJSONFloat(b, *t.Score, ok)
	}
	if t.PAlive != nil {
		b = append(b, `,"p_alive":`...)
		b, ok = appendJSONFloat(b, *t.PAlive, ok)
	}
	if t.ModelVersion != "" {
		str(`,"model_version":`, t.ModelVersion)
	}
	if t.FromLayer != "" {
		str(`,"from_layer":`, t.FromLayer)
	}
	if t.ToLayer != "" {
		str(`,"to_layer":`, t.ToLayer)
	}
	if t.RFM != nil {
		b = append(b, `,"rfm":{"R":`...)
		b = strconv.AppendInt(b, int64(t.RFM.R), 10)
		b = append(b, `,"F":`...)
		b = strconv.AppendInt(b, int64(t.RFM.F), 10)
		b = append(b, `,"M":`...)
		b = strconv.AppendInt(b, int64(t.RFM.M), 10)
		b = append(b, '}')
	}
	b = append(b, `,"reasons":`...)
	if t.Reasons == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range t.Reasons {
			if i > 0 {
				b = append(b, ',')
			}
			str(`{"code":`, r.Code)
			str(`,"message":`, r.Message)
			b = append(b, `,"value":`...)
			b, ok = appendJSONFloat(b, r.Value, ok)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), ok
}

// appendJSONString appends s quoted when it needs no escaping under encoding/json's rules
// (printable ASCII other than the quote, the backslash and the HTML characters <, > and &);
// otherwise it reports false.
func appendJSONString(b []byte, s string, ok bool) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), ok
}

// appendJSONFloat appends f as encoding/json writes it in fixed notation (zero, or a magnitude
// in [1e-6, 1e21)); otherwise it reports false.
func appendJSONFloat(b []byte, f float64, ok bool) ([]byte, bool) {
	if abs := math.Abs(f); abs != 0 && !(abs >= 1e-6 && abs < 1e21) {
		return b, false // exponent form, NaN or ±Inf
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64), ok
}
