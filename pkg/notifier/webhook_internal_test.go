package notifier

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/event"
)

// capturedRequest is what a test receiver got.
type capturedRequest struct {
	ts, key, signature string
	body               []byte
}

// captureOne delivers one action through a webhook built from cfg, as Run builds it, and
// returns the request the receiver got.
func captureOne(t *testing.T, cfg Config) capturedRequest {
	t.Helper()
	var (
		mu  sync.Mutex
		got []capturedRequest
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading body: %v", err)
		}
		mu.Lock()
		got = append(got, capturedRequest{ts: r.Header.Get(HeaderTimestamp), key: r.Header.Get(HeaderIdempotencyKey),
			signature: r.Header.Get(HeaderSignature), body: body})
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	cfg.Channels = LogChannels()
	cfg.Channels[event.ActionCare] = srv.URL
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := &webhook{url: srv.URL, signer: newSigner(cfg), client: cfg.HTTPClient, timeout: cfg.Delivery.Timeout, now: cfg.Now}
	a := &pendingAction{ActionID: "5f0c8e1d2a3b4c5d6e7f8091a2b3c4d5", Kind: event.ActionCare,
		Body: []byte(`{"action_id":"5f0c8e1d2a3b4c5d6e7f8091a2b3c4d5","kind":"CARE"}`)}
	if res, detail := w.deliver(context.Background(), a, 1); res != delivered {
		t.Fatalf("deliver = %v (%s), want delivered", res, detail)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	return got[0]
}

func TestWebhookDuringARotationVerifiesWithEitherSecret(t *testing.T) {
	oldSecret, newSecret := []byte("old-secret-0123456789"), []byte("new-secret-0123456789")
	req := captureOne(t, Config{Secret: newSecret, PreviousSecret: oldSecret})
	now := time.Now()
	verify := func(secret []byte, key string) error {
		return Verify(secret, req.ts, key, req.signature, req.body, now, 5*time.Minute)
	}
	if err := verify(oldSecret, req.key); err != nil {
		t.Errorf("a receiver holding only the old secret: %v", err)
	}
	if err := verify(newSecret, req.key); err != nil {
		t.Errorf("a receiver holding only the new secret: %v", err)
	}
	if err := verify([]byte("wrong-secret-0123456789"), req.key); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a receiver holding a wrong secret: %v, want ErrBadSignature", err)
	}
	for _, secret := range [][]byte{oldSecret, newSecret} {
		if err := verify(secret, "6f0c8e1d2a3b4c5d6e7f8091a2b3c4d5"); !errors.Is(err, ErrBadSignature) {
			t.Errorf("a tampered Idempotency-Key: %v, want ErrBadSignature", err)
		}
	}
	// One v2 and one v1 value per secret, the current secret first.
	vals := strings.Split(req.signature, ",")
	if len(vals) != 4 || !strings.HasPrefix(vals[0], "v2=") || !strings.HasPrefix(vals[1], "v1=") ||
		vals[0] != Sign(newSecret, req.ts, req.key, req.body) || vals[2] != Sign(oldSecret, req.ts, req.key, req.body) {
		t.Errorf("signature header %q: want v2 and v1 of the new secret, then of the old", req.signature)
	}
}

func TestWebhookKeepsAV1ReceiverWorkingUntilV1IsDropped(t *testing.T) {
	secret := []byte("the-secret-0123456789")
	// The v1 receiver recipe as documented before v2: any comma-separated value equal to
	// "v1=" + hex(HMAC-SHA256(secret, ts + "." + body)).
	v1Verifies := func(req capturedRequest) bool {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(req.ts + "." + string(req.body)))
		want := "v1=" + hex.EncodeToString(mac.Sum(nil))
		for _, v := range strings.Split(req.signature, ",") {
			if hmac.Equal([]byte(strings.TrimSpace(v)), []byte(want)) {
				return true
			}
		}
		return false
	}
	transition := captureOne(t, Config{Secret: secret})
	if !v1Verifies(transition) {
		t.Errorf("default schemes: a v1 receiver does not verify %q", transition.signature)
	}
	if err := Verify(secret, transition.ts, transition.key, transition.signature, transition.body, time.Now(), time.Minute); err != nil {
		t.Errorf("default schemes: v2 does not verify: %v", err)
	}
	v2only := captureOne(t, Config{Secret: secret, Schemes: []string{SchemeV2}})
	if v1Verifies(v2only) || strings.Contains(v2only.signature, "v1=") {
		t.Errorf("schemes v2: v1 is still sent: %q", v2only.signature)
	}
	if err := Verify(secret, v2only.ts, v2only.key, v2only.signature, v2only.body, time.Now(), time.Minute); err != nil {
		t.Errorf("schemes v2: %v", err)
	}
}
