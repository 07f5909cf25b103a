package avrocompat_test

import (
	"errors"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/avrocompat"
)

const base = `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},
 {"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null}
]}`

func TestCheckBackward(t *testing.T) {
	tests := []struct {
		name       string
		newSchema  string
		compatible bool
	}{
		{"an identical schema reads its own data", base, true},
		{"a new optional field with a default is compatible", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null},
 {"name":"store_id","type":["null","string"],"default":null}]}`, true},
		{"a new field without a default breaks old records", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null},
 {"name":"store_id","type":"string"}]}`, false},
		{"removing a field is compatible for readers", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}}]}`, true},
		{"widening int to long is a permitted promotion", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"long"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null}]}`, true},
		{"changing a string to an int is incompatible", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"int"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null}]}`, false},
		{"removing an enum symbol without a default is incompatible", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null}]}`, false},
		{"adding an enum symbol is compatible", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND","EXCHANGE"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null}]}`, true},
		{"narrowing an optional field to required is incompatible", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":"string"}]}`, false},
		{"changing array items incompatibly is caught inside the array", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"int"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null}]}`, false},
		{"a new field in a nested record needs a default too", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"event_id","type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"},{"name":"partition","type":"int"}]}},
 {"name":"channel","type":["null","string"],"default":null}]}`, false},
		{"renaming a field keeps compatibility through an alias", `{"type":"record","name":"Purchase","namespace":"loyalty.v1","fields":[
 {"name":"id","aliases":["event_id"],"type":"string"},{"name":"amount_minor","type":"int"},
 {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["PURCHASE","REFUND"]}},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"topic","type":"string"}]}},
 {"name":"channel","type":["null","string"],"default":null}]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := avrocompat.CheckBackward(tt.newSchema, base)
			if tt.compatible && err != nil {
				t.Fatalf("want compatible, got %v", err)
			}
			if !tt.compatible && !errors.Is(err, avrocompat.ErrIncompatible) {
				t.Fatalf("want ErrIncompatible, got %v", err)
			}
		})
	}
}

func TestCheckBackwardTransitiveFindsABreakWithAnOlderVersion(t *testing.T) {
	v1 := `{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}`
	v2 := `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}`
	v3 := `{"type":"record","name":"R","fields":[{"name":"b","type":"int"}]}` // reads v2, not v1
	if err := avrocompat.CheckBackward(v3, v2); err != nil {
		t.Fatalf("v3 should read v2: %v", err)
	}
	if err := avrocompat.CheckBackwardTransitive([]string{v1, v2, v3}); !errors.Is(err, avrocompat.ErrIncompatible) {
		t.Fatalf("v3 must be rejected because it cannot read v1, got %v", err)
	}
}

func TestCheckBackwardRejectsUnparseableSchemas(t *testing.T) {
	if err := avrocompat.CheckBackward(`{"type":`, base); err == nil || errors.Is(err, avrocompat.ErrIncompatible) {
		t.Fatalf("want a parse error, got %v", err)
	}
}
