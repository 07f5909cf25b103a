package schemaregistry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestIntegrationRegistry runs the client against a real Confluent-compatible registry when
// SCHEMA_REGISTRY_URL is set (e.g. Apicurio via deploy/local/registry.sh, whose `url` prints
// it), and against the in-process fake otherwise. SCHEMA_REGISTRY_USERNAME and
// SCHEMA_REGISTRY_PASSWORD are used for basic auth when set. Subjects are unique per run,
// so a long-lived registry can be reused.
func TestIntegrationRegistry(t *testing.T) {
	url := os.Getenv("SCHEMA_REGISTRY_URL")
	if url == "" {
		f := newFakeRegistry(t)
		url = f.URL()
		t.Log("SCHEMA_REGISTRY_URL is not set: running against the in-process httptest fake registry, " +
			"not a real one (for a real one: export SCHEMA_REGISTRY_URL=$(deploy/local/registry.sh start >/dev/null && deploy/local/registry.sh url))")
	} else {
		t.Logf("running against the real schema registry at %s", url)
	}
	c, err := NewClient(ClientConfig{
		URL:      url,
		Username: os.Getenv("SCHEMA_REGISTRY_USERNAME"),
		Password: os.Getenv("SCHEMA_REGISTRY_PASSWORD"),
		Timeout:  10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	run := time.Now().UnixNano()
	subject := fmt.Sprintf("it-%d-loyalty.purchases.v1-value", run)
	// Unique record names keep this run's schemas (and so their global ids) new even on a
	// registry that outlives the test.
	ns := fmt.Sprintf("it%d", run)
	v1 := `{"type":"record","name":"Purchase","namespace":"` + ns + `","fields":[{"name":"event_id","type":"string"},{"name":"amount_minor","type":"long"}]}`
	v2 := `{"type":"record","name":"Purchase","namespace":"` + ns + `","fields":[{"name":"event_id","type":"string"},{"name":"amount_minor","type":"long"},{"name":"channel","type":"string","default":"WEB"}]}`
	bad := `{"type":"record","name":"Purchase","namespace":"` + ns + `","fields":[{"name":"event_id","type":"string"},{"name":"amount_minor","type":"string"}]}`

	// A subject that does not exist yet is compatible with anything.
	ok, err := c.CheckCompatibility(ctx, subject, v1)
	if err != nil || !ok {
		t.Fatalf("CheckCompatibility(new subject) = %v, %v; want true, nil", ok, err)
	}
	if err := c.SetCompatibility(ctx, subject, CompatibilityBackward); err != nil {
		t.Fatalf("SetCompatibility: %v", err)
	}

	id1, err := c.Register(ctx, subject, v1)
	if err != nil {
		t.Fatalf("Register v1: %v", err)
	}
	// Idempotent on the server, not just in our cache: a fresh client gets the same id.
	c2, err := NewClient(ClientConfig{URL: url, Username: os.Getenv("SCHEMA_REGISTRY_USERNAME"), Password: os.Getenv("SCHEMA_REGISTRY_PASSWORD")})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c2.Register(ctx, subject, v1); err != nil || again != id1 {
		t.Fatalf("re-register v1 = %d, %v; want %d", again, err, id1)
	}
	got, err := c2.SchemaByID(ctx, id1)
	if err != nil {
		t.Fatalf("SchemaByID(%d): %v", id1, err)
	}
	if !jsonEqual([]byte(got), []byte(v1)) {
		t.Fatalf("SchemaByID(%d) = %s, want %s", id1, got, v1)
	}

	if ok, err := c.CheckCompatibility(ctx, subject, v2); err != nil || !ok {
		t.Fatalf("v2 (field with default added) = %v, %v; want compatible", ok, err)
	}
	if ok, err := c.CheckCompatibility(ctx, subject, bad); err != nil || ok {
		t.Fatalf("bad (field type changed) = %v, %v; want incompatible", ok, err)
	}
	id2, err := c.Register(ctx, subject, v2)
	if err != nil {
		t.Fatalf("Register v2: %v", err)
	}
	if id2 == id1 {
		t.Fatalf("v2 got v1's id %d", id2)
	}
	// Registering an incompatible schema is refused with a 409, and not retried.
	_, err = c.Register(ctx, subject, bad)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 409 {
		t.Fatalf("Register bad: %v; want HTTP 409", err)
	}
	t.Logf("incompatible registration refused as expected: %v", err)

	// Unknown id → ErrNotFound (40403).
	_, err = c.SchemaByID(ctx, 1<<30)
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &apiErr) || apiErr.ErrorCode != 40403 {
		t.Fatalf("SchemaByID(unknown) = %v; want ErrNotFound with code 40403", err)
	}
	// Invalid schema → 422 / 42201.
	_, err = c.Register(ctx, subject, "{definitely not avro")
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 {
		t.Fatalf("Register(invalid) = %v; want HTTP 422", err)
	}
	t.Logf("ids: v1=%d v2=%d; invalid schema error: %v", id1, id2, err)
}
