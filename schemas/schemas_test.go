package schemas_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/loyalty-scoring/loyalty/pkg/avrocompat"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/schemas"
)

func load(t *testing.T) []schemas.Schema {
	t.Helper()
	all, err := schemas.All()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestEveryVersionIsBackwardCompatibleWithAllEarlierOnes is the gate for schema changes: add a
// version to the manifest and this test decides whether consumers can upgrade safely.
func TestEveryVersionIsBackwardCompatibleWithAllEarlierOnes(t *testing.T) {
	for _, s := range load(t) {
		texts := make([]string, len(s.Versions))
		for i, v := range s.Versions {
			if _, err := goavro.NewCodec(v.Text); err != nil {
				t.Fatalf("%s v%d does not parse: %v", s.Name, v.Version, err)
			}
			texts[i] = v.Text
		}
		for i := 2; i <= len(texts); i++ {
			if err := avrocompat.CheckBackwardTransitive(texts[:i]); err != nil {
				t.Errorf("%s v%d: %v", s.Name, s.Versions[i-1].Version, err)
			}
		}
	}
}

// TestTheCheckAcceptsAnAdditiveNextVersionAndRejectsABreakingOne proves the gate above has
// teeth for every current schema: the typical next version (one more optional field) passes,
// and a careless one (a new required field) fails.
func TestTheCheckAcceptsAnAdditiveNextVersionAndRejectsABreakingOne(t *testing.T) {
	for _, s := range load(t) {
		latest := s.Latest().Text
		additive := withExtraField(t, latest, map[string]any{"name": "x_next", "type": []any{"null", "string"}, "default": nil})
		breaking := withExtraField(t, latest, map[string]any{"name": "x_next", "type": "string"})
		if err := avrocompat.CheckBackward(additive, latest); err != nil {
			t.Errorf("%s: an optional field with a default must be compatible: %v", s.Name, err)
		}
		if err := avrocompat.CheckBackward(breaking, latest); !errors.Is(err, avrocompat.ErrIncompatible) {
			t.Errorf("%s: a required new field must be rejected, got %v", s.Name, err)
		}
	}
}

func withExtraField(t *testing.T, schema string, f map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(schema), &m); err != nil {
		t.Fatal(err)
	}
	m["fields"] = append(m["fields"].([]any), f)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestManifestTopicsAreTheTopicsDefinedInCode(t *testing.T) {
	var topics []string
	for _, s := range load(t) {
		topics = append(topics, s.Topic)
	}
	want := event.Topics()
	slices.Sort(topics)
	slices.Sort(want)
	if !slices.Equal(topics, want) {
		t.Fatalf("manifest topics %v, code defines %v", topics, want)
	}
}

func TestManifestSchemasAreTheSchemasOfTheTopicTable(t *testing.T) {
	for _, s := range load(t) {
		row, ok := event.StreamOfTopic(s.Topic)
		if !ok || row.Schema != s.Name {
			t.Errorf("manifest: topic %s carries %s; event.Streams: %+v (found %v)", s.Topic, s.Name, row, ok)
		}
	}
}

func TestInputSchemasCarryTheCommonIdentifyingFields(t *testing.T) {
	for _, s := range load(t) {
		if !slices.Contains(event.InputTopics(), s.Topic) {
			continue
		}
		var m struct {
			Fields []struct {
				Name string `json:"name"`
				Type any    `json:"type"`
			} `json:"fields"`
		}
		if err := json.Unmarshal([]byte(s.Latest().Text), &m); err != nil {
			t.Fatal(err)
		}
		names := map[string]any{}
		for _, f := range m.Fields {
			names[f.Name] = f.Type
		}
		for _, want := range []string{"event_id", "customer_id", "occurred_at"} {
			if _, ok := names[want]; !ok {
				t.Errorf("%s lacks %s", s.Name, want)
			}
		}
		ts, _ := names["occurred_at"].(map[string]any)
		if ts["logicalType"] != "timestamp-millis" {
			t.Errorf("%s.occurred_at must be timestamp-millis, is %v", s.Name, names["occurred_at"])
		}
	}
}
