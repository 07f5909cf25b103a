package notifier

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// Config configures a notifier.
type Config struct {
	// Rules decide actions; nil means DefaultRules.
	Rules *Rules
	// Channels maps every action kind the rules can decide to its channel: "log" (development)
	// or an http(s) webhook URL.
	Channels map[event.ActionKind]string
	// Secret keys the webhooks' HMAC-SHA256 signatures; required (16 bytes or more) when any
	// channel is a webhook.
	Secret []byte
	// PreviousSecret, during a secret rotation, is the secret being replaced (16 bytes or
	// more, not Secret): every request then carries signatures with both, so a receiver
	// holding either verifies. Empty outside a rotation.
	PreviousSecret []byte
	// Schemes are the signature schemes sent for each secret; they must include SchemeV2. nil
	// means DefaultSchemes, which still sends the deprecated SchemeV1 for the transition.
	Schemes  []string
	Delivery DeliveryConfig
	// GroupID is the consumer group; empty means "loyalty-<namespace>-notifier".
	GroupID string
	// StartFromLatest starts a new consumer group at the end of the topics instead of the
	// beginning (a first deployment on top of a long history acts only on what comes next).
	StartFromLatest bool
	// HTTPClient sends webhooks; nil means a client without redirects.
	HTTPClient *http.Client
	// Now is the wall clock (decided_at, delivery scheduling, signature timestamps); nil means
	// time.Now. The cooldown never uses it: it runs on the triggers' event time.
	Now func() time.Time
	// UpliftEvery is how often the exposures whose horizon the watermark has closed are
	// settled and the uplift gauges re-read (uplift.go); 0 means 30s.
	UpliftEvery time.Duration
}

// DeliveryConfig tunes delivery.
type DeliveryConfig struct {
	// Timeout bounds one webhook attempt.
	Timeout time.Duration
	// MaxAttempts is the total number of attempts before an action is dead-lettered.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the exponential backoff between attempts.
	BackoffBase, BackoffMax time.Duration
	// Lease is how long a claimed attempt is protected from other claimers; after it, an
	// attempt whose process died is claimed again. It must exceed Timeout.
	Lease time.Duration
	// Workers is the most attempts in flight per process.
	Workers int
	// PollInterval is how often the queues are checked for due retries and expired leases.
	PollInterval time.Duration
	// DrainTimeout is how long shutdown waits for in-flight attempts.
	DrainTimeout time.Duration
}

// WithDefaults fills unset fields.
func (c DeliveryConfig) WithDefaults() DeliveryConfig {
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 6
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = 2 * time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.Lease == 0 {
		c.Lease = c.Timeout + 20*time.Second
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	return c
}

// Validate reports every problem, naming the field.
func (c DeliveryConfig) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("Delivery.Timeout: must be positive"))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("Delivery.MaxAttempts: %d is not in 1..100", c.MaxAttempts))
	}
	if c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase {
		errs = append(errs, fmt.Errorf("Delivery.BackoffBase/BackoffMax: want 0 < base (%s) <= max (%s)", c.BackoffBase, c.BackoffMax))
	}
	if c.Lease <= c.Timeout {
		errs = append(errs, fmt.Errorf("Delivery.Lease: %s must exceed Delivery.Timeout (%s)", c.Lease, c.Timeout))
	}
	if c.Workers < 1 || c.Workers > 1024 {
		errs = append(errs, fmt.Errorf("Delivery.Workers: %d is not in 1..1024", c.Workers))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("Delivery.PollInterval: must be positive"))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, errors.New("Delivery.DrainTimeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// DefaultSchemes are the signature schemes sent unless configured: v2, and the deprecated v1
// while receivers move to v2.
func DefaultSchemes() []string { return []string{SchemeV2, SchemeV1} }

// schemes returns the configured signature schemes, or the default ones.
func (c Config) schemes() []string {
	if c.Schemes == nil {
		return DefaultSchemes()
	}
	return c.Schemes
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Rules == nil {
		c.Rules = DefaultRules()
	}
	c.Delivery = c.Delivery.WithDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.UpliftEvery <= 0 {
		c.UpliftEvery = 30 * time.Second
	}
	if c.HTTPClient == nil {
		c.HTTPClient = newHTTPClient()
	}
	return c
}

// Validate reports every problem, naming the field: each kind the rules can decide needs a
// channel, each webhook an absolute http(s) URL, and webhooks a secret.
func (c Config) Validate() error {
	var errs []error
	if c.Rules == nil {
		errs = append(errs, errors.New("Rules: required"))
	}
	webhooks := false
	kinds := make([]event.ActionKind, 0, len(c.Channels))
	for k := range c.Channels {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		v := c.Channels[k]
		if !slices.Contains(actionKinds, string(k)) {
			errs = append(errs, fmt.Errorf("Channels[%s]: not an action kind (%s)", k, strings.Join(actionKinds, ", ")))
			continue
		}
		if v == ChannelLog {
			continue
		}
		webhooks = true
		if err := checkURL(v); err != nil {
			errs = append(errs, fmt.Errorf("Channels[%s]: %w", k, err))
		}
	}
	if c.Rules != nil {
		for i, r := range c.Rules.Rules {
			if _, ok := c.Channels[r.Kind]; !ok {
				errs = append(errs, fmt.Errorf("Channels[%s]: required by rules[%d] (%s); set a webhook URL or %q", r.Kind, i, r.Name, ChannelLog))
			}
		}
	}
	if webhooks && len(c.Secret) < minSecretLen {
		errs = append(errs, fmt.Errorf("Secret: at least %d bytes are required to sign webhooks", minSecretLen))
	}
	switch p := c.PreviousSecret; {
	case len(p) == 0:
	case len(c.Secret) == 0:
		errs = append(errs, errors.New("PreviousSecret: set without a current secret; the new secret goes in the current one"))
	case len(p) < minSecretLen:
		errs = append(errs, fmt.Errorf("PreviousSecret: at least %d bytes are required", minSecretLen))
	case hmac.Equal(p, c.Secret):
		errs = append(errs, errors.New("PreviousSecret: must differ from the current secret"))
	}
	if err := validSchemes(c.schemes()); err != nil {
		errs = append(errs, fmt.Errorf("Schemes: %w", err))
	}
	if err := c.Delivery.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// minSecretLen is the shortest webhook secret accepted.
const minSecretLen = 16

// validSchemes accepts v2 alone, or v2 with the deprecated v1, each once.
func validSchemes(schemes []string) error {
	seen := map[string]bool{}
	for _, s := range schemes {
		if s != SchemeV1 && s != SchemeV2 {
			return fmt.Errorf("%q is not a signature scheme (%s, %s)", s, SchemeV2, SchemeV1)
		}
		if seen[s] {
			return fmt.Errorf("%s is listed twice", s)
		}
		seen[s] = true
	}
	if !seen[SchemeV2] {
		return fmt.Errorf("%s is required: it is the only scheme covering the Idempotency-Key", SchemeV2)
	}
	return nil
}

func checkURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is neither %q nor an absolute http(s) URL", redactQuery(v), ChannelLog)
	}
	return nil
}

// redactQuery drops everything after '?', where webhook tokens tend to live.
func redactQuery(v string) string {
	if i := strings.IndexByte(v, '?'); i >= 0 {
		return v[:i] + "?…"
	}
	return v
}

// LogChannels routes every action kind to the log channel (development, the demo).
func LogChannels() map[event.ActionKind]string {
	m := map[event.ActionKind]string{}
	for _, k := range actionKinds {
		m[event.ActionKind(k)] = ChannelLog
	}
	return m
}

// Environment variables read by ConfigFromEnv.
const (
	EnvRulesFile = "NOTIFIER_RULES_FILE"
	EnvSecret    = "NOTIFIER_WEBHOOK_SECRET"
	// EnvSecretPrevious holds, during a secret rotation only, the secret being replaced.
	EnvSecretPrevious = "NOTIFIER_WEBHOOK_SECRET_PREVIOUS"
	// EnvSignatures lists the signature schemes sent: "v2,v1" (the default, for the
	// transition) or "v2".
	EnvSignatures  = "NOTIFIER_WEBHOOK_SIGNATURES"
	EnvTimeout     = "NOTIFIER_WEBHOOK_TIMEOUT"
	EnvMaxAttempts = "NOTIFIER_MAX_ATTEMPTS"
	EnvBackoffBase = "NOTIFIER_BACKOFF_BASE"
	EnvBackoffMax  = "NOTIFIER_BACKOFF_MAX"
	EnvWorkers     = "NOTIFIER_WORKERS"
	EnvStartFrom   = "NOTIFIER_START_FROM"
	// EnvChannelPrefix + kind (NOTIFIER_CHANNEL_CARE, ..._WIN_BACK, ..._VIP_WELCOME,
	// ..._DOWNGRADE_WARNING) is a webhook URL or "log".
	EnvChannelPrefix = "NOTIFIER_CHANNEL_"
)

// ConfigFromEnv reads the notifier's settings from environment variables (see the Env
// constants), loading the rules file against the scoring policy. Every bad variable is
// reported by name.
func ConfigFromEnv(env func(string) string, policy *scoring.Policy) (Config, error) {
	var errs []error
	get := func(name string) string { return strings.TrimSpace(env(name)) }
	var c Config
	if path := get(EnvRulesFile); path != "" {
		r, err := LoadRules(path, policy)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvRulesFile, err))
		}
		c.Rules = r
	} else {
		r, err := ParseRules(defaultRulesYAML, policy)
		if err != nil {
			errs = append(errs, fmt.Errorf("default rules against POLICY_FILE: %w", err))
		}
		c.Rules = r
	}
	c.Channels = map[event.ActionKind]string{}
	for _, k := range actionKinds {
		if v := get(EnvChannelPrefix + k); v != "" {
			c.Channels[event.ActionKind(k)] = v
		}
	}
	c.Secret = []byte(get(EnvSecret))
	c.PreviousSecret = []byte(get(EnvSecretPrevious))
	if v := get(EnvSignatures); v != "" {
		c.Schemes = []string{}
		for _, s := range strings.Split(v, ",") {
			c.Schemes = append(c.Schemes, strings.ToLower(strings.TrimSpace(s)))
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := get(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 500ms or 10s", name, v))
				return
			}
			*dst = d
		}
	}
	num := func(name string, dst *int) {
		if v := get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s=%q: want a positive integer", name, v))
				return
			}
			*dst = n
		}
	}
	dur(EnvTimeout, &c.Delivery.Timeout)
	dur(EnvBackoffBase, &c.Delivery.BackoffBase)
	dur(EnvBackoffMax, &c.Delivery.BackoffMax)
	num(EnvMaxAttempts, &c.Delivery.MaxAttempts)
	num(EnvWorkers, &c.Delivery.Workers)
	switch v := strings.ToLower(get(EnvStartFrom)); v {
	case "", "earliest":
	case "latest":
		c.StartFromLatest = true
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want earliest or latest", EnvStartFrom, v))
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	if err := c.WithDefaults().Validate(); err != nil {
		return c, envNames(err)
	}
	return c, nil
}

// envNames rewrites struct field names in validation errors to the variables that set them.
func envNames(err error) error {
	msg := err.Error()
	for _, k := range actionKinds {
		msg = strings.ReplaceAll(msg, "Channels["+k+"]", EnvChannelPrefix+k)
	}
	r := strings.NewReplacer("PreviousSecret:", EnvSecretPrevious+":", "Secret:", EnvSecret+":", "Schemes:", EnvSignatures+":", "Delivery.Timeout", EnvTimeout, "Delivery.MaxAttempts", EnvMaxAttempts,
		"Delivery.BackoffBase/BackoffMax", EnvBackoffBase+"/"+EnvBackoffMax, "Delivery.Workers", EnvWorkers)
	return errors.New(r.Replace(msg))
}
