package codec_test

import (
	"context"
	"encoding/binary"
	"os"
	"reflect"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/codec"
	"github.com/loyalty-scoring/loyalty/pkg/schemaregistry"
)

// TestAgainstTheConfiguredRegistry runs the codec through the registry CI starts (Apicurio's
// Confluent-compatible API, SCHEMA_REGISTRY_URL): the 5-byte header carries the ID that
// registry assigned, and a second codec (another process) reads the records back by ID.
// Without SCHEMA_REGISTRY_URL it runs on the embedded registry and says so.
func TestAgainstTheConfiguredRegistry(t *testing.T) {
	ctx := context.Background()
	var reg codec.Registry
	if url := os.Getenv("SCHEMA_REGISTRY_URL"); url != "" {
		c, err := schemaregistry.NewClient(schemaregistry.ClientConfig{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		reg = c
		t.Logf("schema registry: %s", url)
	} else {
		t.Log("SCHEMA_REGISTRY_URL unset: using the embedded registry (CI runs this against Apicurio)")
		emb, err := codec.NewEmbeddedRegistry()
		if err != nil {
			t.Fatal(err)
		}
		reg = emb
	}
	writer, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range samples {
		b, err := writer.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		id := int(binary.BigEndian.Uint32(b[1:5]))
		text, err := reg.SchemaByID(ctx, id)
		if err != nil || text == "" {
			t.Fatalf("%s: header id %d unknown to the registry: %v", e.Schema(), id, err)
		}
		got, err := reader.Decode(ctx, b)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: %v %+v", e.Schema(), err, got)
		}
	}
}
