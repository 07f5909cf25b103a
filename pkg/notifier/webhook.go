package notifier

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Webhook request headers (see docs/webhooks.md).
const (
	HeaderSignature      = "X-Loyalty-Signature"
	HeaderTimestamp      = "X-Loyalty-Timestamp"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderAttempt        = "X-Loyalty-Attempt"
	HeaderKind           = "X-Loyalty-Action-Kind"
)

// Channel names.
const (
	ChannelWebhook = "webhook"
	ChannelLog     = "log"
)

// Signature schemes: the prefix of each value of the X-Loyalty-Signature header.
const (
	// SchemeV2 is HMAC-SHA256 over timestamp "." idempotency key "." body: the receivers'
	// contract (docs/webhooks.md).
	SchemeV2 = "v2"
	// SchemeV1 is HMAC-SHA256 over timestamp "." body. It does not cover the Idempotency-Key
	// header, so a captured request can be replayed under another key; it is deprecated and
	// sent alongside v2 only while receivers move to v2 (Config.Schemes).
	SchemeV1 = "v1"
)

// Sign returns the v2 signature value of one webhook attempt: "v2=" followed by the lowercase
// hex HMAC-SHA256, keyed with secret, of the timestamp (Unix seconds, as sent in
// X-Loyalty-Timestamp), a full stop, the Idempotency-Key, a full stop and the raw body bytes.
func Sign(secret []byte, timestamp, idempotencyKey string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write([]byte(idempotencyKey))
	m.Write([]byte{'.'})
	m.Write(body)
	return SchemeV2 + "=" + hex.EncodeToString(m.Sum(nil))
}

// SignV1 returns the deprecated v1 signature value: "v1=" followed by the lowercase hex
// HMAC-SHA256 of the timestamp, a full stop and the raw body. It does not cover the
// Idempotency-Key.
//
// Deprecated: receivers verify v2 (Sign, Verify); v1 is sent only during the transition.
func SignV1(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return SchemeV1 + "=" + hex.EncodeToString(m.Sum(nil))
}

// Signature verification errors.
var (
	ErrBadSignature = errors.New("webhook signature does not match")
	ErrStale        = errors.New("webhook timestamp outside the tolerance")
)

// Verify checks a received webhook the way a receiver should: the timestamp is within
// tolerance of now, and one of the signature header's comma-separated v2 values matches the
// timestamp, the Idempotency-Key header and the body, compared in constant time. v1 values
// (which do not cover the key) and unknown schemes are ignored, so a receiver holding either
// secret of a rotation verifies. A key that is empty or contains a full stop is refused: the
// signed message would be ambiguous.
func Verify(secret []byte, timestamp, idempotencyKey, signatureHeader string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrBadSignature, timestamp)
	}
	if idempotencyKey == "" || strings.ContainsRune(idempotencyKey, '.') {
		return fmt.Errorf("%w: Idempotency-Key %q is empty or contains '.'", ErrBadSignature, idempotencyKey)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := []byte(Sign(secret, timestamp, idempotencyKey, body))
	for _, got := range strings.Split(signatureHeader, ",") {
		if hmac.Equal([]byte(strings.TrimSpace(got)), want) {
			return nil
		}
	}
	return ErrBadSignature
}

// signer builds the X-Loyalty-Signature header of an attempt: for each secret in order (the
// current one, then the previous one during a rotation), the v2 value, then the v1 value
// while v1 is still sent.
type signer struct {
	secrets [][]byte
	v1      bool
}

// newSigner returns the signer of a validated configuration.
func newSigner(c Config) signer {
	s := signer{secrets: [][]byte{c.Secret}, v1: slices.Contains(c.schemes(), SchemeV1)}
	if len(c.PreviousSecret) > 0 {
		s.secrets = append(s.secrets, c.PreviousSecret)
	}
	return s
}

func (s signer) header(timestamp, idempotencyKey string, body []byte) string {
	vals := make([]string, 0, 2*len(s.secrets))
	for _, secret := range s.secrets {
		vals = append(vals, Sign(secret, timestamp, idempotencyKey, body))
		if s.v1 {
			vals = append(vals, SignV1(secret, timestamp, body))
		}
	}
	return strings.Join(vals, ",")
}

// attemptResult classifies one delivery attempt.
type attemptResult int

const (
	delivered attemptResult = iota // 2xx
	transient                      // 5xx, 408, 425, 429, timeout or network error: retry
	permanent                      // any other status: the receiver refused it, do not retry
	aborted                        // our own shutdown cut the attempt short
)

// channel delivers an action's body.
type channel interface {
	deliver(ctx context.Context, a *pendingAction, attempt int) (attemptResult, string)
}

// webhook posts actions to one URL, signed.
type webhook struct {
	url     string
	signer  signer
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
}

func (w *webhook) deliver(ctx context.Context, a *pendingAction, attempt int) (attemptResult, string) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(a.Body))
	if err != nil {
		return permanent, "building request: " + err.Error()
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "loyalty-notifier/1")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, w.signer.header(ts, a.ActionID, a.Body))
	req.Header.Set(HeaderIdempotencyKey, a.ActionID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	req.Header.Set(HeaderKind, string(a.Kind))
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) { // the parent ended, not our timeout
			return aborted, "shutdown"
		}
		return transient, "request failed: " + redactURL(err.Error(), w.url)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return delivered, "HTTP " + strconv.Itoa(code)
	case code >= 500, code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return transient, "HTTP " + strconv.Itoa(code)
	default:
		return permanent, "HTTP " + strconv.Itoa(code)
	}
}

// redactURL keeps webhook URLs (which may carry tokens) out of logs and records.
func redactURL(msg, url string) string { return strings.ReplaceAll(msg, url, "<webhook url>") }

// newHTTPClient returns the client webhooks use: no redirects (a webhook that moved is a
// configuration error, reported as a permanent failure) and bounded connection reuse.
func newHTTPClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 16,
			IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second},
	}
}

// logChannel writes actions to the log instead of sending them: the development channel.
type logChannel struct {
	log *zap.Logger
}

func (l *logChannel) deliver(_ context.Context, a *pendingAction, attempt int) (attemptResult, string) {
	l.log.Info("action", zap.String("action_id", a.ActionID), zap.String("kind", string(a.Kind)),
		zap.String("customer_id", a.CustomerID), zap.String("rule", a.Rule),
		zap.String("trigger_event_id", a.TriggerEventID), zap.Int("attempt", attempt), zap.ByteString("body", a.Body))
	return delivered, "logged"
}
