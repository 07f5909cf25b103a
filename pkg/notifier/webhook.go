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

// Sign returns the X-Loyalty-Signature value for a body sent at timestamp (Unix seconds, as
// sent in X-Loyalty-Timestamp): "v1=" followed by the lowercase hex HMAC-SHA256, keyed with
// the shared secret, of the timestamp, a full stop, and the raw body bytes.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Signature verification errors.
var (
	ErrBadSignature = errors.New("webhook signature does not match")
	ErrStale        = errors.New("webhook timestamp outside the tolerance")
)

// Verify checks a received webhook the way a receiver should: the timestamp is within
// tolerance of now and one of the signature header's comma-separated v1 values matches,
// compared in constant time.
func Verify(secret []byte, timestamp, signatureHeader string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrBadSignature, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := Sign(secret, timestamp, body)
	for _, got := range strings.Split(signatureHeader, ",") {
		if hmac.Equal([]byte(strings.TrimSpace(got)), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
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
	secret  []byte
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
	req.Header.Set(HeaderSignature, Sign(w.secret, ts, a.Body))
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
