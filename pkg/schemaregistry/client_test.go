package schemaregistry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	schemaV1 = `{"type":"record","name":"Purchase","namespace":"test","fields":[{"name":"event_id","type":"string"}]}`
	// V2 adds a field with a default: backward compatible with V1.
	schemaV2 = `{"type":"record","name":"Purchase","namespace":"test","fields":[{"name":"event_id","type":"string"},{"name":"channel","type":"string","default":"WEB"}]}`
	// Bad changes event_id's type: not backward compatible with V1.
	schemaBad = `{"type":"record","name":"Purchase","namespace":"test","fields":[{"name":"event_id","type":"long"}]}`
)

func newTestClient(t *testing.T, f *fakeRegistry, mod ...func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{URL: f.URL(), Timeout: 2 * time.Second, RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  ClientConfig
		want string // substring of the error, "" = valid
	}{
		{"ok", ClientConfig{URL: "http://127.0.0.1:8081"}, ""},
		{"ok with path and auth", ClientConfig{URL: "https://sr.example/apis/ccompat/v7/", Username: "u", Password: "p", Timeout: time.Second}, ""},
		{"empty", ClientConfig{}, "URL is required"},
		{"no scheme", ClientConfig{URL: "127.0.0.1/sr"}, "scheme must be http or https"},
		{"unparsable", ClientConfig{URL: "127.0.0.1:8081"}, "invalid URL"},
		{"ftp", ClientConfig{URL: "ftp://x"}, "scheme must be http or https"},
		{"no host", ClientConfig{URL: "http://"}, "no host"},
		{"query", ClientConfig{URL: "http://x/?a=b"}, "query"},
		{"userinfo", ClientConfig{URL: "http://u:p@x"}, "credentials"},
		{"password only", ClientConfig{URL: "http://x", Password: "p"}, "Password set without Username"},
		{"negative timeout", ClientConfig{URL: "http://x", Timeout: -1}, "negative Timeout"},
		{"negative backoff", ClientConfig{URL: "http://x", RetryBackoff: -1}, "negative retry backoff"},
		{"too many retries", ClientConfig{URL: "http://x", MaxRetries: 1000}, "MaxRetries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := NewClient(tc.cfg); err != nil {
					t.Fatalf("NewClient() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.want)
			}
			if _, err := NewClient(tc.cfg); err == nil {
				t.Fatal("NewClient accepted an invalid config")
			}
		})
	}
}

func TestRegisterIdempotentAndCached(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f)
	ctx := context.Background()

	id1, err := c.Register(ctx, "loyalty.purchases.v1-value", schemaV1)
	if err != nil {
		t.Fatal(err)
	}
	// Same schema again: cached, no request.
	id2, err := c.Register(ctx, "loyalty.purchases.v1-value", schemaV1)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 {
		t.Fatalf("same schema got ids %d and %d", id1, id2)
	}
	if n := f.hitCount("POST /subjects/{s}/versions"); n != 1 {
		t.Fatalf("register requests = %d, want 1 (second call should be cached)", n)
	}
	// A fresh client (empty cache) hits the server, which must answer with the same id.
	c2 := newTestClient(t, f)
	id3, err := c2.Register(ctx, "loyalty.purchases.v1-value", schemaV1)
	if err != nil {
		t.Fatal(err)
	}
	if id3 != id1 {
		t.Fatalf("re-registration gave id %d, want %d", id3, id1)
	}
	if n := f.hitCount("POST /subjects/{s}/versions"); n != 2 {
		t.Fatalf("register requests = %d, want 2", n)
	}
	// A new version gets a new id; the same schema under another subject keeps its global id.
	idV2, err := c.Register(ctx, "loyalty.purchases.v1-value", schemaV2)
	if err != nil {
		t.Fatal(err)
	}
	if idV2 == id1 {
		t.Fatalf("new schema version reused id %d", idV2)
	}
	idOther, err := c.Register(ctx, "other-value", schemaV1)
	if err != nil {
		t.Fatal(err)
	}
	if idOther != id1 {
		t.Fatalf("same schema under another subject: id %d, want global id %d", idOther, id1)
	}
	// Requests carried the registry content type.
	f.mu.Lock()
	cts := fmt.Sprint(f.contentTs)
	f.mu.Unlock()
	if !strings.Contains(cts, ContentType) || strings.Count(cts, ":") != 1 {
		t.Fatalf("request content types = %s, want only %s", cts, ContentType)
	}
}

func TestSchemaByIDCached(t *testing.T) {
	f := newFakeRegistry(t)
	ctx := context.Background()
	id, err := newTestClient(t, f).Register(ctx, "s-value", schemaV1)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, f) // nothing cached
	for i := 0; i < 5; i++ {
		got, err := c.SchemaByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got != schemaV1 {
			t.Fatalf("SchemaByID = %s, want %s", got, schemaV1)
		}
	}
	if n := f.hitCount("GET /schemas/ids/{id}"); n != 1 {
		t.Fatalf("GET /schemas/ids requests = %d, want 1", n)
	}
	// A schema the client registered itself needs no lookup at all.
	id2, err := c.Register(ctx, "s-value", schemaV2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.SchemaByID(ctx, id2); err != nil || got != schemaV2 {
		t.Fatalf("SchemaByID(%d) = %q, %v", id2, got, err)
	}
	if n := f.hitCount("GET /schemas/ids/{id}"); n != 1 {
		t.Fatalf("GET /schemas/ids requests = %d, want still 1", n)
	}
}

func TestErrorMapping(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f)
	ctx := context.Background()

	// 40403 schema not found → *APIError and ErrNotFound; not retried.
	_, err := c.SchemaByID(ctx, 4242)
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("SchemaByID(4242) error %v (%T) is not an *APIError", err, err)
	}
	if apiErr.StatusCode != 404 || apiErr.ErrorCode != 40403 || !strings.Contains(apiErr.Message, "not found") {
		t.Fatalf("APIError = %+v", apiErr)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("errors.Is(%v, ErrNotFound) = false", err)
	}
	if !strings.Contains(err.Error(), "schema id 4242") || !strings.Contains(err.Error(), "40403") {
		t.Fatalf("error text lacks context: %v", err)
	}
	if n := f.hitCount("GET /schemas/ids/{id}"); n != 1 {
		t.Fatalf("404 was requested %d times, want 1 (no retry)", n)
	}
	// Failures are not cached.
	if _, err := c.SchemaByID(ctx, 4242); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second lookup: %v", err)
	}
	if n := f.hitCount("GET /schemas/ids/{id}"); n != 2 {
		t.Fatalf("requests = %d, want 2 (errors are not cached)", n)
	}

	// 42201 invalid schema → *APIError, not ErrNotFound.
	_, err = c.Register(ctx, "s-value", "{not json")
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || apiErr.ErrorCode != 42201 {
		t.Fatalf("invalid schema: %v", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatal("422 matched ErrNotFound")
	}

	// 409 incompatible schema.
	if _, err := c.Register(ctx, "s-value", schemaV1); err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(ctx, "s-value", schemaBad)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 409 {
		t.Fatalf("incompatible schema: %v", err)
	}

	// A 404 without a registry error code (wrong base URL) is not ErrNotFound.
	f.inject(injected{status: 404, body: "<html>no such page</html>"})
	_, err = c.SchemaByID(ctx, 77)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.ErrorCode != 0 || !strings.Contains(apiErr.Message, "no such page") {
		t.Fatalf("plain 404: %v", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatal("plain 404 without error_code matched ErrNotFound")
	}

	// 40401 and 40402 also match ErrNotFound.
	for _, code := range []int{40401, 40402} {
		e := &APIError{StatusCode: 404, ErrorCode: code}
		if !errors.Is(fmt.Errorf("wrapped: %w", e), ErrNotFound) {
			t.Fatalf("%d does not match ErrNotFound", code)
		}
	}
}

func TestRetryOn503ThenSuccess(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f)
	f.inject(
		injected{status: 503, body: `{"error_code":50003,"message":"Error while forwarding the request to the master"}`},
		injected{status: 500, body: "internal"},
	)
	id, err := c.Register(context.Background(), "s-value", schemaV1)
	if err != nil {
		t.Fatalf("Register after two 5xx: %v", err)
	}
	if id != 1 {
		t.Fatalf("id = %d", id)
	}
	if n := f.hitCount("POST /subjects/{s}/versions"); n != 3 {
		t.Fatalf("requests = %d, want 3 (two failures, one success)", n)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f, func(cfg *ClientConfig) { cfg.MaxRetries = 2 })
	var sleeps []time.Duration
	c.sleepFor = func(ctx context.Context, d time.Duration) error { sleeps = append(sleeps, d); return nil }
	for i := 0; i < 10; i++ {
		f.inject(injected{status: 502, body: `{"error_code":50001,"message":"store error"}`})
	}
	_, err := c.SchemaByID(context.Background(), 1)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || apiErr.ErrorCode != 50001 {
		t.Fatalf("error = %v", err)
	}
	if !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Fatalf("error text: %v", err)
	}
	if n := f.hitCount("GET /schemas/ids/{id}"); n != 3 {
		t.Fatalf("requests = %d, want 3 (1 + MaxRetries 2)", n)
	}
	if len(sleeps) != 2 {
		t.Fatalf("backoff sleeps = %v, want 2", sleeps)
	}
	for _, d := range sleeps {
		if d <= 0 || d > 5*time.Millisecond {
			t.Fatalf("backoff %v outside (0, MaxRetryBackoff]", d)
		}
	}
	// MaxRetries < 0 disables retries.
	f2 := newFakeRegistry(t)
	c2 := newTestClient(t, f2, func(cfg *ClientConfig) { cfg.MaxRetries = -1 })
	f2.inject(injected{status: 503})
	if _, err := c2.SchemaByID(context.Background(), 1); err == nil {
		t.Fatal("want error")
	}
	if n := f2.hitCount("GET /schemas/ids/{id}"); n != 1 {
		t.Fatalf("requests = %d, want 1", n)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	c, err := NewClient(ClientConfig{URL: "http://x", RetryBackoff: 100 * time.Millisecond, MaxRetryBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 30: time.Second} {
		for i := 0; i < 50; i++ {
			d := c.backoffFor(attempt)
			if d < want/2 || d > want {
				t.Fatalf("backoffFor(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestNoRetryOn4xx(t *testing.T) {
	for _, status := range []int{400, 401, 404, 409, 422, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			f := newFakeRegistry(t)
			c := newTestClient(t, f)
			f.inject(injected{status: status, body: fmt.Sprintf(`{"error_code":%d01,"message":"nope"}`, status)})
			_, err := c.Register(context.Background(), "s-value", schemaV1)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != status || apiErr.ErrorCode != status*100+1 {
				t.Fatalf("error = %v", err)
			}
			if n := f.totalHits(); n != 1 {
				t.Fatalf("requests = %d, want 1 (no retry on %d)", n, status)
			}
		})
	}
}

func TestRetryOnNetworkError(t *testing.T) {
	// A listener that accepts and immediately closes connections, then a real registry.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	accepted := 0
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			conn.Close()
		}
	}()
	defer ln.Close()
	c, err := NewClient(ClientConfig{URL: "http://" + ln.Addr().String(), MaxRetries: 2, RetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SchemaByID(context.Background(), 1)
	if err == nil {
		t.Fatal("want error")
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		t.Fatalf("network error reported as APIError: %v", err)
	}
	mu.Lock()
	n := accepted
	mu.Unlock()
	if n != 3 {
		t.Fatalf("connections = %d, want 3 (1 + 2 retries); err = %v", n, err)
	}
}

func TestContextCancellation(t *testing.T) {
	t.Run("cancelled during a hanging request", func(t *testing.T) {
		f := newFakeRegistry(t)
		c := newTestClient(t, f, func(cfg *ClientConfig) { cfg.Timeout = time.Minute })
		f.inject(injected{hang: true})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Register(ctx, "s-value", schemaV1)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want context.DeadlineExceeded", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("took %v after the deadline", el)
		}
		if n := f.totalHits(); n != 1 {
			t.Fatalf("requests = %d, want 1 (no retry once ctx is done)", n)
		}
	})
	t.Run("cancelled during backoff", func(t *testing.T) {
		f := newFakeRegistry(t)
		c := newTestClient(t, f, func(cfg *ClientConfig) {
			cfg.RetryBackoff, cfg.MaxRetryBackoff, cfg.MaxRetries = time.Hour, time.Hour, 5
		})
		f.inject(injected{status: 503})
		ctx, cancel := context.WithCancel(context.Background())
		f.onRequest = func(*http.Request) { time.AfterFunc(20*time.Millisecond, cancel) }
		start := time.Now()
		_, err := c.SchemaByID(ctx, 1)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("backoff ignored the context: took %v", el)
		}
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
			t.Fatalf("error should wrap the last failure (HTTP 503): %v", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		f := newFakeRegistry(t)
		c := newTestClient(t, f)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.SchemaByID(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v", err)
		}
		if n := f.totalHits(); n != 0 {
			t.Fatalf("requests = %d, want 0", n)
		}
	})
	t.Run("per-attempt timeout is retried", func(t *testing.T) {
		f := newFakeRegistry(t)
		c := newTestClient(t, f, func(cfg *ClientConfig) { cfg.Timeout = 50 * time.Millisecond })
		f.inject(injected{hang: true})
		id, err := c.Register(context.Background(), "s-value", schemaV1)
		if err != nil || id != 1 {
			t.Fatalf("Register = %d, %v; want the retry after the attempt timeout to succeed", id, err)
		}
	})
}

func TestBasicAuth(t *testing.T) {
	f := newFakeRegistry(t)
	f.requireAuth("loyalty", "s3cret")
	ctx := context.Background()

	good := newTestClient(t, f, func(cfg *ClientConfig) { cfg.Username, cfg.Password = "loyalty", "s3cret" })
	if _, err := good.Register(ctx, "s-value", schemaV1); err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	for name, mod := range map[string]func(*ClientConfig){
		"none":  func(*ClientConfig) {},
		"wrong": func(cfg *ClientConfig) { cfg.Username, cfg.Password = "loyalty", "guess" },
	} {
		c := newTestClient(t, f, mod)
		_, err := c.Register(ctx, "s-value", schemaV1)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
			t.Fatalf("%s credentials: error = %v, want HTTP 401", name, err)
		}
	}
}

func TestCheckCompatibility(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f)
	ctx := context.Background()

	ok, err := c.CheckCompatibility(ctx, "new-value", schemaV1)
	if err != nil || !ok {
		t.Fatalf("unknown subject: %v, %v; want compatible", ok, err)
	}
	if _, err := c.Register(ctx, "s-value", schemaV1); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CheckCompatibility(ctx, "s-value", schemaV2); err != nil || !ok {
		t.Fatalf("V2 against V1: %v, %v; want compatible", ok, err)
	}
	if ok, err := c.CheckCompatibility(ctx, "s-value", schemaBad); err != nil || ok {
		t.Fatalf("Bad against V1: %v, %v; want incompatible", ok, err)
	}
	// NONE accepts anything.
	if err := c.SetCompatibility(ctx, "s-value", CompatibilityNone); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CheckCompatibility(ctx, "s-value", schemaBad); err != nil || !ok {
		t.Fatalf("Bad under NONE: %v, %v; want compatible", ok, err)
	}
	if err := c.SetCompatibility(ctx, "s-value", "SIDEWAYS"); err == nil {
		t.Fatal("unknown level accepted")
	}
	// Apicurio answers 40402 for a missing "latest" version: also compatible.
	f.inject(injected{status: 404, body: `{"error_code":40402,"message":"No version 'latest' found"}`})
	if ok, err := c.CheckCompatibility(ctx, "x-value", schemaV1); err != nil || !ok {
		t.Fatalf("40402: %v, %v; want compatible", ok, err)
	}
	// Other errors are errors.
	if _, err := c.CheckCompatibility(ctx, "s-value", "{oops"); err == nil {
		t.Fatal("invalid schema: want error")
	}
}

func TestSubjectEscaping(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f)
	ctx := context.Background()
	subject := "team/a b?c#d-value"
	id, err := c.Register(ctx, subject, schemaV1)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	ids, ok := f.subjects[subject]
	f.mu.Unlock()
	if !ok || len(ids) != 1 || ids[0] != id {
		t.Fatalf("subject %q not registered as one subject: %v", subject, f.subjects)
	}
}

func TestTrailingSlashAndBasePath(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f, func(cfg *ClientConfig) { cfg.URL = f.URL() + "/" })
	if _, err := c.Register(context.Background(), "s-value", schemaV1); err != nil {
		t.Fatal(err)
	}
	if c.URL() != f.URL() {
		t.Fatalf("URL() = %q", c.URL())
	}
}

func TestInputValidation(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f)
	ctx := context.Background()
	if _, err := c.Register(ctx, "", schemaV1); err == nil {
		t.Fatal("empty subject accepted")
	}
	if _, err := c.Register(ctx, "s", ""); err == nil {
		t.Fatal("empty schema accepted")
	}
	if _, err := c.CheckCompatibility(ctx, "", schemaV1); err == nil {
		t.Fatal("empty subject accepted")
	}
	if n := f.totalHits(); n != 0 {
		t.Fatalf("requests = %d, want 0", n)
	}
}

func TestMalformedSuccessResponse(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f)
	ctx := context.Background()
	f.inject(injected{status: 200, body: `{"unexpected":true}`})
	if _, err := c.Register(ctx, "s-value", schemaV1); err == nil || !strings.Contains(err.Error(), "no id") {
		t.Fatalf("error = %v", err)
	}
	f.inject(injected{status: 200, body: `not json`})
	if _, err := c.SchemaByID(ctx, 1); err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Fatalf("error = %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	f := newFakeRegistry(t)
	c := newTestClient(t, f)
	ctx := context.Background()
	schemas := []string{schemaV1, schemaV2}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				s := schemas[(g+i)%2]
				id, err := c.Register(ctx, fmt.Sprintf("subj-%d-value", g%4), s)
				if err != nil {
					errs <- err
					return
				}
				got, err := c.SchemaByID(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				if got != s {
					errs <- fmt.Errorf("id %d: got %s want %s", id, got, s)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
