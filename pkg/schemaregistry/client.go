// Package schemaregistry is an HTTP client for a Confluent-compatible Schema Registry
// (Confluent Schema Registry, Apicurio Registry's /apis/ccompat/v7 API, Redpanda, …).
//
// It covers what the event codec needs: registering a subject's Avro schema (and caching
// the ID it gets), fetching a schema by ID (cached), checking a schema against a subject's
// latest version, and setting a subject's compatibility level. A *Client is safe for
// concurrent use.
//
// Errors the registry returns come back as *APIError, carrying the HTTP status and the
// registry's own error code from its JSON body ({"error_code":40401,"message":"..."});
// errors.Is(err, ErrNotFound) reports the 404 "not found" family. Server errors (5xx) and
// network errors are retried with exponential backoff, a bounded number of times and never
// past the caller's context; client errors (4xx) are never retried.
package schemaregistry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Content types of the Confluent REST API.
const (
	ContentType  = "application/vnd.schemaregistry.v1+json"
	acceptHeader = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5"
)

// Defaults applied by NewClient to zero-valued ClientConfig fields.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultMaxRetries      = 3
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxRetryBackoff = 2 * time.Second
)

// maxBodyBytes bounds how much of a response body the client reads.
const maxBodyBytes = 8 << 20

// Registry is the subset of the client the event codec depends on.
type Registry interface {
	Register(ctx context.Context, subject, schema string) (int, error)
	SchemaByID(ctx context.Context, id int) (string, error)
}

var _ Registry = (*Client)(nil)

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL is the registry's base URL, e.g. "http://127.0.0.1:8081" for Confluent or
	// "http://127.0.0.1:8080/apis/ccompat/v7" for Apicurio. Required.
	URL string
	// Username and Password enable HTTP basic auth when Username is set.
	Username, Password string
	// Timeout bounds each HTTP attempt (not the whole call with its retries).
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// HTTPClient is used when set (it is never modified); otherwise a client with
	// http.DefaultTransport is used.
	HTTPClient *http.Client
	// MaxRetries is how many times a request is retried after a 5xx or network error.
	// Zero means DefaultMaxRetries; a negative value disables retries.
	MaxRetries int
	// RetryBackoff is the delay before the first retry, doubled on each later one (with
	// jitter) up to MaxRetryBackoff. Zero means DefaultRetryBackoff / DefaultMaxRetryBackoff.
	RetryBackoff, MaxRetryBackoff time.Duration
}

// Validate reports whether the configuration is usable.
func (c ClientConfig) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return errors.New("schemaregistry: config: URL is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("schemaregistry: config: invalid URL %q: %w", c.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("schemaregistry: config: URL %q: scheme must be http or https", c.URL)
	}
	if u.Host == "" {
		return fmt.Errorf("schemaregistry: config: URL %q has no host", c.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("schemaregistry: config: URL %q must not have a query or fragment", c.URL)
	}
	if u.User != nil {
		return fmt.Errorf("schemaregistry: config: put credentials in Username/Password, not in the URL")
	}
	if c.Username == "" && c.Password != "" {
		return errors.New("schemaregistry: config: Password set without Username")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("schemaregistry: config: negative Timeout %v", c.Timeout)
	}
	if c.RetryBackoff < 0 || c.MaxRetryBackoff < 0 {
		return errors.New("schemaregistry: config: negative retry backoff")
	}
	if c.MaxRetries > 100 {
		return fmt.Errorf("schemaregistry: config: MaxRetries %d is unreasonably high (max 100)", c.MaxRetries)
	}
	return nil
}

// ErrNotFound matches (via errors.Is) an *APIError for a missing subject (40401), version
// (40402) or schema (40403).
var ErrNotFound = errors.New("schemaregistry: not found")

// APIError is an error response from the registry.
type APIError struct {
	StatusCode int    // HTTP status
	ErrorCode  int    // the registry's error_code (e.g. 40401, 42201); 0 when the body had none
	Message    string // the registry's message, or the start of a non-JSON body
}

func (e *APIError) Error() string {
	if e.ErrorCode != 0 {
		return fmt.Sprintf("schema registry: HTTP %d (error code %d): %s", e.StatusCode, e.ErrorCode, e.Message)
	}
	return fmt.Sprintf("schema registry: HTTP %d: %s", e.StatusCode, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) true for the 404 not-found error codes.
func (e *APIError) Is(target error) bool {
	if target != ErrNotFound || e.StatusCode != http.StatusNotFound {
		return false
	}
	switch e.ErrorCode {
	case 40401, 40402, 40403:
		return true
	}
	return false
}

// Client talks to one Confluent-compatible registry. Create it with NewClient.
type Client struct {
	base       string
	user, pass string
	timeout    time.Duration
	hc         *http.Client
	retries    int
	backoff    time.Duration
	maxBackoff time.Duration

	mu       sync.RWMutex
	ids      map[subjectSchema]int // (subject, schema) → id
	schemas  map[int]string        // id → schema
	sleepFor func(ctx context.Context, d time.Duration) error
}

type subjectSchema struct{ subject, schema string }

// NewClient validates cfg and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{
		base:       strings.TrimRight(cfg.URL, "/"),
		user:       cfg.Username,
		pass:       cfg.Password,
		timeout:    cfg.Timeout,
		hc:         cfg.HTTPClient,
		retries:    cfg.MaxRetries,
		backoff:    cfg.RetryBackoff,
		maxBackoff: cfg.MaxRetryBackoff,
		ids:        make(map[subjectSchema]int),
		schemas:    make(map[int]string),
		sleepFor:   sleepCtx,
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultMaxRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.backoff == 0 {
		c.backoff = DefaultRetryBackoff
	}
	if c.maxBackoff == 0 {
		c.maxBackoff = DefaultMaxRetryBackoff
	}
	if c.maxBackoff < c.backoff {
		c.maxBackoff = c.backoff
	}
	return c, nil
}

// URL returns the registry's base URL.
func (c *Client) URL() string { return c.base }

type schemaRequest struct {
	Schema     string `json:"schema"`
	SchemaType string `json:"schemaType,omitempty"`
}

// Register registers an Avro schema under subject (POST /subjects/{subject}/versions) and
// returns its global ID. Registering a schema the subject already has returns the existing
// ID. Results are cached per (subject, schema), so repeated calls make no request.
func (c *Client) Register(ctx context.Context, subject, schema string) (int, error) {
	if subject == "" {
		return 0, errors.New("schemaregistry: register: empty subject")
	}
	if schema == "" {
		return 0, fmt.Errorf("schemaregistry: register %q: empty schema", subject)
	}
	key := subjectSchema{subject, schema}
	c.mu.RLock()
	id, ok := c.ids[key]
	c.mu.RUnlock()
	if ok {
		return id, nil
	}
	// schemaType is omitted: AVRO is the default for every Confluent-compatible registry,
	// and registries older than Confluent 5.5 do not know the field.
	var resp struct {
		ID *int `json:"id"`
	}
	path := "/subjects/" + url.PathEscape(subject) + "/versions"
	if err := c.do(ctx, http.MethodPost, path, schemaRequest{Schema: schema}, &resp); err != nil {
		return 0, fmt.Errorf("schemaregistry: register subject %q: %w", subject, err)
	}
	if resp.ID == nil {
		return 0, fmt.Errorf("schemaregistry: register subject %q: response has no id", subject)
	}
	id = *resp.ID
	c.mu.Lock()
	c.ids[key] = id
	if _, ok := c.schemas[id]; !ok {
		c.schemas[id] = schema
	}
	c.mu.Unlock()
	return id, nil
}

// SchemaByID returns the schema with the given global ID (GET /schemas/ids/{id}). Schemas
// are immutable, so results (and schemas this client registered) are cached.
func (c *Client) SchemaByID(ctx context.Context, id int) (string, error) {
	c.mu.RLock()
	s, ok := c.schemas[id]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	var resp struct {
		Schema *string `json:"schema"`
	}
	if err := c.do(ctx, http.MethodGet, "/schemas/ids/"+strconv.Itoa(id), nil, &resp); err != nil {
		return "", fmt.Errorf("schemaregistry: schema id %d: %w", id, err)
	}
	if resp.Schema == nil {
		return "", fmt.Errorf("schemaregistry: schema id %d: response has no schema", id)
	}
	c.mu.Lock()
	c.schemas[id] = *resp.Schema
	c.mu.Unlock()
	return *resp.Schema, nil
}

// CheckCompatibility tests schema against the latest version of subject under the
// subject's compatibility level (POST /compatibility/subjects/{subject}/versions/latest).
// A subject that does not exist yet (or has no versions) is compatible with anything.
// Nothing is cached: the answer depends on the registry's current state.
func (c *Client) CheckCompatibility(ctx context.Context, subject, schema string) (bool, error) {
	if subject == "" {
		return false, errors.New("schemaregistry: check compatibility: empty subject")
	}
	var resp struct {
		IsCompatible *bool `json:"is_compatible"`
	}
	path := "/compatibility/subjects/" + url.PathEscape(subject) + "/versions/latest"
	err := c.do(ctx, http.MethodPost, path, schemaRequest{Schema: schema}, &resp)
	if err != nil {
		// Confluent answers 40401 (subject not found); Apicurio answers 40402 (no version
		// "latest"). Either way there is nothing to be incompatible with.
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound &&
			(apiErr.ErrorCode == 40401 || apiErr.ErrorCode == 40402) {
			return true, nil
		}
		return false, fmt.Errorf("schemaregistry: check compatibility of subject %q: %w", subject, err)
	}
	if resp.IsCompatible == nil {
		return false, fmt.Errorf("schemaregistry: check compatibility of subject %q: response has no is_compatible", subject)
	}
	return *resp.IsCompatible, nil
}

// Compatibility levels accepted by SetCompatibility.
const (
	CompatibilityNone               = "NONE"
	CompatibilityBackward           = "BACKWARD"
	CompatibilityBackwardTransitive = "BACKWARD_TRANSITIVE"
	CompatibilityForward            = "FORWARD"
	CompatibilityForwardTransitive  = "FORWARD_TRANSITIVE"
	CompatibilityFull               = "FULL"
	CompatibilityFullTransitive     = "FULL_TRANSITIVE"
)

// SetCompatibility sets subject's compatibility level (PUT /config/{subject}). Registries
// differ in their global default (Confluent: BACKWARD, Apicurio: NONE), so callers that
// rely on compatibility checks should set the level explicitly.
func (c *Client) SetCompatibility(ctx context.Context, subject, level string) error {
	if subject == "" {
		return errors.New("schemaregistry: set compatibility: empty subject")
	}
	switch level {
	case CompatibilityNone, CompatibilityBackward, CompatibilityBackwardTransitive,
		CompatibilityForward, CompatibilityForwardTransitive, CompatibilityFull, CompatibilityFullTransitive:
	default:
		return fmt.Errorf("schemaregistry: set compatibility of subject %q: unknown level %q", subject, level)
	}
	body := struct {
		Compatibility string `json:"compatibility"`
	}{level}
	if err := c.do(ctx, http.MethodPut, "/config/"+url.PathEscape(subject), body, nil); err != nil {
		return fmt.Errorf("schemaregistry: set compatibility of subject %q to %s: %w", subject, level, err)
	}
	return nil
}

// do performs one API call with retries, decoding a 2xx JSON body into out (when non-nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := c.sleepFor(ctx, c.backoffFor(attempt)); err != nil {
				return fmt.Errorf("%s %s: %w (after %d attempts, last error: %w)", method, path, err, attempt, lastErr)
			}
		}
		retryable, err := c.attempt(ctx, method, path, body, out)
		if err == nil {
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			// The caller's context ended: report that, wrapping both causes.
			return fmt.Errorf("%s %s: %w", method, path, errors.Join(ctx.Err(), err))
		}
		if !retryable {
			return err
		}
		if attempt >= c.retries {
			if attempt == 0 {
				return err
			}
			return fmt.Errorf("giving up after %d attempts: %w", attempt+1, err)
		}
	}
}

// attempt makes a single HTTP request. retryable reports whether a failure may succeed
// on a later try (5xx or a transport error).
func (c *Client) attempt(ctx context.Context, method, path string, body []byte, out any) (retryable bool, err error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, c.base+path, rd)
	if err != nil {
		return false, fmt.Errorf("build request %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", acceptHeader)
	if body != nil {
		req.Header.Set("Content-Type", ContentType)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return true, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		return true, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode >= 500, fmt.Errorf("%s %s: %w", method, path, parseAPIError(resp.StatusCode, data))
	}
	if out == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return false, fmt.Errorf("%s %s: decode response (HTTP %d): %w", method, path, resp.StatusCode, err)
	}
	return false, nil
}

func parseAPIError(status int, body []byte) *APIError {
	var eb struct {
		ErrorCode int    `json:"error_code"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal(body, &eb); err == nil && (eb.ErrorCode != 0 || eb.Message != "") {
		return &APIError{StatusCode: status, ErrorCode: eb.ErrorCode, Message: eb.Message}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &APIError{StatusCode: status, Message: msg}
}

// backoffFor returns the delay before retry number attempt (1-based): exponential with
// "equal jitter" (half fixed, half random), capped at maxBackoff.
func (c *Client) backoffFor(attempt int) time.Duration {
	d := c.backoff
	for i := 1; i < attempt && d < c.maxBackoff; i++ {
		d *= 2
	}
	if d > c.maxBackoff {
		d = c.maxBackoff
	}
	half := d / 2
	return half + rand.N(half+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
