package notifier_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/notifier"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
)

// documentedV2 is the receivers' recipe of docs/webhooks.md, written out independently:
// "v2=" + hex(HMAC-SHA256(secret, timestamp + "." + idempotency key + "." + body)).
func documentedV2(secret, ts, key string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + key + "." + string(body)))
	return "v2=" + hex.EncodeToString(mac.Sum(nil))
}

// documentedV1 is the deprecated v1 recipe: the timestamp and the body, not the key.
func documentedV1(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

func TestSignIsTheDocumentedV2RecipeAndSignV1TheOldOne(t *testing.T) {
	secret := "s3cret-s3cret-s3cret"
	body := []byte(`{"action_id":"5f0c8e1d2a3b4c5d6e7f8091a2b3c4d5","kind":"CARE"}`)
	ts, key := "1767225600", "5f0c8e1d2a3b4c5d6e7f8091a2b3c4d5"
	if got, want := notifier.Sign([]byte(secret), ts, key, body), documentedV2(secret, ts, key, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if got, want := notifier.SignV1([]byte(secret), ts, body), documentedV1(secret, ts, body); got != want { //nolint:staticcheck // the deprecated scheme is still sent
		t.Fatalf("SignV1 = %s, want %s", got, want)
	}
	if notifier.Sign([]byte(secret), ts, key, body) == notifier.Sign([]byte(secret), ts, "6f0c8e1d2a3b4c5d6e7f8091a2b3c4d5", body) {
		t.Fatal("v2 signatures of two keys are equal: the key is not covered")
	}
}

func TestVerifyChecksTheKeyTheBodyTheTimestampAndTheSecret(t *testing.T) {
	secret := []byte("s3cret-s3cret-s3cret")
	body := []byte(`{"action_id":"abc","kind":"CARE"}`)
	ts, key := "1767225600", "5f0c8e1d2a3b4c5d6e7f8091a2b3c4d5"
	good := documentedV2(string(secret), ts, key, body)
	now := time.Unix(1767225600, 0).Add(time.Minute)
	cases := []struct {
		name    string
		secret  []byte
		ts, key string
		header  string
		body    []byte
		now     time.Time
		wantErr error
	}{
		{"the genuine signature verifies", secret, ts, key, good, body, now, nil},
		{"among a rotation's values and v1 values it verifies", secret, ts, key,
			"v2=00ff," + documentedV1(string(secret), ts, body) + ", " + good, body, now, nil},
		{"a tampered Idempotency-Key does not verify", secret, ts, "6f0c8e1d2a3b4c5d6e7f8091a2b3c4d5", good, body, now, notifier.ErrBadSignature},
		{"a key moved into the body does not verify", secret, ts, key + "." + `{"action_id"`, good, []byte(`:"abc","kind":"CARE"}`), now, notifier.ErrBadSignature},
		{"a missing key does not verify", secret, ts, "", good, body, now, notifier.ErrBadSignature},
		{"a changed body does not verify", secret, ts, key, good, []byte(`{"action_id":"abd","kind":"CARE"}`), now, notifier.ErrBadSignature},
		{"a changed timestamp does not verify", secret, "1767225601", key, good, body, now, notifier.ErrBadSignature},
		{"a wrong secret does not verify", []byte("another-secret-of-20"), ts, key, good, body, now, notifier.ErrBadSignature},
		{"a genuine v1 value alone is not enough: it does not cover the key", secret, ts, key,
			documentedV1(string(secret), ts, body), body, now, notifier.ErrBadSignature},
		{"an old timestamp is refused even with a good signature", secret, ts, key, good, body, now.Add(time.Hour), notifier.ErrStale},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := notifier.Verify(c.secret, c.ts, c.key, c.header, c.body, c.now, 5*time.Minute)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, c.wantErr)
			}
		})
	}
}

func TestWebhookSecretsAndSchemesAreValidatedByVariable(t *testing.T) {
	policy := scoring.DefaultPolicy()
	base := map[string]string{
		"NOTIFIER_CHANNEL_CARE": "https://support.example.com/hooks/care", "NOTIFIER_CHANNEL_WIN_BACK": "log",
		"NOTIFIER_CHANNEL_VIP_WELCOME": "log", "NOTIFIER_CHANNEL_DOWNGRADE_WARNING": "log",
		"NOTIFIER_WEBHOOK_SECRET": "new-secret-0123456789",
	}
	cases := []struct {
		name string
		set  map[string]string
		want string // "" for valid
	}{
		{"a previous secret during a rotation is accepted", map[string]string{"NOTIFIER_WEBHOOK_SECRET_PREVIOUS": "old-secret-0123456789"}, ""},
		{"v2 alone ends the transition", map[string]string{"NOTIFIER_WEBHOOK_SIGNATURES": "v2"}, ""},
		{"a short previous secret is refused", map[string]string{"NOTIFIER_WEBHOOK_SECRET_PREVIOUS": "old"},
			"NOTIFIER_WEBHOOK_SECRET_PREVIOUS: at least 16 bytes"},
		{"a previous secret equal to the current one is refused", map[string]string{"NOTIFIER_WEBHOOK_SECRET_PREVIOUS": "new-secret-0123456789"},
			"NOTIFIER_WEBHOOK_SECRET_PREVIOUS: must differ"},
		{"a previous secret without a current one is refused", map[string]string{"NOTIFIER_WEBHOOK_SECRET": "", "NOTIFIER_WEBHOOK_SECRET_PREVIOUS": "old-secret-0123456789"},
			"NOTIFIER_WEBHOOK_SECRET_PREVIOUS: set without a current secret"},
		{"v1 alone is refused", map[string]string{"NOTIFIER_WEBHOOK_SIGNATURES": "v1"}, "NOTIFIER_WEBHOOK_SIGNATURES: v2 is required"},
		{"an unknown scheme is refused", map[string]string{"NOTIFIER_WEBHOOK_SIGNATURES": "v2,v3"}, `NOTIFIER_WEBHOOK_SIGNATURES: "v3" is not`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := func(name string) string {
				if v, ok := c.set[name]; ok {
					return v
				}
				return base[name]
			}
			_, err := notifier.ConfigFromEnv(env, policy)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
